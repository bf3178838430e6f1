"""The demo journey against the real platform, then the hygiene checks on what it left.

One platform for the module: the demo runs twice on it (the command line, then
in-process for the hygiene checks, which need the people and tokens it used).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from healthflow.client.demo import run_demo
from healthflow.client.journey import Options, Report
from healthflow.common.topology import SERVICES

from .conftest import Demoable

PATIENTS = 10


@pytest.fixture(scope="module")
def second_run(demoable: Demoable) -> Report:
    """A second, in-process demo run on the same platform (5 patients, no reminder)."""
    import asyncio

    platform = demoable.platform
    options = Options(url=platform.gateway_url, mailbox=demoable.mailbox_url, patients=5,
                      admin_email=platform.admin_email, admin_password=platform.admin_password,
                      wait=120, reminder=False)
    return asyncio.run(run_demo(options, Console(file=open(os.devnull, "w"))))


def test_the_demo_runs_the_whole_journey_and_exits_0(demoable: Demoable, tmp_path: Path) -> None:
    platform = demoable.platform
    out = tmp_path / "summary.json"
    env = os.environ | {"HEALTHFLOW_ADMIN_EMAIL": platform.admin_email,
                        "HEALTHFLOW_ADMIN_PASSWORD": platform.admin_password, "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "healthflow.client.demo", "--url", platform.gateway_url,
         "--mailbox", demoable.mailbox_url, "--patients", str(PATIENTS), "--wait", "420",
         "--json", str(out)], env=env, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "no errors" in result.stdout
    summary = json.loads(out.read_text())
    steps = summary["steps"]
    # Patients 0..9: #4 and #9 reschedule, #6 cancels, #0 gets a reminder; 2 staff bookings.
    assert steps == {"hospitals verified": 1, "departments": 2, "doctors verified": 3,
                     "patients registered": PATIENTS, "searches": PATIENTS,
                     "bookings": PATIENTS, "reminders expected": 1, "reschedules": 2,
                     "cancellations": 1, "bookings by patient care": 2}
    audit = summary["audit_types"]
    for event_type, count in {
            "hospital.registered": 1, "hospital.verified": 1, "department.created": 2,
            "doctor.registered": 3, "doctor.verified": 3,
            "user.registered": PATIENTS + 3 + 2,  # patients, doctors, patient care, compliance
            "patient.registered": PATIENTS, "appointment.booked": PATIENTS + 2,
            "appointment.rescheduled": 2, "appointment.cancelled": 1}.items():
        assert audit.get(event_type) == count, (event_type, audit)
    assert audit.get("notification.sent", 0) >= PATIENTS + 2
    assert summary["mail"] == {"confirmation": PATIENTS + 2, "update": 2, "cancellation": 1,
                               "reminder": 1, "welcome/other": PATIENTS + 5}
    assert summary["sms"] == PATIENTS + 2 + 2 + 1 + 1
    assert summary["chain"]["ok"] is True
    assert summary["patient_trail"].get("appointment.booked", 0) >= 1
    assert not [s for s in summary["statuses"] if s.startswith("5") or not s[0].isdigit()]


def test_a_second_run_on_the_same_platform_works(second_run: Report) -> None:
    assert second_run.ok, second_run.errors
    assert second_run.steps["bookings"] == 5
    assert second_run.audit_types["appointment.booked"] == 5 + 2


def test_no_personal_data_secret_or_token_in_any_log(demoable: Demoable,
                                                      second_run: Report) -> None:
    platform = demoable.platform
    logs = platform.logs()
    assert {"auth", "audit", "appointment", "notification", "gateway"} <= set(logs)
    secrets = {"the admin password": platform.admin_password}
    for person in second_run.people:
        for what, value in (("a name", person.full_name), ("an email", person.email),
                            ("a phone", person.phone), ("a password", person.password)):
            secrets[f"{what} ({value[:3]}…)"] = value
    for number, token in enumerate(second_run.tokens):
        secrets[f"token #{number}"] = token
    assert len(second_run.tokens) >= 2 * (5 + 6)
    leaks = [f"{what} in {name}.log" for name, text in logs.items()
             for what, value in secrets.items() if value in text]
    assert not leaks, leaks


def test_every_service_answers_metrics_and_readyz_on_its_internal_port(
        demoable: Demoable) -> None:
    ports = demoable.platform.ports
    with httpx.Client(timeout=10) as client:
        for name in [*SERVICES, "gateway"]:
            base = f"http://127.0.0.1:{ports[name]}"
            ready = client.get(f"{base}/readyz")
            assert ready.status_code == 200, (name, ready.text)
            metrics = client.get(f"{base}/metrics")
            assert metrics.status_code == 200, name
            assert "# TYPE" in metrics.text, name
