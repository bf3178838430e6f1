"""Upstream failures at the edge: circuit breaker (fail fast, recover by itself),
timeouts (504), retries of idempotent methods only, body limits (413)."""

from __future__ import annotations

import time

import httpx

from healthflow.common.errors import PROBLEM_JSON

from .conftest import ServerThread, make_upstream, wait_until


def test_stopped_upstream_fails_fast_with_503_then_recovers(start_gateway, platform):
    app, _ = make_upstream("notification", ["/api/v1/notifications"])
    upstream = ServerThread(app, port=platform.notification_port).start()
    gateway = start_gateway(breaker_failure_threshold=3, breaker_reset_seconds=1.0)
    url = gateway.url + "/api/v1/notifications/echo"
    auth = platform.tokens.headers(roles=["patient"])
    try:
        assert httpx.get(url, headers=auth).status_code == 200
        upstream.stop()

        started = time.monotonic()
        down = httpx.get(url, headers=auth, timeout=5)
        assert time.monotonic() - started < 1.0
        assert down.status_code == 503
        assert down.headers["content-type"] == PROBLEM_JSON
        assert int(down.headers["retry-after"]) >= 1
        # the retries of that GET were failures enough to open the circuit
        started = time.monotonic()
        open_ = httpx.get(url, headers=auth, timeout=5)
        assert time.monotonic() - started < 0.5
        assert open_.status_code == 503 and "circuit open" in open_.json()["detail"]
        assert 1 <= int(open_.headers["retry-after"]) <= 1
        metrics = httpx.get(gateway.url + "/metrics").text
        assert 'healthflow_gateway_circuit_open{upstream="notification"} 1.0' in metrics

        upstream = ServerThread(app, port=platform.notification_port).start()
        wait_until(lambda: httpx.get(url, headers=auth, timeout=5).status_code == 200,
                   timeout=10, interval=0.2)
        status = httpx.get(gateway.url + "/api/v1/platform/status",
                           headers=platform.tokens.headers(roles=["admin"])).json()
        assert status["services"]["notification"]["circuit"] == "closed"
    finally:
        upstream.stop()


def test_silent_upstream_is_504_problem_json(start_gateway, platform):
    gateway = start_gateway(policy_overrides={"default": {"timeout": 0.3}})
    started = time.monotonic()
    response = httpx.get(gateway.url + "/api/v1/patients/slow?seconds=2",
                         headers=platform.tokens.headers(), timeout=10)
    assert time.monotonic() - started < 1.5
    assert response.status_code == 504
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["type"].endswith("/upstream-timeout")
    # within the timeout the same route answers
    fine = httpx.get(gateway.url + "/api/v1/patients/slow?seconds=0.05",
                     headers=platform.tokens.headers(), timeout=10)
    assert fine.status_code == 200


def test_only_idempotent_methods_are_retried_on_503(start_gateway, platform):
    gateway = start_gateway(breaker_failure_threshold=10)
    state = platform.patient_state
    auth = platform.tokens.headers()
    state.busy_calls, state.busy_failures = 0, 2
    retried = httpx.get(gateway.url + "/api/v1/patients/busy", headers=auth)
    assert retried.status_code == 200 and retried.json() == {"calls": 3}

    state.busy_calls, state.busy_failures = 0, 2
    not_retried = httpx.post(gateway.url + "/api/v1/patients/busy", headers=auth)
    assert not_retried.status_code == 503  # the upstream's own answer, relayed
    assert not_retried.json() == {"detail": "busy"}
    assert state.busy_calls == 1

    state.busy_calls, state.busy_failures = 0, 10
    exhausted = httpx.get(gateway.url + "/api/v1/patients/busy", headers=auth)
    assert exhausted.status_code == 503 and state.busy_calls == 3  # retry_attempts
    assert exhausted.json() == {"detail": "busy"}
    # 1 + 3 consecutive failures so far; threshold 10 keeps the circuit closed
    state.busy_calls, state.busy_failures = 0, 0
    assert httpx.get(gateway.url + "/api/v1/patients/busy", headers=auth).status_code == 200


def test_bodies_over_the_route_limit_are_413(start_gateway, platform):
    gateway = start_gateway(policy_overrides={"default": {"max_body_bytes": 1000}})
    url = gateway.url + "/api/v1/patients/echo"
    auth = platform.tokens.headers()
    assert httpx.post(url, headers=auth, content=b"x" * 1000).status_code == 200
    declared = httpx.post(url, headers=auth, content=b"x" * 1001)
    assert declared.status_code == 413
    assert declared.headers["content-type"] == PROBLEM_JSON

    def chunks():
        for _ in range(3):
            yield b"y" * 600

    streamed = httpx.post(url, headers=auth, content=chunks())
    assert streamed.status_code == 413
    assert streamed.json()["type"].endswith("/content-too-large")
