"""The generated docs match the code they are generated from (run `make docs` when not)."""

from pathlib import Path

from healthflow.common import catalog, permissions
from healthflow.common.events.transport import topic_matches
from healthflow.contracts import asyncapi

DOCS = Path(__file__).resolve().parents[4] / "docs"


def test_permissions_doc_is_current():
    assert (DOCS / "permissions.md").read_text() == permissions.render_markdown(), (
        "docs/permissions.md is stale: run `make docs`"
    )


def test_event_catalog_is_current():
    assert (DOCS / "events.md").read_text() == catalog.render_markdown(), (
        "docs/events.md is stale: run `make docs`"
    )


def test_asyncapi_document_is_current():
    kept = Path(asyncapi.__file__).with_name("asyncapi.json").read_text()
    assert kept == catalog.render_asyncapi(), (
        "healthflow/contracts/asyncapi.json is stale: run `make docs`"
    )


def test_every_consumed_pattern_matches_a_published_type():
    """A handler bound to a type nobody publishes is a typo or a dead handler."""
    entries, consumers = catalog.collect()
    assert entries, "no event types registered"
    dangling = [
        f"{service}: {pattern}"
        for service, patterns in consumers.items()
        for pattern in patterns
        if not any(topic_matches(pattern, t) for t in entries)
    ]
    assert not dangling, f"handlers for types no service publishes: {dangling}"


def test_every_permission_declares_its_scope_and_names_agree():
    """docs/permissions.md's scope column comes from ``SCOPES``: every permission has
    one, and the naming convention agrees (``*_own`` own, ``*_treated`` care relationship,
    ``*_hospital`` hospital; ``*_any`` hospital where the service checks memberships, issue
    16, else still platform)."""
    scopes = permissions.SCOPES
    assert set(scopes) == set(permissions.Permission)
    by_suffix = {"_own": {(permissions.Scope.OWN,)},
                 "_any": {(permissions.Scope.PLATFORM,), (permissions.Scope.HOSPITAL,)},
                 "_treated": {(permissions.Scope.CARE_RELATIONSHIP,)},
                 "_hospital": {(permissions.Scope.HOSPITAL,)}}
    for permission, declared in scopes.items():
        assert declared, permission
        for suffix, allowed in by_suffix.items():
            if permission.value.endswith(suffix):
                assert declared in allowed, (permission, declared)
    assert "| `appointments:read_any` | hospital |" in permissions.render_markdown()
    assert "| `records:read_treated` | care relationship |" in permissions.render_markdown()
