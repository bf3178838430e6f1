"""Revocation of access tokens within seconds, in every service process.

The auth service publishes three events (identifiers only, contracts in
:mod:`healthflow.contracts.auth`):

* ``auth.session_revoked``: tokens whose ``sid`` claim is that session (logout,
  a reused refresh token);
* ``auth.user_tokens_revoked``: tokens of that user (``sub``) whose ``iat`` is at or
  before ``not_before`` (deactivation, role and password changes);
* ``auth.signing_key_revoked``: tokens signed by that ``kid`` (a compromised key).

Each process keeps them in a :class:`RevocationState` that every
:class:`~healthflow.common.auth.TokenVerifier` of the process consults on every
call (cached tokens included). :class:`RevocationFeed` fills it:

* **live**, from a *broadcast* subscription of the transport: on RabbitMQ an
  exclusive, auto-deleted queue per process bound to the three types, so every
  replica hears every revocation (a service's durable queue would give each event
  to one replica only);
* **on start and every** ``revocation_sync_interval`` **seconds**, from the auth
  service's snapshot (``GET /internal/revocations``, internal network only, the
  same trust as the JWKS): a process started after a revocation, or one whose
  broker connection dropped for a while, learns what it missed.

Entries carry ``until``: when the last token they concern would have expired
anyway (tokens live at most ``token_max_lifetime`` seconds, enforced by the
verifier); expired entries are dropped. Memory is bounded by ``max_entries``: past
it, the state falls back to refusing every token issued before that moment (a
global "not before"; clients refresh), never to forgetting a revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from healthflow.common.workers import cancel_and_wait
from healthflow.contracts.auth import SessionRevoked, SigningKeyRevoked, UserTokensRevoked

if TYPE_CHECKING:
    from healthflow.common.events.envelope import CloudEvent
    from healthflow.common.events.transport import Transport

log = logging.getLogger(__name__)

REVOCATION_TYPES = (SessionRevoked.event_type, UserTokensRevoked.event_type,
                    SigningKeyRevoked.event_type)
"""The event types every process subscribes to (broadcast)."""

SNAPSHOT_PATH = "/internal/revocations"
"""The auth service's snapshot route (not routed by the gateway)."""

DEFAULT_MAX_ENTRIES = 200_000

Snapshot = Mapping[str, Any]
"""``{"sessions": [{"id", "until"}], "users": [{"id", "not_before", "until"}],
"keys": [{"kid", "until"}]}``, times as epoch seconds."""


