"""HTTP routes under ``/api/v1/notifications``.

* users (``notifications:read_own``): their preferences, feed, feed stream (SSE)
  and Web Push subscriptions — always their own (the token's subject);
* admins and patient-care staff (``notifications:search``): the delivery log;
* Twilio (public, but only with a valid ``X-Twilio-Signature``): delivery statuses;
* anyone: the VAPID public key browsers subscribe with, and redeeming the welcome mail's
  e-mail verification token (:mod:`healthflow.notification.verification`);
* users (``notifications:read_own``): verifying their own phone number by a one-time SMS
  code (same module).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from twilio.request_validator import RequestValidator

from healthflow.common.auth import Principal, require, while_authorized
from healthflow.common.errors import BadRequest, Forbidden
from healthflow.common.http import get_runtime
from healthflow.common.mongo import Document
from healthflow.common.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Page,
    decode_cursor,
    encode_cursor,
)
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime
from healthflow.common.tenancy import reach_of
from healthflow.notification import dispatch, domain, messages, service, store, verification
from healthflow.notification.domain import Channel, Status
from healthflow.notification.schemas import (
    ChannelSwitches,
    ConsentOut,
    DeliveryOut,
    EmailVerificationIn,
    EmailVerificationOut,
    FeedItem,
    PhoneCodeSentOut,
    PhoneVerificationIn,
    PhoneVerificationOut,
    PreferencesIn,
    PreferencesOut,
    PushSubscriptionIn,
    PushSubscriptionOut,
    VapidKeyOut,
)
from healthflow.notification.settings import Settings

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])

Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]
ReadOwn = Annotated[Principal, require(Permission.NOTIFICATIONS_READ_OWN)]


def _ctx(runtime: ServiceRuntime) -> service.Context:
    ctx: service.Context = runtime.state["context"]
    return ctx


def _settings(runtime: ServiceRuntime) -> Settings:
    return _ctx(runtime).settings


# --- preferences -------------------------------------------------------------------------


def _preferences_out(user_id: str, prefs: Document | None, contact: Document | None,
                     settings: Settings) -> PreferencesOut:
    prefs = prefs or {}
    consent = messages.consents(contact)
    return PreferencesOut(
        user_id=user_id,
        channels=ChannelSwitches(**(prefs.get("channels") or {})),
        locale=prefs.get("locale", settings.default_locale),
        timezone=prefs.get("timezone"),
        quiet_hours=prefs.get("quiet_hours", settings.default_quiet_hours),
        consent=ConsentOut(**{c.value: consent.get(c.value, domain.DEFAULT_CONSENT[c])
                              for c in domain.CONSENT_CHANNELS}),
        updated_at=prefs.get("updated_at"),
    )


@router.get("/preferences", response_model=PreferencesOut, summary="My channel preferences")
async def get_preferences(runtime: Runtime, principal: ReadOwn) -> PreferencesOut:
    """Preferences (defaults until set) and the consent the patient service reported."""
    prefs = await store.get(runtime.db, store.PREFERENCES, principal.subject)
    contact = await store.get(runtime.db, store.CONTACTS, principal.subject)
    return _preferences_out(principal.subject, prefs, contact, _settings(runtime))


@router.put("/preferences", response_model=PreferencesOut, summary="Replace my preferences")
async def put_preferences(body: PreferencesIn, runtime: Runtime,
                          principal: ReadOwn) -> PreferencesOut:
    """Replace the caller's preferences. Consent is not set here: it is the patient
    service's (``patient.consent_changed``), and a preference never overrides it.

    Raises:
        UnprocessableContent: unknown zone or malformed quiet hours (422).
    """
    doc = await service.set_preferences(runtime, _ctx(runtime), principal.subject, body)
    contact = await store.get(runtime.db, store.CONTACTS, principal.subject)
    return _preferences_out(principal.subject, doc, contact, _settings(runtime))


# --- feed and stream ---------------------------------------------------------------------


def _feed_item(doc: Document) -> FeedItem:
    return FeedItem(id=doc["_id"], template=doc["template"], title=doc["title"],
                    body=doc["body"], appointment_id=doc.get("appointment_id"),
                    created_at=doc["created_at"], read_at=doc.get("read_at"))


def _position(cursor: str | None) -> tuple[datetime, str] | None:
    position = decode_cursor(cursor)
    if position is None:
        return None
    try:
        return datetime.fromisoformat(position["t"]).astimezone(UTC), str(position["id"])
    except (KeyError, TypeError, ValueError):
        raise BadRequest("the cursor is malformed; pass back next_cursor unchanged") from None


def _next_cursor(docs: list[Document], limit: int) -> str | None:
    if len(docs) <= limit:
        return None
    last = docs[limit - 1]
    return encode_cursor({"t": last["created_at"].isoformat(), "id": last["_id"]})


@router.get("/feed", response_model=Page[FeedItem], summary="My in-app notifications")
async def get_feed(
    runtime: Runtime, principal: ReadOwn,
    unread: Annotated[bool, Query(description="only unread items")] = False,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[FeedItem]:
    """The caller's feed, newest first. Raises: BadRequest (400) for a foreign cursor."""
    docs = await store.find_feed(runtime.db, principal.subject, unread_only=unread,
                                 before=_position(cursor), limit=limit + 1)
    return Page[FeedItem](items=[_feed_item(d) for d in docs[:limit]],
                          next_cursor=_next_cursor(docs, limit))


