"""The payment service on the multi-process platform, called through the gateway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from healthflow.devkit.testing import RunningPlatform, platform_process, rabbitmq_vhost


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    workdir = tmp_path_factory.mktemp("e2e")
    with rabbitmq_vhost() as amqp_url, platform_process(
            workdir, amqp_url, "--only", "auth,payment") as running:
        yield running


async def test_a_signed_in_user_writes_and_reads_a_note_through_the_gateway(
        platform: RunningPlatform) -> None:
    async with platform.client() as api:
        assert (await api.post("/api/v1/payment/notes", json={"title": "t"})).status_code == 401
        login = await api.post("/api/v1/auth/token", data={
            "username": platform.admin_email, "password": platform.admin_password})
        assert login.status_code == 200, login.text
        me = {"Authorization": f"Bearer {login.json()['access_token']}"}
        created = await api.post("/api/v1/payment/notes", json={"title": "From the edge"},
                                 headers=me)
        assert created.status_code == 201, created.text
        read = await api.get(f"/api/v1/payment/notes/{created.json()['id']}", headers=me)
        assert read.status_code == 200 and read.json()["title"] == "From the edge"
