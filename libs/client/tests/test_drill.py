"""The fault drill against a platform of its own (``make drill`` runs it longer).

While patients book through the gateway, RabbitMQ restarts (the machine's
broker: only this test does that), the appointment service's process is
killed, and SecantusDB is stopped for ten seconds. The platform must recover
by itself each time; clients must see only 2xx, 4xx or 503 with Retry-After;
at the end the audit chain verifies, every booking a client saw exists once,
and each has exactly one confirmation email. ``HEALTHFLOW_DRILL_PATIENTS``
(default 24) sets the load.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from healthflow.client.drill import DrillOptions, run_drill, show
from healthflow.devkit.testing import platform_process, rabbitmq_vhost

from .conftest import mailbox_url

PATIENTS = int(os.environ.get("HEALTHFLOW_DRILL_PATIENTS", "24"))
DRILL_ENV = {
    # the drill's patients book without pause for minutes (about ten each in a bounded
    # run); the platform's cap on a patient's upcoming appointments (10 by default, the
    # slot-hoarding rule) would answer their later bookings 409, which the drill counts
    # as failed bookings: this platform of its own allows the most the setting takes
    "APPOINTMENT_MAX_FUTURE_APPOINTMENTS_PER_PATIENT": "1000",
}


@pytest.mark.slow
def test_the_platform_recovers_from_broker_process_and_database_faults(
        tmp_path: Path) -> None:
    with rabbitmq_vhost() as amqp, platform_process(tmp_path, amqp,
                                                    env=DRILL_ENV) as platform:
        options = DrillOptions(platform.gateway_url, mailbox_url(platform),
                               platform.process.pid, platform.admin_email,
                               platform.admin_password, patients=PATIENTS)
        console = Console(width=140)
        report = asyncio.run(run_drill(options, console))
        show(report, console)
        (tmp_path / "drill.json").write_text(json.dumps(report.to_json(), indent=2))
        assert report.ok, json.dumps(report.to_json(), indent=2)[:8000] + \
            "\n--- runner output ---\n" + platform.text()[-3000:]
