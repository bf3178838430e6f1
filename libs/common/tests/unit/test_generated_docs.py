"""The generated docs match the code they are generated from (run `make docs` when not)."""

from pathlib import Path

from healthflow.common import catalog, permissions

DOCS = Path(__file__).resolve().parents[4] / "docs"


def test_permissions_doc_is_current():
    assert (DOCS / "permissions.md").read_text() == permissions.render_markdown(), (
        "docs/permissions.md is stale: run `make docs`"
    )


def test_event_catalog_is_current():
    assert (DOCS / "events.md").read_text() == catalog.render_markdown(), (
        "docs/events.md is stale: run `make docs`"
    )


def test_every_published_type_names_its_publisher():
    entries, _ = catalog.collect()
    assert entries, "no event types registered"
    unknown = [t for t, e in entries.items() if e["publisher"] == "?"]
    assert not unknown, f"types registered outside any service's events.py: {unknown}"
