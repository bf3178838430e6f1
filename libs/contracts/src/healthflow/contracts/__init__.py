"""HealthFlow's event contracts (``healthflow.contracts``).

One module per publishing service (:data:`MODULES`), each holding a versioned
pydantic model per event type it publishes, registered with
:func:`~healthflow.contracts.base.event_type`. Publishers build events from
these models; the common consumer validates each delivery's ``data`` into the
model of its type before a handler sees it.
"""

from __future__ import annotations

import importlib
import pkgutil

from healthflow.contracts.base import (
    EventPayload,
    catalog,
    event_type,
    payload_model,
    registered,
    schema_uri,
)

_NOT_CONTRACTS = frozenset({"base", "compat", "asyncapi", "sealed"})
MODULES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)
                       if m.name not in _NOT_CONTRACTS and not m.name.startswith("_")))
"""The publishing services, each with a module of the same name here (audit publishes
nothing); found in the package, so a new service's contracts need no edit here."""

__all__ = [
    "MODULES",
    "EventPayload",
    "catalog",
    "contract_for",
    "contracts",
    "event_type",
    "load_all",
    "payload_model",
    "registered",
    "schema_uri",
]


def load_all() -> None:
    """Import every contract module, registering all the platform's event types."""
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}")


def contract_for(type_: str) -> type[EventPayload] | None:
    """The contract of the CloudEvents ``type_`` (``None`` when there is none)."""
    model = payload_model(type_)
    if model is None:
        load_all()
        model = payload_model(type_)
    return model


def contracts() -> dict[str, type[EventPayload]]:
    """The platform's contracts only (types published by a service), sorted by type."""
    load_all()
    return {
        name: cls for name, cls in registered().items()
        if cls.__module__.startswith(f"{__name__}.") and cls.event_publisher is not None
    }