@router.post("/feed/{item_id}/read", response_model=FeedItem, summary="Mark one item read")
async def mark_read(runtime: Runtime, principal: ReadOwn,
                    item_id: Annotated[str, Path(max_length=64)]) -> FeedItem:
    """Idempotent: an item already read keeps its first ``read_at``.

    Raises: NotFound (404) when the caller has no such item (another user's is not found).
    """
    return _feed_item(await service.mark_read(runtime, _ctx(runtime), principal.subject,
                                              item_id))


@router.post("/feed/read-all", summary="Mark every item read")
async def mark_all_read(runtime: Runtime, principal: ReadOwn) -> dict[str, int]:
    """Returns ``{"marked": n}``."""
    return {"marked": await service.mark_all_read(runtime, _ctx(runtime), principal.subject)}


def _sse(doc: Document) -> ServerSentEvent:
    return ServerSentEvent(id=doc["_id"], event="notification",
                           data=_feed_item(doc).model_dump_json())


@router.get("/stream", summary="My feed as Server-Sent Events",
            response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def stream(request: Request, runtime: Runtime, principal: ReadOwn) -> EventSourceResponse:
    """``text/event-stream`` (WHATWG HTML §9.2, framed by ``sse-starlette``): one
    ``notification`` event per new feed item (``id`` = item id, ``data`` = the FeedItem
    JSON) and a ``: ping`` comment every ``stream_heartbeat`` seconds. ``Last-Event-ID``
    resumes after that item; without it, the stream starts with items created from
    now on. New items arrive from a MongoDB change stream on the feed (no polling);
    the stream is opened before the catch-up read, so nothing falls between the two.
    The token is re-checked every heartbeat and on every revocation this service hears
    of: an expired or revoked one ends the stream with an ``unauthorized`` event.
    """
    settings = _settings(runtime)
    user_id = principal.subject
    last_id = request.headers.get("last-event-id")
    feed = runtime.db[store.FEED]

    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(retry=3000, comment="stream open")
        pipeline = [{"$match": {"operationType": "insert", "fullDocument.user_id": user_id}}]
        async with await feed.watch(pipeline) as changes:
            seen: set[str] = set()
            if last_id:
                anchor = await feed.find_one({"_id": last_id, "user_id": user_id})
                if anchor is not None:  # the items the client missed, oldest first
                    for doc in await store.feed_since(runtime.db, user_id,
                                                      anchor["created_at"]):
                        if doc["_id"] != last_id:
                            seen.add(doc["_id"])
                            yield _sse(doc)
            async for change in changes:
                doc = change["fullDocument"]
                if doc["_id"] not in seen:
                    yield _sse(doc)

    guarded = while_authorized(request, principal, events(),
                               heartbeat=settings.stream_heartbeat)
    return EventSourceResponse(guarded, ping=settings.stream_heartbeat, sep="\n",
                               headers={"Cache-Control": "no-cache",
                                        "X-Accel-Buffering": "no"})


# --- Web Push subscriptions ------------------------------------------------------------


@router.get("/push/vapid-public-key", response_model=VapidKeyOut,
            summary="The applicationServerKey browsers subscribe with (public)")
async def vapid_public_key(runtime: Runtime) -> VapidKeyOut:
    return VapidKeyOut(public_key=runtime.state["vapid_public_key"])


@router.post("/push/subscriptions", response_model=PushSubscriptionOut, status_code=201,
             summary="Register this browser for Web Push")
async def subscribe(body: PushSubscriptionIn, runtime: Runtime,
                    principal: ReadOwn) -> PushSubscriptionOut:
    """Idempotent per endpoint. Raises: Forbidden (403) when another user holds the endpoint."""
    doc = await service.subscribe_push(runtime, _ctx(runtime), principal.subject, body)
    return PushSubscriptionOut(id=doc["_id"], endpoint=doc["endpoint"],
                               created_at=doc["created_at"])


@router.delete("/push/subscriptions/{subscription_id}", status_code=204,
               summary="Forget a browser")
async def unsubscribe(runtime: Runtime, principal: ReadOwn,
                      subscription_id: Annotated[str, Path(max_length=64)]) -> Response:
    """Raises: NotFound (404) when the caller has no such subscription."""
    await service.unsubscribe_push(runtime, principal.subject, subscription_id)
    return Response(status_code=204)


# --- the delivery log ----------------------------------------------------------------------


def _delivery_out(doc: Document) -> DeliveryOut:
    return DeliveryOut(
        id=doc["_id"], user_id=doc["user_id"], channel=doc["channel"],
        template=doc["template"], trigger=doc.get("trigger"), status=doc["status"],
        reason=doc.get("reason"), to=domain.mask_address(doc["channel"], doc.get("to")),
        attempts=int(doc.get("attempts", 0)), next_attempt_at=doc.get("next_attempt_at"),
        provider_id=doc.get("provider_id"), last_error=doc.get("last_error"),
        created_at=doc["created_at"], sent_at=doc.get("sent_at"),
        delivered_at=doc.get("delivered_at"), failed_at=doc.get("failed_at"))


@router.get("/deliveries", response_model=Page[DeliveryOut], summary="Search the delivery log")
async def search_deliveries(
    runtime: Runtime,
    principal: Principal = require(Permission.NOTIFICATIONS_SEARCH),
    user_id: Annotated[str | None, Query(max_length=128)] = None,
    status: Status | None = None,
    channel: Annotated[Channel | None, Query()] = None,
    appointment_id: Annotated[str | None, Query(max_length=128)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[DeliveryOut]:
    """Deliveries matching every given filter, newest first; bodies are never returned and
    addresses are masked. Staff see the deliveries about appointments of the hospitals
    where they work; admins every delivery (issue 16). Raises: BadRequest (400) for a
    foreign cursor; 422 for an unknown status or channel."""
    where: dict[str, Any] = {}
    reach = await reach_of(runtime.db, principal)
    if not reach.platform:
        where["hospital_ids"] = {"$in": sorted(reach.member_of)}
    if user_id:
        where["user_id"] = user_id
    if status is not None:
        where["status"] = status.value
    if channel is not None:
        where["channel"] = channel.value
    if appointment_id:
        where["appointment_id"] = appointment_id
    docs = await store.find_deliveries(runtime.db, where, before=_position(cursor),
                                       limit=limit + 1)
    return Page[DeliveryOut](items=[_delivery_out(d) for d in docs[:limit]],
                             next_cursor=_next_cursor(docs, limit))


# --- Twilio status callbacks ---------------------------------------------------------------


@router.post("/twilio/status", status_code=204, summary="Twilio delivery status callback")
async def twilio_status(request: Request, runtime: Runtime) -> Response:
    """Public, but accepted only with a valid ``X-Twilio-Signature`` (HMAC-SHA1 of the URL
    and the sorted form parameters with the auth token, checked by Twilio's
    ``RequestValidator``) over ``twilio_status_callback_url`` (or the URL the request
    arrived at when none is configured).

    Raises:
        Forbidden: a missing or wrong signature (403).
        BadRequest: no ``MessageSid`` or ``MessageStatus`` (400).
    """
    settings = _settings(runtime)
    body = (await request.body()).decode("utf-8", errors="replace")
    params = dict(parse_qsl(body, keep_blank_values=True))
    signature = request.headers.get("x-twilio-signature", "")
    url = settings.twilio_status_callback_url or str(request.url)
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    if not signature or not validator.validate(url, params, signature):
        raise Forbidden("the Twilio signature is missing or does not match")
    sid, status = params.get("MessageSid"), params.get("MessageStatus")
    if not sid or not status:
        raise BadRequest("MessageSid and MessageStatus are required")
    await dispatch.apply_sms_status(runtime, _ctx(runtime).clock, sid, status,
                                    params.get("ErrorCode") or None)
    return Response(status_code=204)


@router.post("/email/verify", response_model=EmailVerificationOut,
             summary="Redeem an e-mail verification token (public, single use)")
async def verify_email(body: EmailVerificationIn, runtime: Runtime) -> EmailVerificationOut:
    """The app's ``/verify-email?token=…`` page POSTs the token from the welcome mail.

    Raises:
        BadRequest: (400, one constant detail) the token is forged, for another address,
            expired or already used.
    """
    user_id = await verification.redeem_email_token(runtime, _ctx(runtime), body.token)
    return EmailVerificationOut(user_id=user_id, email_verified=True)


@router.post("/phone/verification", response_model=PhoneCodeSentOut, status_code=202,
             summary="Text me a one-time code for my phone number")
async def send_phone_code(runtime: Runtime, principal: ReadOwn) -> PhoneCodeSentOut:
    """A 6-digit code by SMS to the caller's current number (any earlier code is void);
    202: it is queued, the dispatcher sends it at once.

    Raises:
        Conflict: (409) no number on the account, or it is already verified.
        TooManyRequests: (429, ``Retry-After``) a code was sent within the cooldown.
    """
    sent = await verification.send_phone_code(runtime, _ctx(runtime), principal.subject)
    runtime.state["dispatcher"].wake()
    return PhoneCodeSentOut(to=sent.to, expires_at=sent.expires_at)


@router.post("/phone/verify", response_model=PhoneVerificationOut,
             summary="Verify my phone number with the SMS code")
async def verify_phone(body: PhoneVerificationIn, runtime: Runtime,
                       principal: ReadOwn) -> PhoneVerificationOut:
    """Only the caller's own number, with the code texted to it.

    Raises:
        UnprocessableContent: (422, one constant detail) wrong, expired, used up (after
            ``phone_code_max_attempts`` tries) or for an earlier number.
    """
    await verification.verify_phone_code(runtime, _ctx(runtime), principal.subject, body.code)
    return PhoneVerificationOut(user_id=principal.subject, phone_verified=True)
