"""Schema compatibility of the contracts: what would break a consumer.

The JSON Schema (pydantic, draft 2020-12) of every contract is kept in the repo
as ``libs/contracts/schemas/<type>.v<version>.json``. A change of a contract
compared with the kept schema of the same version breaks a consumer when it

* removes (or renames) a field, at any depth;
* changes a field's type or constraints (including making it non-nullable or
  nullable, or changing an enum/``Literal``);
* adds a required field, or makes an optional field required.

Adding an optional field or changing titles, descriptions or defaults does not
(consumers validate with unknown fields ignored). A breaking change needs a new
version (``@event_type(..., version=n + 1)``); its schema is then kept beside the
old one.

``python -m healthflow.contracts.compat write`` writes the schema of each
contract whose version has none yet, and refreshes one that changed without
breaking; it refuses (exit 1) a breaking change of a kept version.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from healthflow.contracts import contracts
from healthflow.contracts.base import EventPayload

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
"""``libs/contracts/schemas`` of the source tree (a development tool, not shipped data)."""

_METADATA = frozenset({"title", "description", "default", "examples"})


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = root.get("$defs", {})[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _normal(schema: Any, root: dict[str, Any]) -> Any:
    """``schema`` with references resolved and metadata dropped (for comparison)."""
    if isinstance(schema, list):
        return [_normal(item, root) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = _resolve(schema, root)
    return {k: _normal(v, root) for k, v in schema.items() if k not in _METADATA}


def _diff(old: dict[str, Any], new: dict[str, Any], roots: tuple[dict[str, Any], ...],
          path: str) -> list[str]:
    old, new = _resolve(old, roots[0]), _resolve(new, roots[1])
    if "properties" in old and "properties" in new:
        problems = []
        for name, sub in old["properties"].items():
            if name not in new["properties"]:
                problems.append(f"{path}{name}: removed")
            else:
                problems += _diff(sub, new["properties"][name], roots, f"{path}{name}.")
        added = set(new.get("required", ())) - set(old.get("required", ()))
        problems += [f"{path}{name}: now required" for name in sorted(added)]
        return problems
    if "items" in old and "items" in new:
        return _diff(old["items"], new["items"], roots, f"{path}[].")
    if (isinstance(old.get("anyOf"), list) and isinstance(new.get("anyOf"), list)
            and len(old["anyOf"]) == len(new["anyOf"])):
        return [p for a, b in zip(old["anyOf"], new["anyOf"], strict=True)
                for p in _diff(a, b, roots, path)]
    if _normal(old, roots[0]) != _normal(new, roots[1]):
        return [f"{path.rstrip('.') or '<root>'}: type changed"]
    return []


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why ``new`` breaks a consumer of ``old`` (both JSON Schemas); empty when it does not.

    Each item is ``"<dotted field path>: removed | now required | type changed"``
    (``[]`` marks list items).
    """
    return _diff(old, new, (old, new), "")


def schema_path(model: type[EventPayload]) -> Path:
    return SCHEMAS / f"{model.event_type}.v{model.event_version}.json"


def render(model: type[EventPayload]) -> str:
    return json.dumps(model.model_json_schema(), indent=2, sort_keys=True) + "\n"


def write() -> int:
    """Keep every contract's schema; exit status 1 when a kept version would break."""
    status = 0
    SCHEMAS.mkdir(exist_ok=True)
    for type_, model in contracts().items():
        path = schema_path(model)
        if path.exists():
            problems = breaking_changes(json.loads(path.read_text()), model.model_json_schema())
            if problems:
                print(f"{type_} v{model.event_version}: breaking change, bump the version: "
                      + "; ".join(problems), file=sys.stderr)
                status = 1
                continue
        if not path.exists() or path.read_text() != render(model):
            path.write_text(render(model))
            print(f"wrote {path.name}")
    return status


if __name__ == "__main__":
    sys.exit(write() if sys.argv[1:] == ["write"] else 2)
