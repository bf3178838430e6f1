"""Every service has the same layers, and its ``domain.py`` is pure.

``domain.py`` holds the rules: no HTTP framework and no database driver may be
loaded by importing it, not even indirectly (through a shared module). Each is
imported in a fresh interpreter, which then reports what got loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
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
