"""Verified tokens are remembered only until they expire."""

import time

import pytest

from healthflow.common.auth import LEEWAY_SECONDS
from healthflow.common.errors import Unauthorized
from healthflow.devkit.testing import TokenFactory


async def test_a_token_is_verified_once_and_refused_after_expiry(monkeypatch):
    tokens = TokenFactory()
    verifier = tokens.verifier()
    token = tokens.mint("u1", ["patient"], ttl=60)
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first  # from the cache
    later = time.time() + 60 + LEEWAY_SECONDS + 1
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(token)


async def test_a_tampered_token_is_not_served_from_the_cache():
    tokens = TokenFactory()
    verifier = tokens.verifier()
    token = tokens.mint("u1", ["patient"])
    await verifier.verify(token)
    head, payload, signature = token.split(".")
    forged = ".".join([head, payload, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")])
    with pytest.raises(Unauthorized):
        await verifier.verify(forged)
