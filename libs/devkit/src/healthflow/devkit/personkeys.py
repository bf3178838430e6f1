"""A stand-in for the auth service's person-key route, for the tests of its consumers.

:class:`PersonKeyStandIn` serves ``GET /internal/person-keys/{user_id}`` on loopback
(aiohttp) exactly as auth answers it (``{key_id, key}``, 404 problem+json once the
person is erased; 401/403 problem+json, as auth, without the credential of a person-key
reader under :attr:`PersonKeyStandIn.service_key`, :mod:`healthflow.common.servicecredentials`),
from keys it makes on demand; :meth:`PersonKeyStandIn.registered`
builds the sealed ``user.registered`` payload auth would publish. A consumer's
settings point ``PERSON_KEYS_URL`` at :attr:`PersonKeyStandIn.url`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from healthflow.common.personaldata import (
    PERSON_KEYS_PATH,
    PersonKey,
    new_person_key,
    person_key_json,
    seal,
)
from healthflow.common.problems import Problem
from healthflow.common.servicecredentials import DEVELOPMENT_KEY, PERSON_KEY_READERS, caller
from healthflow.devkit.embedded import free_port


@dataclass
class PersonKeyStandIn:
    """Person keys by user id, served like auth's ``/internal/person-keys/{user_id}``."""

    port: int = field(default_factory=free_port)
    keys: dict[str, PersonKey] = field(default_factory=dict)
    requests: int = 0
    service_key: str = DEVELOPMENT_KEY  # the INTERNAL_SERVICE_KEY its callers hold
    callers: list[str] = field(default_factory=list)  # the services that asked, in order
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PERSON_KEYS_PATH}"

    async def start(self) -> PersonKeyStandIn:
        app = web.Application()
        app.add_routes([web.get(PERSON_KEYS_PATH + "/{user_id}", self._get)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> PersonKeyStandIn:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    def key(self, user_id: str) -> PersonKey:
        """``user_id``'s key, made on first use."""
        return self.keys.setdefault(user_id, new_person_key())

    def erase(self, user_id: str) -> None:
        """Destroy ``user_id``'s key (as auth's erasure does)."""
        self.keys.pop(user_id, None)

    def registered(self, user_id: str, *, email: str, full_name: str, phone: str | None,
                   roles: list[str], self_registered: bool = True) -> dict[str, Any]:
        """The ``user.registered`` (v2) payload auth publishes for these values."""
        key = self.key(user_id)
        return {"user_id": user_id, "email": seal(key, user_id, "email", email).model_dump(),
                "full_name": seal(key, user_id, "full_name", full_name).model_dump(),
                "phone": (None if phone is None
                          else seal(key, user_id, "phone", phone).model_dump()),
                "roles": roles, "self_registered": self_registered}

    def contact_changed(self, user_id: str, *, email: str, phone: str | None,
                        changed: list[str], revert_id: str | None = None,
                        revert_expires_at: str | None = None) -> dict[str, Any]:
        """The ``user.contact_changed`` payload auth publishes for the values after a
        change (``revert_id``: the "this wasn't me" link of a new address)."""
        key = self.key(user_id)
        return {"user_id": user_id, "changed": sorted(changed), "revert_id": revert_id,
                "revert_expires_at": revert_expires_at,
                "email": seal(key, user_id, "email", email).model_dump(),
                "phone": (None if phone is None
                          else seal(key, user_id, "phone", phone).model_dump())}

    def email_change_requested(self, user_id: str, *, change_id: str, email: str,
                               expires_at: str) -> dict[str, Any]:
        """The ``auth.email_change_requested`` payload auth publishes for a new address."""
        key = self.key(user_id)
        return {"user_id": user_id, "change_id": change_id, "expires_at": expires_at,
                "email": seal(key, user_id, "email", email).model_dump()}

    async def _get(self, request: web.Request) -> web.Response:
        self.requests += 1
        try:
            service = caller(request.headers.get("Authorization"), self.service_key)
            if service not in PERSON_KEY_READERS:
                return _problem(403, "Forbidden", f"the {service} service may not call this")
        except Problem as problem:
            return _problem(problem.status, problem.title, problem.detail)
        self.callers.append(service)
        key = self.keys.get(request.match_info["user_id"])
        if key is None:
            return web.json_response(
                {"type": "about:blank", "title": "Not Found", "status": 404,
                 "detail": "no person key (erased, or never made)"},
                status=404, content_type="application/problem+json")
        return web.json_response(person_key_json(key), headers={"Cache-Control": "no-store"})


def _problem(status: int, title: str, detail: str) -> web.Response:
    return web.json_response({"type": "about:blank", "title": title, "status": status,
                              "detail": detail},
                             status=status, content_type="application/problem+json")
