"""What the demo does before it starts: find the first admin, say how long it takes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from healthflow.client import demo
from healthflow.client.journey import Options


@pytest.fixture
def no_admin_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("HEALTHFLOW_ADMIN_EMAIL", "HEALTHFLOW_ADMIN_PASSWORD"):
        monkeypatch.setenv(name, "")  # so that undoing restores what was there, or nothing
        monkeypatch.delenv(name)
    monkeypatch.setenv("HEALTHFLOW_VAR_DIR", str(tmp_path))
    return tmp_path


def test_the_admin_generated_by_make_run_is_found(no_admin_env: Path) -> None:
    kept = no_admin_env / "first-admin.env"
    kept.write_text("# generated\nHEALTHFLOW_ADMIN_EMAIL=admin@healthflow.example\n"
                    "HEALTHFLOW_ADMIN_PASSWORD=s3cret-generated-phrase\n")
    assert demo.load_admin_credentials() == kept
    options = demo.parse_args([])
    assert options.admin_email == "admin@healthflow.example"
    assert options.admin_password == "s3cret-generated-phrase"


def test_an_admin_from_the_environment_wins_over_the_file(
        no_admin_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (no_admin_env / "first-admin.env").write_text(
        "HEALTHFLOW_ADMIN_EMAIL=admin@healthflow.example\nHEALTHFLOW_ADMIN_PASSWORD=file\n")
    monkeypatch.setenv("HEALTHFLOW_ADMIN_EMAIL", "boss@example.org")
    monkeypatch.setenv("HEALTHFLOW_ADMIN_PASSWORD", "from-the-environment")
    assert demo.load_admin_credentials() is None
    assert os.environ["HEALTHFLOW_ADMIN_PASSWORD"] == "from-the-environment"


def test_without_any_admin_the_demo_says_how_to_get_one(
        no_admin_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--url", "http://127.0.0.1:9"]) == 2
    assert "make run" in capsys.readouterr().out


def test_the_default_run_takes_minutes_and_fifty_patients_about_eleven() -> None:
    assert Options().patients == 10
    assert 6 * 60 <= demo.estimate(10) <= 8 * 60  # the reminder's wait sets the pace
    assert demo.estimate(10, reminder=False) <= 3 * 60
    assert 10 * 60 <= demo.estimate(50) <= 12 * 60


def test_only_one_admin_variable_is_named_as_missing(
        no_admin_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HEALTHFLOW_ADMIN_EMAIL", "boss@example.org")
    assert demo.main(["--url", "http://127.0.0.1:9"]) == 2
    assert "HEALTHFLOW_ADMIN_PASSWORD is not set" in capsys.readouterr().out