class RevocationState:
    """What this process refuses: revoked sessions, per-user "not before", revoked keys.

    Times are epoch seconds (the tokens' NumericDate). ``clock`` is an input so
    tests choose the time.
    """

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._sessions: dict[str, float] = {}
        self._users: dict[str, tuple[float, float]] = {}
        self._keys: dict[str, float] = {}
        self._global: tuple[float, float] | None = None
        self._changed = asyncio.Event()
        self.keys_revoked_at = 0.0
        """``time.monotonic()`` of the last key revocation recorded: a verifier fetches
        the key set again after it (a new key signs now), however recent its last fetch."""
        self.synced_at: float | None = None
        """When the last snapshot was loaded (epoch seconds), ``None`` before the first."""

    # ------------------------------------------------------------------ recording

    def revoke_session(self, session_id: str, until: float) -> None:
        """Refuse tokens whose ``sid`` is ``session_id`` until ``until``."""
        self._sessions[session_id] = max(until, self._sessions.get(session_id, 0.0))
        self._recorded()

    def revoke_user(self, user_id: str, not_before: float, until: float) -> None:
        """Refuse tokens of ``user_id`` with ``iat`` ≤ ``not_before`` until ``until``."""
        old_nb, old_until = self._users.get(user_id, (0.0, 0.0))
        self._users[user_id] = (max(not_before, old_nb), max(until, old_until))
        self._recorded()

    def revoke_key(self, kid: str, until: float) -> None:
        """Refuse every token signed by ``kid`` until ``until``."""
        if kid not in self._keys:
            self.keys_revoked_at = time.monotonic()
        self._keys[kid] = max(until, self._keys.get(kid, 0.0))
        self._recorded()

    def apply(self, event: CloudEvent) -> None:
        """Record a revocation event (one of :data:`REVOCATION_TYPES`; others are ignored).

        Raises:
            pydantic.ValidationError: the payload breaks its contract.
        """
        if event.type == SessionRevoked.event_type:
            s = SessionRevoked.model_validate(event.data)
            self.revoke_session(s.session_id, s.until.timestamp())
        elif event.type == UserTokensRevoked.event_type:
            u = UserTokensRevoked.model_validate(event.data)
            self.revoke_user(u.user_id, u.not_before.timestamp(), u.until.timestamp())
        elif event.type == SigningKeyRevoked.event_type:
            k = SigningKeyRevoked.model_validate(event.data)
            self.revoke_key(k.kid, k.until.timestamp())

    def load(self, snapshot: Snapshot) -> None:
        """Add a snapshot's entries (a union: entries only ever revoke more)."""
        for s in snapshot.get("sessions", []):
            self._sessions[s["id"]] = max(float(s["until"]), self._sessions.get(s["id"], 0.0))
        for u in snapshot.get("users", []):
            old_nb, old_until = self._users.get(u["id"], (0.0, 0.0))
            self._users[u["id"]] = (max(float(u["not_before"]), old_nb),
                                    max(float(u["until"]), old_until))
        for k in snapshot.get("keys", []):
            if k["kid"] not in self._keys:
                self.keys_revoked_at = time.monotonic()
            self._keys[k["kid"]] = max(float(k["until"]), self._keys.get(k["kid"], 0.0))
        self.synced_at = self.clock()
        self._recorded()

    def _recorded(self) -> None:
        if len(self) > self.max_entries:
            self.prune()
        if len(self) > self.max_entries:
            now = self.clock()
            until = max([*self._sessions.values(), *(u for _, u in self._users.values()), now])
            log.error("more than %d revocations held; refusing every token issued before now",
                      self.max_entries)
            self._global = (now, until)
            self._sessions.clear()
            self._users.clear()
        self._changed.set()
        self._changed = asyncio.Event()

    def prune(self) -> int:
        """Forget entries whose ``until`` has passed; how many were dropped."""
        now = self.clock()
        before = len(self)
        self._sessions = {k: u for k, u in self._sessions.items() if u > now}
        self._users = {k: v for k, v in self._users.items() if v[1] > now}
        self._keys = {k: u for k, u in self._keys.items() if u > now}
        if self._global is not None and self._global[1] <= now:
            self._global = None
        return before - len(self)

    def __len__(self) -> int:
        return len(self._sessions) + len(self._users) + len(self._keys)

    # ------------------------------------------------------------------ checking

    def refusal(self, claims: Mapping[str, Any], kid: str) -> str | None:
        """Why a token with ``claims``, signed by ``kid``, is revoked (``None``: it is not)."""
        if kid in self._keys:
            return "the token was signed by a revoked key"
        sid = claims.get("sid")
        if isinstance(sid, str) and sid in self._sessions:
            return "the token's session has ended"
        iat = float(claims.get("iat", 0))
        user = self._users.get(str(claims.get("sub")))
        if user is not None and iat <= user[0]:
            return "the token was revoked; log in again"
        if self._global is not None and iat <= self._global[0]:
            return "the token was revoked; log in again"
        return None

    async def wait_changed(self) -> None:
        """Return when the next revocation is recorded (callers bound the wait)."""
        await self._changed.wait()


def snapshot_url(jwks_url: str) -> str:
    """The auth service's snapshot URL: the JWKS URL's origin + :data:`SNAPSHOT_PATH`."""
    parts = urlsplit(jwks_url)
    return urlunsplit((parts.scheme, parts.netloc, SNAPSHOT_PATH, "", ""))


INCREMENT_OVERLAP_SECONDS = 30.0
"""An increment asks for entries recorded this long before the previous answer's
``as_of``: a revocation stamped earlier may commit after that answer was read."""


def http_snapshot(url: str, *, timeout: float = 5.0, incremental: bool = False,
                  headers: Mapping[str, str] | None = None,
                  ) -> Callable[[], Awaitable[Snapshot]]:
    """A snapshot source reading ``url`` (the auth service's ``/internal/revocations``)
    with ``headers`` (the caller's service credential,
    :func:`healthflow.common.servicecredentials.authorization`).

    ``incremental``: after the first answer, ask only for what was recorded since the
    previous one (``?since=``, less :data:`INCREMENT_OVERLAP_SECONDS`): for pollers that
    ask every few seconds (the gateway).
    """
    last: list[float] = []

    async def fetch() -> Snapshot:
        params = ({"since": max(0.0, last[0] - INCREMENT_OVERLAP_SECONDS)}
                  if incremental and last else None)
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(url, params=params, headers=headers)
            response.raise_for_status()
            body: Snapshot = response.json()
        if incremental and isinstance(body.get("as_of"), int | float):
            last[:] = [float(body["as_of"])]
        return body

    return fetch


