"""Rate limits at the edge: 429 problem+json with Retry-After, the IETF RateLimit fields
on every response, and one budget shared by gateway replicas through Redis."""

from __future__ import annotations

import json
import re
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from healthflow.common.errors import PROBLEM_JSON

FIELD = re.compile(r'"(?P<name>[a-z-]+)";r=(?P<r>\d+);t=(?P<t>\d+)')


def remaining(response: httpx.Response) -> dict[str, int]:
    return {m["name"]: int(m["r"]) for m in FIELD.finditer(response.headers["ratelimit"])}


def test_login_burst_gets_429_with_retry_after_and_ratelimit_fields(start_gateway):
    gateway = start_gateway(policy_overrides={"token": {"ip_limit": "3/minute"}})
    url = gateway.url + "/api/v1/auth/token/echo"
    answers = [httpx.post(url, data={"username": "u", "password": "p"}) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    for index, answer in enumerate(answers[:3]):
        assert answer.headers["ratelimit-policy"] == '"token-ip";q=3;w=60'
        assert remaining(answer) == {"token-ip": 2 - index}
    refused = answers[3]
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.json()["status"] == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-policy"] == '"token-ip";q=3;w=60'
    assert remaining(refused) == {"token-ip": 0}
    # other route groups keep their own budget
    jwks = httpx.get(gateway.url + "/.well-known/jwks.json")
    assert jwks.status_code == 200 and remaining(jwks) == {"jwks-ip": 299}


def test_subjects_have_separate_budgets_and_errors_carry_the_fields(start_gateway, platform):
    gateway = start_gateway(policy_overrides={"default": {"subject_limit": "2/minute"}})
    url = gateway.url + "/api/v1/patients/echo"
    alice = platform.tokens.headers("alice", ["patient"])
    bob = platform.tokens.headers("bob", ["patient"])
    assert [httpx.get(url, headers=alice).status_code for _ in range(3)] == [200, 200, 429]
    ok = httpx.get(url, headers=bob)
    assert ok.status_code == 200
    assert remaining(ok)["default-subject"] == 1
    assert "default-ip" in remaining(ok)
    # errors the gateway produces itself carry the fields too
    for response in (httpx.get(url), httpx.get(gateway.url + "/api/v1/unknown")):
        assert response.status_code in (401, 404)
        assert "ratelimit" in response.headers and "ratelimit-policy" in response.headers


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def test_two_gateway_processes_share_one_budget_through_redis(
        platform, gateway_processes, unique_name):
    if not _redis_answers():
        pytest.fail("Redis is not answering on 127.0.0.1:6379: run `make deps`", pytrace=False)
    quota = 40
    env = platform.env(
        GATEWAY_REDIS_URL="redis://127.0.0.1:6379/0",
        GATEWAY_RATELIMIT_KEY_PREFIX=f"test-{unique_name}",
        GATEWAY_POLICY_OVERRIDES=json.dumps({"token": {"ip_limit": f"{quota}/minute"}}),
    )
    first, second = gateway_processes(env), gateway_processes(env)
    first.wait_ready()
    second.wait_ready()
    urls = [first.url, second.url] * 60  # 120 attempts, 3 × the quota

    def attempt(base: str) -> tuple[str, int]:
        response = httpx.post(base + "/api/v1/auth/token/echo", data={"u": "x"}, timeout=10)
        return base, response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, urls))
    accepted = [base for base, code in results if code == 200]
    refused = [code for _, code in results if code != 200]
    assert set(refused) <= {429}
    assert quota * 0.95 <= len(accepted) <= quota * 1.05, len(accepted)
    # both replicas served part of the budget: it really is one shared budget
    assert accepted.count(first.url) > 0 and accepted.count(second.url) > 0


def test_an_unreachable_redis_falls_back_to_per_process_limits_and_says_so(
        start_gateway, platform, caplog):
    from healthflow.devkit.embedded import free_port

    gateway = start_gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                            policy_overrides={"token": {"ip_limit": "2/minute"}})
    url = gateway.url + "/api/v1/auth/token/echo"
    with caplog.at_level("ERROR", logger="healthflow.gateway.ratelimit"):
        answers = [httpx.post(url, data={"u": "x"}, timeout=10) for _ in range(3)]
    # without its store the limiter keeps limiting, from this process's memory
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert remaining(answers[0]) == {"token-ip": 1}
    assert answers[2].headers["content-type"] == PROBLEM_JSON
    assert any("per process" in r.getMessage() for r in caplog.records)
    ready = httpx.get(gateway.url + "/readyz").json()
    assert ready["checks"]["ratelimit"] == "per-process (redis unreachable)"
    metrics = httpx.get(gateway.url + "/metrics").text
    errors = re.search(r"^healthflow_gateway_ratelimit_errors_total (\S+)$", metrics, re.M)
    assert errors is not None and float(errors.group(1)) >= 1
