"""Every service has the same layers, its ``domain.py`` is pure, and what a service
image installs uses no development tool.

``domain.py`` holds the rules: no HTTP framework and no database driver may be
loaded by importing it, not even indirectly (through a shared module). Each is
imported in a fresh interpreter, which then reports what got loaded.

Service images install a service, the gateway and the libraries they depend on
with ``--no-dev`` (``deploy/Dockerfile``), never ``healthflow-devkit``: none of
their source may import it (nor the provider stand-ins' SMTP server), and none
may declare it as a dependency.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
FORBIDDEN = ("fastapi", "starlette", "pymongo", "bson", "motor", "aio_pika", "httpx", "uvicorn")
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir()
                  if (p / "src" / "healthflow" / p.name / "domain.py").is_file())
PURE = [f"healthflow.{name}.domain" for name in SERVICES] + [
    "healthflow.scheduling", "healthflow.common.problems"]
NOT_YET: dict[str, str] = {}
"""Services that do not have the common layers yet: strict xfail, so that the test says
when one gets them and the entry must go."""
LAYERS = ("app.py", "api.py", "service.py", "store.py", "domain.py", "schemas.py",
          "settings.py", "__main__.py")


def loaded_by(module: str) -> list[str]:
    probe = (f"import importlib, json, sys; importlib.import_module({module!r}); "
             f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, check=True)
    return [m for m in json.loads(result.stdout) if m in FORBIDDEN]


def test_every_service_is_found() -> None:
    assert {"appointment", "auth", "doctor", "hospital", "notification", "patient"} <= set(
        SERVICES)


@pytest.mark.parametrize("module", PURE)
def test_the_domain_loads_no_framework_and_no_database_driver(module: str) -> None:
    assert loaded_by(module) == [], f"importing {module} loads HTTP or database modules"


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=NOT_YET[n], strict=True)) if n in NOT_YET
    else n for n in SERVICES])
def test_every_service_has_the_same_modules(name: str) -> None:
    package = ROOT / "services" / name / "src" / "healthflow" / name
    missing = [m for m in LAYERS if not (package / m).is_file()]
    assert not missing, f"services/{name} lacks {missing}"


IN_IMAGES = sorted([ROOT / "gateway", ROOT / "libs" / "common", ROOT / "libs" / "contracts",
                    ROOT / "libs" / "scheduling", *(ROOT / "services").iterdir()])
"""The packages a service image may install (``libs/devkit`` and ``libs/client`` are not)."""
DEV_ONLY = ("healthflow.devkit", "aiosmtpd")


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, by name (``import a.b``, ``from a.b import c``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", [p for p in IN_IMAGES if (p / "pyproject.toml").is_file()],
                         ids=lambda p: p.name)
def test_what_images_install_uses_no_development_tool(package: Path) -> None:
    offending = sorted(
        f"{path.relative_to(ROOT)}: {name}"
        for path in (package / "src").rglob("*.py")
        for name in imported(path)
        if any(name == dev or name.startswith(f"{dev}.") for dev in DEV_ONLY))
    assert not offending, f"production code imports development tools: {offending}"
    project = tomllib.loads((package / "pyproject.toml").read_text(encoding="utf-8"))
    requires = project["project"].get("dependencies", [])
    assert not [r for r in requires if r.startswith(("healthflow-devkit", "aiosmtpd"))]