class RevocationFeed:
    """Keeps one process's :class:`RevocationState` current (see the module docstring).

    Args:
        service: the service's name (names its broadcast queue).
        state: what to fill.
        transport: delivers the live events (:meth:`Transport.subscribe_broadcast`);
            ``None`` for a process without a broker (the gateway), which polls instead.
        snapshot: returns the current snapshot (HTTP from auth; auth reads its store).
        sync_interval: seconds between snapshots (and between retries of a failed one).
        on_event: called after each live event is recorded (auth reloads its key ring).
    """

    def __init__(self, service: str, state: RevocationState, transport: Transport | None,
                 snapshot: Callable[[], Awaitable[Snapshot]], *, sync_interval: float,
                 on_event: Callable[[CloudEvent], Awaitable[None]] | None = None) -> None:
        self.service = service
        self.state = state
        self.transport = transport
        self.snapshot = snapshot
        self.sync_interval = sync_interval
        self.on_event = on_event
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self) -> None:
        """Subscribe (live events first, so nothing falls between), then one snapshot
        attempt (a failure is logged and retried in the background), then the loop."""
        if self.transport is not None:
            await self.transport.subscribe_broadcast(
                f"{self.service}.revocations", REVOCATION_TYPES, self._on_event)
        await self.sync()
        self._task = asyncio.create_task(self._loop(), name=f"{self.service}-revocations")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    async def sync(self) -> bool:
        """Load one snapshot and prune; whether it was loaded."""
        try:
            self.state.load(await self.snapshot())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._failing:  # logged once each way, not at every poll
                log.warning("could not load the revocation snapshot: %s; live events still "
                            "apply, retrying every %.0f s", type(exc).__name__,
                            self.sync_interval)
            self._failing = True
            return False
        if self._failing:
            log.info("the revocation snapshot loads again")
        self._failing = False
        self.state.prune()
        return True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval)
            await self.sync()

    async def _on_event(self, event: CloudEvent) -> None:
        self.state.apply(event)
        if self.on_event is not None:
            await self.on_event(event)

    def readiness(self) -> dict[str, Any]:
        """The ``revocations`` entry of ``/readyz`` (informational: a service whose
        snapshot is stale still answers, with the live events it hears)."""
        synced = self.state.synced_at
        return {"entries": len(self.state),
                "snapshot_age_seconds": None if synced is None
                else round(self.state.clock() - synced, 1)}


# --------------------------------------------------------------------------- streams


async def until_refused(events: AsyncIterator[Any], refusal: Callable[[], str | None],
                        state: RevocationState | None, *, heartbeat: float,
                        closing: Callable[[str], Any] | None = None) -> AsyncIterator[Any]:
    """``events`` until ``refusal()`` answers a reason, checked every ``heartbeat``
    seconds, at once when a revocation arrives in ``state``, and before each item.

    Used by Server-Sent Events streams (:func:`healthflow.common.http.guarded_stream`):
    a token that expires or is revoked while its stream is open ends the stream.
    ``closing(reason)``, when given, is yielded last (a final event telling why).
    """
    iterator = events.__aiter__()
    pending: asyncio.Task[Any] | None = None
    try:
        while True:
            reason = refusal()
            if reason is not None:
                if closing is not None:
                    yield closing(reason)
                return
            if pending is None:
                pending = asyncio.ensure_future(iterator.__anext__())
            waiters: set[asyncio.Future[Any]] = {pending}
            changed: asyncio.Future[None] | None = None
            if state is not None:
                changed = asyncio.ensure_future(state.wait_changed())
                waiters.add(changed)
            done, _ = await asyncio.wait(waiters, timeout=heartbeat,
                                         return_when=asyncio.FIRST_COMPLETED)
            if changed is not None and not changed.done():
                changed.cancel()
            if pending in done:
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    return
                finally:
                    pending = None
                if refusal() is None:
                    yield item
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


async def wait_until_refused(refusal: Callable[[], str | None], state: RevocationState | None,
                             *, heartbeat: float) -> str:
    """Return the reason once ``refusal()`` gives one: checked every ``heartbeat`` seconds
    and at once when ``state`` records a revocation (a WebSocket relay's watch)."""
    while True:
        reason = refusal()
        if reason is not None:
            return reason
        if state is None:
            await asyncio.sleep(heartbeat)
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(heartbeat):
                await state.wait_changed()
