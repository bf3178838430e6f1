"""The person-key client (:func:`healthflow.common.personaldata.person_keys_for`) calls as
its service, with the credential of ``INTERNAL_SERVICE_KEY``; the stand-in answers as
auth does (401 without a valid one, 403 for a service that is no person-key reader)."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from healthflow.common.personaldata import person_keys_for
from healthflow.common.servicecredentials import service_token
from healthflow.common.settings import ServiceSettings
from healthflow.devkit.personkeys import PersonKeyStandIn


def _settings(service: str, stand_in: PersonKeyStandIn, key: str | None = None,
              token: str | None = None) -> ServiceSettings:
    settings = ServiceSettings(service_name=service, person_keys_url=stand_in.url)
    if key is not None:
        settings.internal_service_key = SecretStr(key)
    if token is not None:
        settings.internal_token = SecretStr(token)
    return settings


async def test_a_reader_gets_the_key_as_itself() -> None:
    async with PersonKeyStandIn() as stand_in:
        made = stand_in.key("u-1")
        assert await person_keys_for(_settings("patient", stand_in)).get("u-1") == made
        assert stand_in.callers == ["patient"]


async def test_a_deployment_gives_the_caller_only_its_own_token() -> None:
    async with PersonKeyStandIn(service_key="the-platforms-key") as stand_in:
        made = stand_in.key("u-1")
        own = service_token("the-platforms-key", "prescription")
        keys = person_keys_for(_settings("prescription", stand_in, token=own))
        assert await keys.get("u-1") == made
        theirs = service_token("the-platforms-key", "appointment")  # naming itself another
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await person_keys_for(_settings("notification", stand_in, token=theirs)).get("u-1")
        assert refused.value.response.status_code == 401
        assert stand_in.callers == ["prescription"]


@pytest.mark.parametrize(("service", "key", "status"), [
    ("appointment", None, 403), ("patient", "not-the-platforms-key", 401)])
async def test_others_are_refused(service: str, key: str | None, status: int) -> None:
    async with PersonKeyStandIn() as stand_in:
        stand_in.key("u-1")
        with pytest.raises(httpx.HTTPStatusError) as refused:
            await person_keys_for(_settings(service, stand_in, key)).get("u-1")
        assert refused.value.response.status_code == status
        assert stand_in.callers == []


def test_the_readers_are_exactly_the_services_that_open_sealed_values() -> None:
    """:data:`PERSON_KEY_READERS` names every service whose code asks for person keys, and
    no other (a new reader is refused with 403 until it is added there)."""
    from pathlib import Path

    from healthflow.common.servicecredentials import PERSON_KEY_READERS

    root = Path(__file__).resolve().parents[3] / "services"
    readers = {path.relative_to(root).parts[0] for path in root.glob("*/src/**/*.py")
               if "person_keys_for(" in path.read_text(encoding="utf-8")}
    assert readers == PERSON_KEY_READERS
