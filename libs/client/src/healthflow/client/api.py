"""A small typed async client of the HealthFlow API, through the gateway only.

:class:`Gateway` holds one ``httpx.AsyncClient`` and records every answer it
got (:class:`Call`); :meth:`Gateway.login` returns a :class:`Session` acting as
one user with its bearer token. Responses are the API's JSON (``dict``); errors
raise :class:`ApiError` with the status and the RFC 9457 problem body.

Rate limits (429) and unavailability (503) are retried after the answer's
``Retry-After`` (seconds), at most ``max_wait`` seconds in all per call, so a
client follows the edge's advice instead of hammering it. Every request has a
timeout (``timeout`` seconds): a hang surfaces as ``httpx.TimeoutException``.

Times sent are RFC 3339 with an offset; ids are the API's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

JSON = dict[str, Any]
RETRIED_STATUSES = frozenset({429, 503})
_ID_SEGMENT = re.compile(r"/(?:[0-9a-f]{8}-[0-9a-f-]{27}|[0-9a-f]{24,}|\d+)(?=/|$)")


@dataclass(frozen=True)
class Call:
    """One HTTP exchange as a client saw it. ``status`` is None when nothing answered
    (``error`` names why, e.g. ``ReadTimeout``); ``seconds`` is the wall time."""

    method: str
    route: str  # the path with ids replaced by ``{id}``
    status: int | None
    seconds: float
    retry_after: str | None = None
    error: str | None = None
    at: float = field(default_factory=time.time)  # epoch seconds when it ended


class ApiError(Exception):
    """A non-2xx answer: ``status``, the problem body and the ``Retry-After`` header."""

    def __init__(self, method: str, path: str, status: int, body: Any,
                 retry_after: str | None) -> None:
        self.method, self.path, self.status = method, path, status
        self.body, self.retry_after = body, retry_after
        detail = body.get("detail") or body.get("title") if isinstance(body, dict) else body
        super().__init__(f"{method} {route_of(path)} → {status}: {str(detail)[:300]}")

    @property
    def problem_type(self) -> str:
        """The problem's ``type`` (e.g. ``…/slot-already-booked``), or ``""``."""
        return str(self.body.get("type", "")) if isinstance(self.body, dict) else ""


def route_of(path: str) -> str:
    """``path`` without its query, ids replaced by ``{id}`` (for counting calls by route)."""
    return _ID_SEGMENT.sub("/{id}", path.split("?", 1)[0])


def jwt_claims(token: str) -> JSON:
    """The claims of a JWS compact token, **unverified** (the client only reads its own)."""
    payload = token.split(".")[1]
    claims: JSON = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


class Gateway:
    """The HealthFlow API at ``base_url`` (e.g. ``http://127.0.0.1:8000``).

    ``timeout``: seconds per request; ``max_wait``: seconds one call may spend
    waiting out 429/503 answers before it raises; ``on_call`` sees every
    :class:`Call` as it ends.
    """

    def __init__(self, base_url: str, *, timeout: float = 30.0, max_wait: float = 180.0,
                 on_call: Callable[[Call], None] | None = None,
                 limits: httpx.Limits | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.max_wait = max_wait
        self.calls: list[Call] = []
        self.on_call = on_call
        self.http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout,
                                      limits=limits or httpx.Limits(max_connections=64))

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)

    async def request(self, method: str, path: str, *, token: str | None = None,
                      json: Any = None, data: Mapping[str, str] | None = None,
                      params: Mapping[str, Any] | None = None) -> Any:
        """Send one request; the decoded JSON body of a 2xx answer (None for 204).

        Raises:
            ApiError: a non-2xx answer (after waiting out 429/503 up to ``max_wait``).
            httpx.TransportError: nothing answered (timeout, connection refused).
        """
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        route = route_of(path)
        give_up = time.monotonic() + self.max_wait
        while True:
            started = time.monotonic()
            try:
                response = await self.http.request(method, path, headers=headers, json=json,
                                                   data=data, params=params)
            except httpx.TransportError as exc:
                self._record(Call(method, route, None, time.monotonic() - started,
                                  error=type(exc).__name__))
                raise
            retry_after = response.headers.get("Retry-After")
            self._record(Call(method, route, response.status_code, time.monotonic() - started,
                              retry_after))
            if response.is_success:
                return None if response.status_code == 204 or not response.content \
                    else response.json()
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text[:2000]
            wait = _seconds(retry_after)
            if (response.status_code in RETRIED_STATUSES and wait is not None
                    and time.monotonic() + wait <= give_up):
                await asyncio.sleep(max(wait, 0.05))
                continue
            raise ApiError(method, path, response.status_code, body, retry_after)

    # ----- public routes

    async def register_patient(self, email: str, password: str, full_name: str,
                               phone: str) -> JSON:
        """``POST /api/v1/auth/register``: a patient signs up (``phone`` in E.164)."""
        user: JSON = await self.request("POST", "/api/v1/auth/register", json={
            "email": email, "password": password, "full_name": full_name, "phone": phone})
        return user

    async def login(self, email: str, password: str) -> Session:
        """``POST /api/v1/auth/token`` (OAuth2 password grant): a session for the user."""
        tokens: JSON = await self.request("POST", "/api/v1/auth/token",
                                          data={"username": email, "password": password})
        return Session(self, tokens["access_token"], tokens["refresh_token"])

    async def openapi(self) -> JSON:
        document: JSON = await self.request("GET", "/openapi.json")
        return document


