"""The platform runner's KEK: generated once under the var directory (0600) and kept, as
the local database is, so the keys it wrapped still open on the next run."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from healthflow.common.keywrap import parse_keks
from healthflow.devkit.supervisor import local_kek_file, platform_env


def test_the_local_kek_is_generated_once_and_private(tmp_path: Path) -> None:
    path = local_kek_file(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keks, current = parse_keks(text, "KEY_ENCRYPTION_KEYS_FILE")
    assert current.startswith("local-") and len(keks[current]) == 32
    assert local_kek_file(tmp_path).read_text(encoding="utf-8") == text


def test_local_runs_get_an_internal_service_key_of_their_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``make run`` gives every service and the gateway one random ``INTERNAL_SERVICE_KEY``
    (kept with the var directory), not the built-in development key."""
    from healthflow.common.settings import DEVELOPMENT_INTERNAL_KEY
    from healthflow.devkit.config import parse_args

    monkeypatch.delenv("INTERNAL_SERVICE_KEY", raising=False)
    monkeypatch.delenv("INTERNAL_SERVICE_KEY_FILE", raising=False)
    config = parse_args(["--var-dir", str(tmp_path)], {})
    env = platform_env(config, "mongodb://127.0.0.1:1/", "rabbitmq", [])
    path = Path(env["INTERNAL_SERVICE_KEY_FILE"])
    key = path.read_text(encoding="utf-8").strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(key) >= 40 and key != DEVELOPMENT_INTERNAL_KEY
    assert platform_env(config, "mongodb://127.0.0.1:1/", "rabbitmq", [])[
        "INTERNAL_SERVICE_KEY_FILE"] == str(path) and path.read_text().strip() == key
