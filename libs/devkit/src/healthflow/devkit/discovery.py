"""Which components run: services of the topology whose package is installed with
``app.create_app`` and ``__main__``, the gateway, and their ports."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from healthflow.common.topology import GATEWAY_PORT, SERVICES
from healthflow.devkit.embedded import free_port

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Component:
    """One process part of the platform: a service (replica) or the gateway, on ``HOST:port``.

    ``name`` is what the console and the log file show (``appointment-2`` for a
    second replica); ``service`` is the package it runs (``appointment``).
    """

    name: str
    port: int
    service: str = ""

    @property
    def package(self) -> str:
        return self.service or self.name

    @property
    def module(self) -> str:
        return f"healthflow.{self.package}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def is_gateway(self) -> bool:
        return self.name == "gateway"


def _find_spec(name: str) -> Any:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def app_factory(name: str) -> Callable[..., Any]:
    """``healthflow.<name>.app.create_app`` (or ``healthflow.<name>.create_app``).

    Raises:
        LookupError: the package is not installed or has no ``create_app`` yet.
    """
    module = f"healthflow.{name}"
    if _find_spec(module) is None:
        raise LookupError("not installed")
    for candidate in (f"{module}.app", module):
        if candidate != module and _find_spec(candidate) is None:
            continue
        try:
            loaded = importlib.import_module(candidate)
        except Exception as exc:
            raise LookupError(f"{candidate} does not import: {type(exc).__name__}: {exc}") from exc
        factory = getattr(loaded, "create_app", None)
        if callable(factory):
            found: Callable[..., Any] = factory
            return found
    raise LookupError("not built yet (no app.create_app)")


def discover(only: Sequence[str] | None, *, gateway: bool, ports: Mapping[str, int],
             replicas: Mapping[str, int] | None = None,
             ) -> tuple[list[Component], list[tuple[str, str]]]:
    """The components to run and the ``(name, reason)`` of those skipped.

    ``replicas`` asks for more than one process of a service (``{"appointment": 2}``);
    the extra ones listen on free ports and share the service's database and queue.

    Raises:
        SystemExit: ``only`` names a service that :data:`SERVICES` does not know.
    """
    wanted = list(SERVICES) if not only else list(only)
    unknown = [n for n in wanted if n not in SERVICES and n != "gateway"]
    if unknown:
        raise SystemExit(f"unknown service(s) in --only: {', '.join(unknown)} "
                         f"(known: {', '.join(SERVICES)})")
    names = [n for n in SERVICES if n in wanted]
    if gateway:
        names.append("gateway")
    chosen: list[Component] = []
    skipped: list[tuple[str, str]] = []
    for name in names:
        try:
            app_factory(name)
        except LookupError as exc:
            skipped.append((name, str(exc)))
            continue
        if _find_spec(f"healthflow.{name}.__main__") is None:
            skipped.append((name, "not built yet (no __main__)"))
            continue
        chosen.append(Component(name, ports[name], name))
        for number in range(2, (replicas or {}).get(name, 1) + 1):
            chosen.append(Component(f"{name}-{number}", free_port(), name))
    return chosen, skipped


def resolve_ports(overrides: Mapping[str, int], env: Mapping[str, str]) -> dict[str, int]:
    """Port of every component: ``--port NAME=PORT``, then ``<NAME>_PORT``, then the topology."""
    defaults = {name: info.port for name, info in SERVICES.items()} | {"gateway": GATEWAY_PORT}
    ports: dict[str, int] = {}
    for name, default in defaults.items():
        value: int | str = overrides.get(name) or env.get(f"{name.upper()}_PORT") or default
        try:
            ports[name] = int(value)
        except ValueError:
            raise SystemExit(f"{name.upper()}_PORT must be a port number, not {value!r}") from None
    return ports
