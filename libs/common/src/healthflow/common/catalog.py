"""The event catalog, generated from code: types, payload schemas, publishers, consumers.

``python -m healthflow.common.catalog`` takes every contract of
:mod:`healthflow.contracts` (type, schema version, publisher, JSON Schema) and,
for each service of :data:`healthflow.common.topology.SERVICES` that is
installed, the patterns the consumer of the app its ``create_app`` builds
subscribes to, and prints ``docs/events.md``; with the argument ``asyncapi`` it
prints the AsyncAPI 3.0 document kept as ``healthflow/contracts/asyncapi.json``. Nothing here is
written by hand, so the catalog cannot drift from the code.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from typing import Any

import healthflow.contracts as contracts
from healthflow.common.events import envelope
from healthflow.common.events.transport import topic_matches
from healthflow.common.topology import SERVICES
from healthflow.contracts import asyncapi


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def collect() -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """(type → catalog entry with ``publisher``, service → consumed patterns)."""
    consumers: dict[str, list[str]] = {}
    for name, info in SERVICES.items():
        if _installed(f"{info.module}.app"):
            # What the running service subscribes to: its app's consumer (building
            # the app opens no connection).
            app = importlib.import_module(f"{info.module}.app").create_app()
            consumer = app.state.runtime.consumer
            consumers[name] = list(consumer.patterns) if consumer is not None else []
    published = contracts.contracts()  # registered by a service's contract, not by a test
    entries = {t: e for t, e in envelope.catalog().items() if t in published}
    for type_, entry in entries.items():
        entry["consumers"] = sorted(
            service for service, patterns in consumers.items()
            if any(topic_matches(p, type_) for p in patterns)
        )
    return entries, consumers


def render_markdown() -> str:
    entries, consumers = collect()
    lines = [
        "# Event catalog",
        "",
        "Generated from `libs/contracts` and the services' `handlers.py` by `make docs`; "
        "do not edit.",
        "Every event is a CloudEvents 1.0 envelope on the topic exchange `healthflow.events`;",
        "the routing key is the type.",
        "",
        "| type | v | publisher | consumers | data fields |",
        "|---|---|---|---|---|",
    ]
    for type_, entry in entries.items():
        fields = ", ".join(f"`{f}`" for f in entry["schema"].get("properties", {}))
        lines.append(
            f"| `{type_}` | {entry['version']} | {entry['publisher']} | "
            f"{', '.join(entry['consumers']) or '—'} | {fields} |"
        )
    lines += ["", "## What each service consumes", ""]
    for service, patterns in sorted(consumers.items()):
        if patterns:
            lines.append(f"* **{service}**: " + ", ".join(f"`{p}`" for p in patterns))
    lines += ["", "## Payload schemas", ""]
    for type_, entry in entries.items():
        lines += [f"### `{type_}` (v{entry['version']})", "", "```json",
                  json.dumps(entry["schema"], indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


def render_asyncapi() -> str:
    """The AsyncAPI 3.0 document (:mod:`healthflow.contracts.asyncapi`) with today's consumers."""
    entries, _ = collect()
    return asyncapi.render({type_: entry["consumers"] for type_, entry in entries.items()})


if __name__ == "__main__":
    # `python -m healthflow.common.catalog` → docs/events.md; `… asyncapi` → the AsyncAPI JSON
    print(render_asyncapi() if sys.argv[1:] == ["asyncapi"] else render_markdown(), end="")
