"""Issue 17: the ``/internal`` routes answer only a service that proves who it is, and
person keys only the services that open sealed personal values
(:mod:`healthflow.common.servicecredentials`)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from healthflow.common.servicecredentials import DEVELOPMENT_KEY, authorization

PROBLEM = "application/problem+json"


async def _routes(auth) -> tuple[str, str]:
    user = await auth.register()
    return "/internal/revocations", f"/internal/person-keys/{user['id']}"


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-a-service"},
    {"Authorization": "Service notification"},
    authorization("another-key", "notification"),
    {"Authorization": authorization(DEVELOPMENT_KEY, "patient")["Authorization"].replace(
        "patient:", "notification:")},  # patient's token presented as notification
])
async def test_without_a_valid_service_credential_both_routes_answer_401(auth, headers) -> None:
    for path in await _routes(auth):
        answer = await auth.http.get(path, headers=headers)
        assert answer.status_code == 401, (path, answer.text)
        assert answer.headers["content-type"] == PROBLEM
        assert answer.headers["www-authenticate"].startswith("Service ")
        assert "key" not in answer.json()


async def test_person_keys_only_for_the_services_that_open_sealed_values(auth) -> None:
    revocations, person_key = await _routes(auth)
    for service in ("notification", "patient", "prescription"):
        answer = await auth.http.get(person_key, headers=authorization(DEVELOPMENT_KEY,
                                                                         service))
        assert answer.status_code == 200 and set(answer.json()) == {"key_id", "key"}
    for service in ("appointment", "gateway", "audit"):
        headers = authorization(DEVELOPMENT_KEY, service)
        refused = await auth.http.get(person_key, headers=headers)
        assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM
        assert service in refused.json()["detail"]
        assert (await auth.http.get(revocations, headers=headers)).status_code == 200


async def test_the_key_is_the_configured_one(auth, monkeypatch) -> None:
    """A deployment's own key: the built-in development key no longer opens the routes."""
    monkeypatch.setattr(auth.app.state.runtime.settings, "internal_service_key",
                        SecretStr("a-deployments-own-key"))
    revocations, _ = await _routes(auth)
    refused = await auth.http.get(revocations, headers=authorization(DEVELOPMENT_KEY, "patient"))
    assert refused.status_code == 401
    answer = await auth.http.get(revocations,
                                 headers=authorization("a-deployments-own-key", "patient"))
    assert answer.status_code == 200
