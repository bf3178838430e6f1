"""The patient journey end to end, through the gateway, as separate clients would drive it.

``python -m healthflow.client.demo [--url http://127.0.0.1:8000] [--patients 50]``
(``make demo``) against a running platform (``make run``):

1. the first admin logs in (``HEALTHFLOW_ADMIN_EMAIL``/``HEALTHFLOW_ADMIN_PASSWORD``);
   a hospital registers with two departments and is verified; three doctors
   (accounts the admin creates) register, are verified and publish weekly hours
   for the next two weeks in the hospital's time zone;
2. patients register (Faker names, E.164 phones, emails, allergies, conditions),
   search doctors by specialty and book; some reschedule, some cancel; a
   patient-care agent books for two patients with special requests; one
   booking is close enough for the one-hour reminder to fire during the run;
3. the confirmation, update and reminder messages are read from the local
   mailbox and SMS log (``--mailbox``, printed by ``make run``);
4. a compliance officer reads one patient's audit trail and verifies the chain.

It prints a summary — the audit log's count of each event type this run
caused, messages delivered, every error — and exits 1 when anything failed.
Every run uses new accounts (a per-run tag in each email) and no fixed id, so
it can run again on the same platform. ``--json FILE`` also writes the summary.

The edge's default budgets allow 5 sign-ups and 10 log-ins per minute from one
address: the demo waits out each 429 as its ``Retry-After`` says. The default of
ten patients takes three to seven minutes on a default ``make run`` (the reminder it
waits for falls due within about six minutes of the first booking, while the
others sign up); the expected duration of a run (:func:`estimate`) is printed
before it starts, so a larger ``--patients`` is chosen knowingly (50 take about
eleven minutes).

The first admin comes from ``HEALTHFLOW_ADMIN_EMAIL``/``HEALTHFLOW_ADMIN_PASSWORD``
(environment or ``.env``), else from ``<var>/first-admin.env``, which a local
``make run`` writes when it generates the admin (``HEALTHFLOW_VAR_DIR``, default
``./var``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from healthflow.client import checks
from healthflow.client.api import Session
from healthflow.client.journey import Journey, Options, Report
from healthflow.client.people import Person


async def run_demo(options: Options, console: Console | None = None) -> Report:
    """Drive one journey and return its report (never raises for a failed step)."""
    console = console or Console()
    journey = Journey(options, console)
    started = time.monotonic()
    journey.report.started = datetime.now(UTC).isoformat(timespec="seconds")
    journey.report.site = f"{journey.site.city} ({journey.site.zone})"
    try:
        with journey.progress:
            await _phases(journey)
    finally:
        journey.report.seconds = time.monotonic() - started
        await journey.gateway.aclose()
        await journey.mailbox.aclose()
    return journey.report


async def _phases(journey: Journey) -> None:
    """The four phases of the module doc in order, each with its progress bar; a failed
    set-up (phase 1) ends the run, any other failure is recorded and the run goes on."""
    p = journey.progress
    setup = p.add_task("hospital, doctors, staff", total=1)
    roles = await journey.step("hospital, doctors and staff", journey.directory)
    p.update(setup, completed=1)
    if roles is None:
        return
    _, agent, officer = roles
    signup = p.add_task("patients sign up", total=journey.o.patients)
    booking = p.add_task("patients book", total=journey.o.patients + 2)

    async def one(index: int) -> tuple[Person, Session, str] | None:
        result = await journey.patient(index)
        p.advance(signup)
        if result is not None:
            await journey.journey(index, *result)
        p.advance(booking)
        return result

    # Patient 0 books first: the reminder it is owed falls due while the others sign up.
    first = await one(0)
    rest = await asyncio.gather(*(one(i) for i in range(1, journey.o.patients)))
    patients = [r for r in (first, *rest) if r is not None]
    for number, patient in enumerate(patients[1:3]):
        await journey.on_behalf(agent, patient, number)
        p.advance(booking)
    mail = p.add_task("messages arrive", total=None)
    await journey.step("messages", lambda: checks.messages(journey, mail))
    audit = p.add_task("audit log settles", total=None)
    await checks.compliance(journey, officer, audit)


def summary(report: Report, console: Console) -> None:
    """The readable summary: journey counts, audit event counts, messages, errors."""
    console.print()
    console.rule(f"HealthFlow demo · run {report.tag} · {report.site} · {report.seconds:.0f} s")
    table = Table(title="journey", show_header=False)
    for name, value in report.steps.items():
        table.add_row(name, str(value))
    console.print(table)
    audit = Table(title="audit log: events of this run by type")
    audit.add_column("event type")
    audit.add_column("count", justify="right")
    for name, value in sorted(report.audit_types.items()):
        audit.add_row(name, str(value))
    audit.add_row("[bold]total", f"[bold]{sum(report.audit_types.values())}")
    console.print(audit)
    messages = Table(title="messages delivered (local mailbox and SMS log)", show_header=False)
    for name, value in sorted(report.mail.items()):
        messages.add_row(f"email · {name}", str(value))
    messages.add_row("SMS", str(report.sms))
    console.print(messages)
    trail = ", ".join(f"{k} {v}" for k, v in sorted(report.patient_trail.items()))
    console.print(f"one patient's audit trail: {trail or '—'}")
    chain = report.chain
    console.print(f"audit chain: {'[green]verified' if chain.get('ok') else '[red]NOT verified'}"
                  f"[/] ({chain.get('checked')} entries checked)")
    statuses = ", ".join(f"{k}×{v}" for k, v in sorted(report.statuses.items()))
    console.print(f"HTTP answers seen: {statuses}")
    if report.errors:
        console.print(f"[red bold]{len(report.errors)} error(s):")
        for error in report.errors:
            console.print(f"  [red]• {error}")
    else:
        console.print("[green bold]no errors")


SIGNUPS_PER_MINUTE = 5  # the gateway's default "register" budget per address
LOGINS_PER_MINUTE = 10  # the gateway's default "token" budget per address
STAFF_LOGINS = 6  # the admin, three doctors, the patient-care agent, the compliance officer
SETUP_SECONDS = 60.0  # hospital, doctors and their read models; messages; the audit log


REMINDER_WAIT = 6 * 60.0
"""At most this long after the first booking the one-hour reminder is due (the
5-minute slot grid, plus the 45 s the booking keeps ahead of the offset)."""


def estimate(patients: int, *, reminder: bool = True) -> float:
    """Expected seconds of a run with ``patients`` on a default ``make run``.

    Sign-ups and log-ins beyond the first minute's budget wait for the budget to
    refill (the gateway's moving windows); the reminder, booked first, falls due
    while they do (at most :data:`REMINDER_WAIT`); the rest is set-up and settling.
    """
    signups = max(0, patients - SIGNUPS_PER_MINUTE) / SIGNUPS_PER_MINUTE
    logins = max(0, patients + STAFF_LOGINS - LOGINS_PER_MINUTE) / LOGINS_PER_MINUTE
    journeys = 60.0 * max(signups, logins)
    return SETUP_SECONDS + max(journeys, REMINDER_WAIT if reminder else 0.0)


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m healthflow.client.demo",
                                     description="The HealthFlow patient journey, end to end.")
    parser.add_argument("--url", default=os.environ.get("HEALTHFLOW_URL", Options.url),
                        help="the gateway (default %(default)s)")
    parser.add_argument("--mailbox", default=os.environ.get("HEALTHFLOW_MAILBOX_URL",
                                                            running_mailbox()),
                        help="the local mailbox view `make run` prints (default %(default)s, "
                             "from <var>/mailbox/url)")
    parser.add_argument("--patients", type=int, default=Options.patients,
                        help="patients who sign up and book (default %(default)s; the edge "
                             f"allows {SIGNUPS_PER_MINUTE} sign-ups a minute, so each five "
                             "more add about a minute)")
    parser.add_argument("--concurrency", type=int, default=Options.concurrency)
    parser.add_argument("--wait", type=float, default=Options.wait,
                        help="seconds to wait for messages and audit entries")
    parser.add_argument("--no-reminder", dest="reminder", action="store_false",
                        help="skip the booking whose 1-hour reminder fires during the run")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", dest="json_path", type=Path, default=None,
                        help="also write the summary as JSON to this file")
    args = parser.parse_args(argv)
    return Options(url=args.url, mailbox=args.mailbox, patients=max(3, args.patients),
                   concurrency=args.concurrency, wait=args.wait, reminder=args.reminder,
                   seed=args.seed, json_path=args.json_path,
                   admin_email=os.environ.get("HEALTHFLOW_ADMIN_EMAIL", ""),
                   admin_password=os.environ.get("HEALTHFLOW_ADMIN_PASSWORD", ""))


def load_dotenv_defaults(path: Path = Path(".env")) -> None:
    """``KEY=VALUE`` lines of ``.env`` into ``os.environ`` where not set (as ``make run`` does)."""
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            os.environ.setdefault(key.strip().removeprefix("export "),
                                  value.strip().strip("'\""))


def running_mailbox() -> str:
    """The mailbox view of the local ``make run`` (it writes ``<var>/mailbox/url``; 8027
    unless that port was taken), else :attr:`Options.mailbox`."""
    path = Path(os.environ.get("HEALTHFLOW_VAR_DIR", "var")) / "mailbox" / "url"
    with contextlib.suppress(OSError):
        if url := path.read_text().strip():
            return url
    return Options.mailbox


def load_admin_credentials() -> Path | None:
    """Where the first admin comes from when the environment names none: the file a local
    ``make run`` generated (``<var>/first-admin.env``); ``None`` when there is none."""
    if os.environ.get("HEALTHFLOW_ADMIN_EMAIL") or os.environ.get("HEALTHFLOW_ADMIN_PASSWORD"):
        return None
    path = Path(os.environ.get("HEALTHFLOW_VAR_DIR", "var")) / "first-admin.env"
    load_dotenv_defaults(path)
    return path if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit code 0 when every step succeeded, 1 otherwise, 2 for bad usage."""
    load_dotenv_defaults()
    generated = load_admin_credentials()
    options = parse_args(argv)
    console = Console()
    if bool(options.admin_email) != bool(options.admin_password):
        missing = ("HEALTHFLOW_ADMIN_PASSWORD" if options.admin_email
                   else "HEALTHFLOW_ADMIN_EMAIL")
        console.print(f"[red]{missing} is not set: set both HEALTHFLOW_ADMIN_EMAIL and "
                      "HEALTHFLOW_ADMIN_PASSWORD, or neither to use var/first-admin.env")
        return 2
    if not (options.admin_email and options.admin_password):
        console.print("[red]no first admin: start the platform with `make run` (it generates "
                      "one in var/first-admin.env) or set HEALTHFLOW_ADMIN_EMAIL and "
                      "HEALTHFLOW_ADMIN_PASSWORD")
        return 2
    minutes = estimate(options.patients, reminder=options.reminder) / 60
    console.print(f"{options.patients} patients, first admin {options.admin_email}"
                  + (f" (from {generated})" if generated else "")
                  + f": about {minutes:.0f} minute{'s' if round(minutes) != 1 else ''} "
                  f"(the edge allows {SIGNUPS_PER_MINUTE} sign-ups and {LOGINS_PER_MINUTE} "
                  "log-ins a minute per address; --patients N to change)")
    report = asyncio.run(run_demo(options, console))
    summary(report, console)
    if options.json_path is not None:
        options.json_path.write_text(json.dumps(report.to_json(), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
