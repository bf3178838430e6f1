"""Issue 16 through the gateway, as clients on different machines would meet it: each
client's socket is bound to its own loopback address (127.0.0.x), so the gateway sees
distinct peers, and the auth service behind it counts failed logins per real client
address (the gateway's ``X-Forwarded-For``), not per gateway.

* an address that spends its failed-login budget (20 failures at any accounts in 15
  minutes, against spraying) is refused; another address is not, and a client-sent
  ``X-Forwarded-For`` does not buy the first a fresh budget (the gateway, at the edge,
  believes only the socket);
* an attacker failing at a victim's account is refused; the victim, from their own
  address and with the right password, logs in at once.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from healthflow.devkit.testing import RunningPlatform

from .conftest import PASSWORD, assert_problem, login, new_email, register_patient

WRONG = "Not-The-Password-At-All-99"
PER_ADDRESS = 20
"""The auth service's default failed-login budget per client address (15 minutes)."""
PER_CLIENT = 5
"""… and per (account, client address) pair, in its shortest window (5 minutes)."""


def loopback_address() -> str:
    """A fresh 127.x.y.z (not 127.0.0.1, which the rest of the suite logs in from)."""
    return f"127.{secrets.randbelow(200) + 20}.{secrets.randbelow(250) + 1}." \
           f"{secrets.randbelow(250) + 2}"


@asynccontextmanager
async def client_at(platform: RunningPlatform, address: str
                    ) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the gateway whose connections come from ``address``."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with platform.client(transport=transport) as client:
        yield client


async def token(client: httpx.AsyncClient, email: str, password: str = WRONG,
                headers: dict[str, str] | None = None) -> httpx.Response:
    return await client.post("/api/v1/auth/token", data={"username": email,
                                                          "password": password},
                             headers=headers)


def refused(response: httpx.Response, says: str) -> None:
    body = assert_problem(response, 429, "rate-limited")
    assert int(response.headers["retry-after"]) >= 1
    assert says in body["detail"], body


async def test_two_client_addresses_have_two_login_budgets(platform: RunningPlatform) -> None:
    sprayer, other = loopback_address(), loopback_address()
    fresh: Callable[[], str] = lambda: new_email("spray")  # noqa: E731
    async with client_at(platform, sprayer) as spraying, client_at(platform, other) as api:
        for _ in range(PER_ADDRESS):  # one guess at each of many accounts (spraying)
            assert_problem(await token(spraying, fresh()), 400)
        refused(await token(spraying, fresh()), "from this client address")
        # The client's own X-Forwarded-For does not make it someone else at the edge.
        for claimed in ("198.51.100.77", f"198.51.100.78, {other}", other):
            refused(await token(spraying, fresh(), headers={"X-Forwarded-For": claimed}),
                    "from this client address")
        # The other address has its own budget: a wrong password is just wrong there,
        # and a right one works.
        assert_problem(await token(api, fresh()), 400)
        patient = await register_patient(api, "budget")
        await login(api, patient.email, PASSWORD)


async def test_an_attacker_cannot_lock_the_owner_out(platform: RunningPlatform) -> None:
    attacker, owner_address = loopback_address(), loopback_address()
    async with client_at(platform, attacker) as attacking, \
            client_at(platform, owner_address) as owner:
        victim = await register_patient(owner, "victim")
        for _ in range(PER_CLIENT):
            assert_problem(await token(attacking, victim.email), 400)
        refused(await token(attacking, victim.email), "from this client for this account")
        # even the right password, from the attacker's address, waits
        refused(await token(attacking, victim.email, PASSWORD),
                "from this client for this account")
        # the owner, from their own address, is let in at once
        tokens = await login(owner, victim.email, PASSWORD)
        assert tokens["access_token"]
