"""Each contract against its kept schema, and the comparison itself on deliberate changes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

import pytest
from pydantic import BaseModel

from healthflow.contracts import compat, contracts
from healthflow.contracts.base import EventPayload


@pytest.mark.parametrize("type_", sorted(contracts()))
def test_contract_keeps_faith_with_its_kept_schema(type_: str) -> None:
    model = contracts()[type_]
    path = compat.schema_path(model)
    assert path.exists(), (
        f"no kept schema for {type_} v{model.event_version}: "
        "run `python -m healthflow.contracts.compat write`")
    problems = compat.breaking_changes(json.loads(path.read_text()), model.model_json_schema())
    assert not problems, f"{type_}: breaking change, raise its version: {problems}"
    assert path.read_text() == compat.render(model), (
        f"{path.name} is stale (a compatible change): run "
        "`python -m healthflow.contracts.compat write`")


class Fee(BaseModel):
    amount: int
    currency: str


class V1(EventPayload):
    id: str
    at: datetime
    note: str | None = None
    tags: list[str]
    fee: Fee


def changes(new: type[BaseModel]) -> list[str]:
    return compat.breaking_changes(V1.model_json_schema(), new.model_json_schema())


def test_compatible_changes_pass() -> None:
    class OptionalAdded(V1):
        extra: int | None = None

    class Redocumented(EventPayload):
        """New words."""

        id: str
        at: datetime
        note: str | None = None  # the description changes nothing
        tags: list[str]
        fee: Fee

    assert changes(V1) == []
    assert changes(OptionalAdded) == []
    assert changes(Redocumented) == []


def test_breaking_changes_are_named() -> None:
    class Removed(EventPayload):
        at: datetime
        note: str | None = None
        tags: list[str]
        fee: Fee

    class Renamed(EventPayload):
        identifier: str
        at: datetime
        note: str | None = None
        tags: list[str]
        fee: Fee

    class Retyped(V1):
        tags: list[int]  # type: ignore[assignment]

    class RequiredAdded(V1):
        site: str

    class MadeRequired(V1):
        note: str | None  # type: ignore[assignment]

    class NestedRetyped(V1):
        fee: Literal["free"]  # type: ignore[assignment]

    assert changes(Removed) == ["id: removed"]
    assert changes(Renamed) == ["id: removed", "identifier: now required"]
    assert changes(Retyped) == ["tags.[]: type changed"]
    assert changes(RequiredAdded) == ["site: now required"]
    assert changes(MadeRequired) == ["note: now required"]
    assert changes(NestedRetyped) == ["fee: type changed"]


def test_nested_fields_are_compared_through_references() -> None:
    class Fee2(BaseModel):
        amount: str
        currency: str

    class NestedChanged(V1):
        fee: Fee2  # type: ignore[assignment]

    assert changes(NestedChanged) == ["fee.amount: type changed"]
