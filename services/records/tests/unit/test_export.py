"""The export's handling of what the prescription service hands over (no I/O: the
prescription service's answer is given as data; its HTTP exchange is tested in the
gateway e2e tests)."""

from __future__ import annotations

from typing import Any

from healthflow.common.auth import Principal
from healthflow.records import export

GOOD = {"id": "rx-1", "patient_id": "p1", "encounter_id": "e1", "prescriber_id": "doc-a",
        "status": "active"}


class Answering:
    """A prescription client that answers one page with ``items``."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    async def page(self, token: str, patient_id: str, cursor: str | None, limit: int
                   ) -> tuple[list[Any], str | None]:
        return self.items, "more"


async def test_a_malformed_prescription_is_an_outcome_warning_not_a_server_error() -> None:
    principal = Principal(subject="doc-a", roles=frozenset({"doctor"}),
                          permissions=frozenset(), token_id="j1", token="t", claims={})
    for item in ({"id": "rx-2"}, {**GOOD, "medication": None}, "not an object", None):
        resources, rest, outcomes = await export._prescriptions(
            Answering([item]), principal, "p1", None, 10)
        assert (resources, rest) == ([], None), item
        [outcome] = outcomes
        assert outcome["issue"][0]["code"] == "incomplete"
        assert "MedicationRequest" in outcome["issue"][0]["diagnostics"]