@dataclass
class Session:
    """One signed-in user: every call carries its access token."""

    gateway: Gateway
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)

    @property
    def user_id(self) -> str:
        return str(jwt_claims(self.access_token)["sub"])

    @property
    def roles(self) -> list[str]:
        return list(jwt_claims(self.access_token).get("roles", []))

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.gateway.request(method, path, token=self.access_token, **kwargs)

    async def refresh(self) -> None:
        """``POST /api/v1/auth/refresh``: rotate the token pair."""
        tokens: JSON = await self.gateway.request(
            "POST", "/api/v1/auth/refresh", json={"refresh_token": self.refresh_token})
        self.access_token, self.refresh_token = tokens["access_token"], tokens["refresh_token"]

    # ----- accounts

    async def me(self) -> JSON:
        me: JSON = await self.call("GET", "/api/v1/auth/me")
        return me

    async def create_user(self, email: str, password: str, full_name: str,
                          roles: Iterable[str], phone: str | None = None) -> JSON:
        """``POST /api/v1/users`` (admin): a staff account with ``roles``."""
        body: JSON = {"email": email, "password": password, "full_name": full_name,
                      "roles": list(roles)}
        if phone:
            body["phone"] = phone
        user: JSON = await self.call("POST", "/api/v1/users", json=body)
        return user

    # ----- hospitals

    async def register_hospital(self, body: JSON) -> JSON:
        hospital: JSON = await self.call("POST", "/api/v1/hospitals", json=body)
        return hospital

    async def verify_hospital(self, hospital_id: str) -> JSON:
        hospital: JSON = await self.call("POST", f"/api/v1/hospitals/{hospital_id}/verify")
        return hospital

    async def add_department(self, hospital_id: str, name: str,
                             services: Iterable[str] = ()) -> JSON:
        department: JSON = await self.call(
            "POST", f"/api/v1/hospitals/{hospital_id}/departments",
            json={"name": name, "services": list(services)})
        return department

    async def assign_staff(self, hospital_id: str, user_id: str, staff_role: str,
                           department_id: str | None = None) -> JSON:
        """``POST /api/v1/hospitals/{id}/staff``: ``user_id`` works there as ``staff_role``
        (staff use their ``*_any`` permissions only at hospitals where they work)."""
        membership: JSON = await self.call(
            "POST", f"/api/v1/hospitals/{hospital_id}/staff",
            json={"user_id": user_id, "staff_role": staff_role,
                  "department_id": department_id})
        return membership

    # ----- doctors

    async def register_doctor(self, body: JSON) -> JSON:
        """``POST /api/v1/doctors``: the caller's own practitioner profile."""
        doctor: JSON = await self.call("POST", "/api/v1/doctors", json=body)
        return doctor

    async def verify_doctor(self, doctor_id: str) -> JSON:
        doctor: JSON = await self.call("POST", f"/api/v1/doctors/{doctor_id}/verify")
        return doctor

    async def put_availability(self, doctor_id: str, body: JSON) -> JSON:
        """``PUT /api/v1/doctors/{id}/availability``: weekly hours in each location's zone."""
        availability: JSON = await self.call(
            "PUT", f"/api/v1/doctors/{doctor_id}/availability", json=body)
        return availability

    async def search_doctors(self, **filters: str) -> list[JSON]:
        """``GET /api/v1/doctors`` (first page): verified doctors at verified hospitals."""
        page: JSON = await self.call("GET", "/api/v1/doctors", params=filters)
        return list(page["items"])

    # ----- slots and appointments

    async def free_slots(self, doctor_id: str, start: datetime, end: datetime) -> list[JSON]:
        """``GET /api/v1/slots``: free slots starting in ``[start, end)`` (aware datetimes)."""
        answer: JSON = await self.call("GET", "/api/v1/slots", params={
            "doctor_id": doctor_id, "from": start.isoformat(), "to": end.isoformat()})
        return list(answer["items"])

    async def book(self, doctor_id: str, start: str, *, patient_id: str | None = None,
                   reason: str | None = None, preferences: JSON | None = None,
                   mode: str | None = None) -> JSON:
        """``POST /api/v1/appointments``; ``start`` is a slot's RFC 3339 start."""
        body: JSON = {"doctor_id": doctor_id, "start": start}
        for key, value in (("patient_id", patient_id), ("reason", reason),
                           ("preferences", preferences), ("mode", mode)):
            if value is not None:
                body[key] = value
        appointment: JSON = await self.call("POST", "/api/v1/appointments", json=body)
        return appointment

    async def reschedule(self, appointment_id: str, start: str) -> JSON:
        appointment: JSON = await self.call(
            "POST", f"/api/v1/appointments/{appointment_id}/reschedule", json={"start": start})
        return appointment

    async def cancel(self, appointment_id: str, reason_code: str = "patient_request",
                     note: str | None = None) -> JSON:
        body: JSON = {"reason_code": reason_code} | ({"note": note} if note else {})
        appointment: JSON = await self.call(
            "POST", f"/api/v1/appointments/{appointment_id}/cancel", json=body)
        return appointment

    async def appointments(self, **filters: str) -> AsyncIterator[JSON]:
        """Every appointment the caller may see (``GET /api/v1/appointments``, all pages)."""
        params: dict[str, Any] = dict(filters) | {"limit": 200}
        while True:
            page: JSON = await self.call("GET", "/api/v1/appointments", params=params)
            for item in page["items"]:
                yield item
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    # ----- patients

    async def my_chart(self) -> JSON:
        chart: JSON = await self.call("GET", "/api/v1/patients/me")
        return chart

    async def update_my_chart(self, patch: JSON) -> JSON:
        chart: JSON = await self.call("PATCH", "/api/v1/patients/me", json=patch)
        return chart

    # ----- notifications

    async def set_notification_preferences(self, body: JSON) -> JSON:
        prefs: JSON = await self.call("PUT", "/api/v1/notifications/preferences", json=body)
        return prefs

    # ----- audit

    async def audit_events(self, **filters: str) -> AsyncIterator[JSON]:
        """Audit entries matching ``filters`` (``type``, ``patient``, ``from``…), newest first."""
        params: dict[str, Any] = dict(filters) | {"limit": 200}
        while True:
            page: JSON = await self.call("GET", "/api/v1/audit/events", params=params)
            for item in page["items"]:
                yield item
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    async def audit_verify(self) -> JSON:
        """``GET /api/v1/audit/verify``: recompute the whole chain."""
        result: JSON = await self.call("GET", "/api/v1/audit/verify")
        return result


def _seconds(retry_after: str | None) -> float | None:
    """``Retry-After`` as seconds (RFC 9110 §10.2.3 delay-seconds form), else None."""
    if retry_after is None:
        return None
    try:
        return float(retry_after)
    except ValueError:
        return None


class Mailbox:
    """The local mailbox and SMS log the platform runner serves (``/mail``, ``/sms``)."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def mail(self, to: str | None = None) -> list[JSON]:
        response = await self.http.get("/mail", params={"to": to} if to else None)
        response.raise_for_status()
        return list(response.json())

    async def sms(self, to: str | None = None) -> list[JSON]:
        response = await self.http.get("/sms", params={"to": to} if to else None)
        response.raise_for_status()
        return list(response.json())
