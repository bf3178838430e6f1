"""The verifier honours revocations (cached tokens included), refuses tokens that live too
long and tokens of a key that left the key set; the revocation state stays bounded;
streams end when their token is refused."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from healthflow.common.auth import TokenVerifier
from healthflow.common.errors import Unauthorized
from healthflow.common.events.envelope import CloudEvent
from healthflow.common.revocation import RevocationState, snapshot_url, until_refused
from healthflow.devkit.testing import TokenFactory


def verifier_with(tokens: TokenFactory, state: RevocationState | None = None,
                  max_lifetime: float = 3600) -> TokenVerifier:
    return TokenVerifier(issuer=tokens.issuer, audience=tokens.audience, jwks=tokens.jwks,
                         max_lifetime=max_lifetime, revocations=state)


def event(type_: str, **data: object) -> CloudEvent:
    return CloudEvent(id=str(uuid.uuid4()), source="/healthflow/auth", type=type_,
                      time=datetime.now(UTC), data=data)


async def test_a_token_living_longer_than_the_maximum_is_refused() -> None:
    tokens = TokenFactory()
    verifier = verifier_with(tokens, max_lifetime=900)
    assert (await verifier.verify(tokens.mint("u1", ttl=900))).subject == "u1"
    with pytest.raises(Unauthorized, match="lifetime"):
        await verifier.verify(tokens.mint("u1", ttl=901))


async def test_a_revoked_session_is_refused_even_from_the_cache() -> None:
    tokens, state = TokenFactory(), RevocationState()
    verifier = verifier_with(tokens, state)
    token = tokens.mint("u1", sid="s1")
    other = tokens.mint("u1", sid="s2")
    await verifier.verify(token)  # cached now
    until = datetime.now(UTC) + timedelta(hours=1)
    state.apply(event("auth.session_revoked", session_id="s1", user_id="u1", reason="logout",
                      until=until.isoformat()))
    with pytest.raises(Unauthorized, match="session has ended"):
        await verifier.verify(token)
    assert (await verifier.verify(other)).subject == "u1"  # another session of the user


async def test_a_users_not_before_refuses_older_tokens_only() -> None:
    tokens, state = TokenFactory(), RevocationState()
    verifier = verifier_with(tokens, state)
    now = int(time.time())
    old = tokens.mint("u1", iat=now - 10, exp=now + 290)
    same_second = tokens.mint("u1", iat=now, exp=now + 300)
    newer = tokens.mint("u1", iat=now + 1, exp=now + 301)
    state.revoke_user("u1", not_before=now, until=now + 3600)
    for refused in (old, same_second):
        with pytest.raises(Unauthorized, match="revoked"):
            await verifier.verify(refused)
    assert (await verifier.verify(newer)).subject == "u1"
    assert (await verifier.verify(tokens.mint("u2"))).subject == "u2"


async def test_a_revoked_key_ends_its_tokens_and_a_dropped_key_its_cached_ones() -> None:
    tokens, state = TokenFactory(), RevocationState()
    verifier = verifier_with(tokens, state)
    token = tokens.mint("u1")
    await verifier.verify(token)
    state.revoke_key(tokens.kid, until=time.time() + 3600)
    with pytest.raises(Unauthorized, match="revoked key"):
        await verifier.verify(token)

    plain = verifier_with(tokens)  # no revocation state: the key set alone
    await plain.verify(token)
    plain.drop_key(tokens.kid)
    with pytest.raises(Unauthorized, match="no longer trusted"):
        await plain.verify(token)


def test_entries_are_forgotten_after_their_until_and_memory_stays_bounded() -> None:
    now = [1_000_000.0]
    state = RevocationState(max_entries=3, clock=lambda: now[0])
    state.revoke_session("s1", until=now[0] + 10)
    state.revoke_user("u1", not_before=now[0], until=now[0] + 10)
    assert len(state) == 2
    now[0] += 11
    assert state.prune() == 2 and len(state) == 0

    for i in range(4):  # one more than it may hold, none expired
        state.revoke_session(f"s{i}", until=now[0] + 100)
    assert len(state) <= 3
    # Never forgetting a revocation: every token issued until now is refused instead.
    assert state.refusal({"sub": "anyone", "sid": "x", "iat": now[0] - 1}, "k") is not None
    assert state.refusal({"sub": "anyone", "sid": "x", "iat": now[0] + 1}, "k") is None
    now[0] += 101
    state.prune()
    assert state.refusal({"sub": "anyone", "sid": "x", "iat": now[0] - 200}, "k") is None


def test_a_snapshot_adds_to_what_is_known() -> None:
    state = RevocationState()
    later = time.time() + 600
    state.revoke_session("live", until=later)
    state.load({"sessions": [{"id": "s1", "until": later}],
                "users": [{"id": "u1", "not_before": 100.0, "until": later}],
                "keys": [{"kid": "k1", "until": later}]})
    assert state.refusal({"sub": "u", "sid": "live", "iat": 1}, "k") is not None
    assert state.refusal({"sub": "u", "sid": "s1", "iat": 1}, "k") is not None
    assert state.refusal({"sub": "u1", "iat": 100}, "k") is not None
    assert state.refusal({"sub": "u1", "iat": 101}, "k") is None
    assert state.refusal({"sub": "u", "iat": 1}, "k1") is not None
    assert state.synced_at is not None


def test_the_snapshot_url_is_beside_the_jwks() -> None:
    assert (snapshot_url("http://healthflow-auth:8101/.well-known/jwks.json")
            == "http://healthflow-auth:8101/internal/revocations")


async def test_a_stream_ends_at_once_when_its_token_is_revoked() -> None:
    state = RevocationState()
    revoked: list[str] = []

    async def forever() -> AsyncIterator[str]:
        yield "first"
        await asyncio.sleep(3600)
        yield "never"

    def refusal() -> str | None:
        return revoked[0] if revoked else None

    stream = until_refused(forever(), refusal, state, heartbeat=60,
                           closing=lambda reason: f"closed: {reason}")
    received = [await stream.__anext__()]
    nxt = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.05)
    assert not nxt.done()  # waiting for the next item or the heartbeat
    revoked.append("the token's session has ended")
    began = time.monotonic()
    state.revoke_session("s1", until=time.time() + 60)  # heard of: checked at once
    received.append(await asyncio.wait_for(nxt, 2))
    assert time.monotonic() - began < 1  # not the 60 s heartbeat
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert received == ["first", "closed: the token's session has ended"]


async def test_a_stream_rechecks_on_every_heartbeat() -> None:
    expired: list[str] = []

    async def forever() -> AsyncIterator[str]:
        await asyncio.sleep(3600)
        yield "never"

    stream = until_refused(forever(), lambda: expired[0] if expired else None, None,
                           heartbeat=0.1)
    nxt = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.25)
    assert not nxt.done()
    expired.append("the token has expired")  # no event: only the heartbeat notices
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(nxt, 1)
