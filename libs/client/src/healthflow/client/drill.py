"""The fault drill: a booking load through the gateway while the platform is hurt.

:func:`run_drill` takes a running platform (its gateway, mailbox, and the pid
of its ``healthflow-run`` process), sets up a hospital and doctors like the
demo, signs patients up, then lets them book — one appointment each, a few
per second — while, one after the other:

1. RabbitMQ restarts (``rabbitmqctl stop_app`` … ``start_app``; the machine's
   broker, so only a drill may do this);
2. one service process is killed (SIGKILL) and the runner restarts it;
3. the MongoDB-protocol server (SecantusDB, the runner's ``secantusd-py``
   child) is stopped (SIGSTOP) for ``mongo_pause`` seconds, then continued;
4. it is killed (SIGKILL), and the runner must start it again on the same data.

After each fault it measures how long until the gateway's ``/readyz`` and a
real request succeed again (no manual step). At the end: the audit chain
verifies; every booking a client saw succeed exists exactly once (by id, in
the patient's own list); every patient has exactly one confirmation email (one
Message-ID: a resend after a crash carries the same one, and is counted apart) per
appointment they hold; and clients saw only 2xx, expected 4xx (409 for a slot
taken meanwhile) or 503 with ``Retry-After`` — never another 5xx, an answer
without ``Retry-After`` or a timeout (every request has one). The one exception is
counted apart: a request in flight at the instant the service process is SIGKILLed
gets a 502 from the gateway, because its outcome is unknown (a 503 would invite a
blind retry of a booking that may have been made).

``python -m healthflow.client.drill --url … --mailbox … --runner-pid …`` runs it
against a platform started by ``healthflow-run``; ``make drill`` runs the test
that starts a platform of its own (``libs/client/tests/test_drill.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from rich.console import Console

from healthflow.client.api import JSON, ApiError, Call, Session
from healthflow.client.journey import BOOKED_SUBJECT, Journey, Options
from healthflow.client.people import Person


@dataclass
class DrillOptions:
    """One drill. Durations are seconds."""

    url: str
    mailbox: str
    runner_pid: int
    admin_email: str
    admin_password: str = field(repr=False)
    patients: int = 30
    service: str = "appointment"  # the service process to kill
    mongo_pause: float = 10.0
    mongo_kill: bool = True  # also SIGKILL SecantusDB (the runner must restart it)
    workers: int = 6  # concurrent booking clients
    settle: float = 8.0  # load before the first fault and between faults
    recover_within: float = 120.0  # each fault's recovery budget
    timeout: float = 20.0  # per request: a slower answer counts as a hang
    wait: float = 240.0  # for emails and audit entries at the end


@dataclass
class FaultResult:
    name: str
    detail: str
    recovered_after: float | None  # seconds from the end of the fault to a good request
    window: str = ""  # UTC HH:MM:SS of the fault's start and end


@dataclass
class DrillReport:
    faults: list[FaultResult] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    bad_answers: list[str] = field(default_factory=list)  # not 2xx/4xx/503+Retry-After
    broken_in_flight: list[str] = field(default_factory=list)  # 502s cut off by the SIGKILL
    repeated_deliveries: int = 0  # SMTP deliveries of a Message-ID already received
    booked: int = 0
    errors: list[str] = field(default_factory=list)
    chain: JSON = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors and not self.bad_answers and all(
            f.recovered_after is not None for f in self.faults)

    def to_json(self) -> JSON:
        return {"ok": self.ok, "faults": [f.__dict__ for f in self.faults],
                "statuses": dict(self.statuses), "bad_answers": self.bad_answers[:50],
                "broken_in_flight": self.broken_in_flight,
                "repeated_deliveries": self.repeated_deliveries,
                "booked": self.booked, "errors": self.errors, "chain": self.chain,
                "seconds": round(self.seconds, 1)}


# --------------------------------------------------------------------------- processes


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append(int(entry.name))
    return found


def cmdline(pid: int) -> list[str]:
    with contextlib.suppress(OSError):
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().decode().split("\0")
    return []


def child_matching(runner_pid: int, predicate: Callable[[list[str]], bool]) -> int | None:
    """The runner's child whose command line satisfies ``predicate``."""
    for pid in children(runner_pid):
        if predicate(cmdline(pid)):
            return pid
    return None


def service_pid(runner_pid: int, service: str) -> int | None:
    """The pid of ``python -m healthflow.<service>`` under the runner."""
    return child_matching(runner_pid, lambda argv: f"healthflow.{service}" in argv)


def mongo_pid(runner_pid: int) -> int | None:
    """The pid of the runner's SecantusDB child (``secantusd-py``)."""
    return child_matching(runner_pid, lambda argv: any("secantusd" in a for a in argv))


def rabbitmqctl(*args: str) -> None:
    """Run ``rabbitmqctl -q ARGS`` (120 s at most).

    Raises:
        RuntimeError: it failed.
    """
    result = subprocess.run(["rabbitmqctl", "-q", *args], capture_output=True, text=True,
                            timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr.strip()}")


def process_state(pid: int) -> str | None:
    """The state letter of ``/proc/<pid>/stat`` (``R``, ``S``, ``Z`` …; proc(5)), or None
    when there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


async def gone(pid: int, polls: int = 2000) -> None:
    """Wait until process ``pid`` has exited (a zombie or reaped: its sockets are closed),
    looking every 5 ms, ``polls`` times at most."""
    for _ in range(polls):
        if process_state(pid) in (None, "Z", "X"):
            return
        await asyncio.sleep(0.005)


# --------------------------------------------------------------------------- the drill


class Drill:
    def __init__(self, options: DrillOptions, console: Console) -> None:
        self.o = options
        self.console = console
        self.report = DrillReport()
        self.seen: list[tuple[Person, Session, str]] = []  # patient, session, appointment id
        self.journey = Journey(Options(url=options.url, mailbox=options.mailbox,
                                       admin_email=options.admin_email,
                                       admin_password=options.admin_password,
                                       timeout=options.timeout, wait=options.wait),
                               console)
        self.journey.gateway.on_call = self._observe
        self.stop_load = asyncio.Event()
        self.attempts = 0
        self.bad_calls: list[Call] = []
        self.killed_at: float | None = None  # epoch seconds of the service SIGKILL
        self.dead_at: float | None = None  # epoch seconds when its sockets were closed

    def _observe(self, call: Call) -> None:
        key = str(call.status) if call.status is not None else f"no answer ({call.error})"
        self.report.statuses[key] += 1
        fine = call.status is not None and (
            call.status < 500 or (call.status == 503 and call.retry_after))
        if not fine:
            self.bad_calls.append(call)

    def judge(self) -> None:
        """Sort the bad answers: a 502 for a request in flight when the service process was
        SIGKILLed is the honest answer (its outcome is unknown) and is only counted;
        anything else fails the drill.

        "In flight" means started before the process was gone (the kernel closes a
        killed process's sockets a few milliseconds after the signal, so a request
        forwarded on a kept-alive connection in between is cut off too) and ended
        within 2 s of the kill.
        """
        gone = self.dead_at if self.dead_at is not None else self.killed_at
        for call in self.bad_calls:
            ended = datetime.fromtimestamp(call.at, UTC)
            line = (f"{ended:%H:%M:%S.%f}"[:12] + f" {call.method} {call.route} → "
                    f"{call.status or call.error} after {call.seconds:.1f} s "
                    f"(Retry-After {call.retry_after})")
            in_flight = (self.killed_at is not None and gone is not None
                         and call.status == 502
                         and call.at - call.seconds <= gone
                         and self.killed_at <= call.at <= self.killed_at + 2.0)
            if in_flight:
                self.report.broken_in_flight.append(line)
            else:
                self.report.bad_answers.append(line)

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{datetime.now(UTC):%H:%M:%S}[/] {text}")

    # ----- load

    async def load(self, patients: list[tuple[Person, Session, str]]) -> None:
        """``workers`` clients book without pause, taking the patients in turn, until
        :attr:`stop_load` is set (a patient may end up holding several appointments)."""
        if not patients:
            return

        async def worker(first: int) -> None:
            turn = first
            while not self.stop_load.is_set():
                await self.book_one(*patients[turn % len(patients)])
                turn += self.o.workers

        await asyncio.gather(*(worker(k) for k in range(self.o.workers)))

    async def book_one(self, person: Person, session: Session, patient_id: str) -> None:
        doctor_id = self.journey.doctors[("cardiology", "dermatology", "general-practice")[
            self.attempts % 3]]
        self.attempts += 1
        earliest = datetime.now(UTC) + timedelta(hours=3)
        deadline = time.monotonic() + self.o.recover_within * 3
        while time.monotonic() < deadline:
            try:
                appointment = await self.journey.book_with_retry(session, doctor_id, earliest,
                                                                 pick=10_000)
            except ApiError as exc:
                if exc.status >= 500:  # judged by _observe; try again in a moment
                    await asyncio.sleep(1.0)
                    continue
                self.report.errors.append(f"a booking failed: {exc}")
                return
            except httpx.TransportError:
                await asyncio.sleep(1.0)
                continue
            self.seen.append((person, session, appointment["id"]))
            self.report.booked += 1
            return
        self.report.errors.append("a patient could not book within the recovery budget")

    # ----- faults

    async def recovered(self, started: float) -> float | None:
        """Seconds from ``started`` until ``/readyz`` and a real read both answer 200."""
        admin = self.admin
        deadline = started + self.o.recover_within
        async with httpx.AsyncClient(base_url=self.o.url, timeout=5) as probe:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError, ApiError):
                    ready = await probe.get("/readyz")
                    if ready.status_code == 200:
                        await admin.call("GET", "/api/v1/appointments", params={"limit": 1})
                        return time.monotonic() - started
                await asyncio.sleep(0.5)
        return None

    async def fault(self, name: str, action: Callable[[], Awaitable[str]]) -> None:
        self.say(f"fault: {name}")
        began = datetime.now(UTC)
        try:
            detail = await action()
        except Exception as exc:
            self.report.errors.append(f"{name}: could not inject: {exc}")
            self.report.faults.append(FaultResult(name, str(exc), None))
            return
        ended = time.monotonic()
        after = await self.recovered(ended)
        self.report.faults.append(FaultResult(
            name, detail, after, f"{began:%H:%M:%S}–{datetime.now(UTC):%H:%M:%S}"))
        self.say(f"  {detail}; recovered after "
                 f"{'NOT RECOVERED' if after is None else f'{after:.1f} s'}")
        await asyncio.sleep(self.o.settle)

    async def restart_rabbitmq(self) -> str:
        started = time.monotonic()
        await asyncio.to_thread(rabbitmqctl, "stop_app")
        await asyncio.sleep(3.0)
        await asyncio.to_thread(rabbitmqctl, "start_app")
        return f"broker down for {time.monotonic() - started:.1f} s"

    async def kill_service(self) -> str:
        pid = service_pid(self.o.runner_pid, self.o.service)
        if pid is None:
            raise RuntimeError(f"no healthflow.{self.o.service} child of pid {self.o.runner_pid}")
        self.killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        await gone(pid)
        self.dead_at = time.time()
        # The runner notices and restarts it after its back-off (1 s at first).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            new = service_pid(self.o.runner_pid, self.o.service)
            if new is not None and new != pid:
                return f"{self.o.service} pid {pid} killed; restarted as pid {new}"
            await asyncio.sleep(0.2)
        raise RuntimeError(f"the runner did not restart {self.o.service} within 30 s")

    async def pause_mongo(self) -> str:
        pid = mongo_pid(self.o.runner_pid)
        if pid is None:
            raise RuntimeError(f"no secantusd-py child of pid {self.o.runner_pid}")
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(self.o.mongo_pause)
        finally:
            os.kill(pid, signal.SIGCONT)
        return f"secantusd-py pid {pid} stopped for {self.o.mongo_pause:.0f} s"

    async def kill_mongo(self) -> str:
        pid = mongo_pid(self.o.runner_pid)
        if pid is None:
            raise RuntimeError(f"no secantusd-py child of pid {self.o.runner_pid}")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the runner's watchdog starts a new one
            new = mongo_pid(self.o.runner_pid)
            if new is not None and new != pid:
                return f"secantusd-py pid {pid} killed; restarted as pid {new}"
            await asyncio.sleep(0.2)
        raise RuntimeError("the runner did not restart secantusd-py within 60 s")

    # ----- checks

    async def check_bookings(self) -> None:
        """Every seen booking exists exactly once; one confirmation email per appointment."""
        wanted: dict[str, int] = {}
        for person, session, appointment_id in self.seen:
            mine = [a async for a in session.appointments()]
            ids = Counter(a["id"] for a in mine)
            if ids[appointment_id] != 1:
                self.report.errors.append(
                    f"booking {appointment_id} is listed {ids[appointment_id]} times")
            wanted[person.email] = len(mine)
        deadline = time.monotonic() + self.o.wait
        mailbox = self.journey.mailbox

        async def confirmations() -> tuple[Counter[str], int]:
            """Distinct confirmations (by Message-ID, RFC 5322 §3.6.4) per patient, and
            how many deliveries repeated a Message-ID already received."""
            seen: set[tuple[str, str]] = set()
            repeats = 0
            for mail in await mailbox.mail():
                if mail["subject"] != BOOKED_SUBJECT:
                    continue
                for to in mail["to"]:
                    if to in wanted:
                        key = (to, mail["message_id"])
                        repeats += key in seen
                        seen.add(key)
            return Counter(to for to, _ in seen), repeats

        while True:
            got, _ = await confirmations()
            if all(got[e] >= n for e, n in wanted.items()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(3.0)  # a second, different message would arrive right after
        got, self.report.repeated_deliveries = await confirmations()
        for email, n in wanted.items():
            if got[email] != n:
                self.report.errors.append(
                    f"a patient holds {n} appointment(s) and got {got[email]} confirmation(s)")

    async def check_audit(self, officer: Session) -> None:
        chain = await officer.audit_verify()
        self.report.chain = {k: chain.get(k) for k in ("ok", "checked", "head_seq", "reason")}
        if not chain.get("ok"):
            self.report.errors.append(f"the audit chain does not verify: {chain}")

    # ----- the run

    async def run(self) -> DrillReport:
        started = time.monotonic()
        try:
            await self._run()
        finally:
            self.report.seconds = time.monotonic() - started
            await self.journey.gateway.aclose()
            await self.journey.mailbox.aclose()
        return self.report

    async def _run(self) -> None:
        self.say("setting up a hospital, three doctors and the staff")
        self.admin, _, officer = await self.journey.directory()
        self.say(f"signing up {self.o.patients} patients")
        made = await asyncio.gather(*(self.journey.patient(i) for i in range(self.o.patients)))
        patients = [m for m in made if m is not None]
        self.report.errors += self.journey.report.errors
        self.say("booking load starts")
        load = asyncio.create_task(self.load(patients))
        await asyncio.sleep(self.o.settle)
        await self.fault("RabbitMQ restart", self.restart_rabbitmq)
        await self.fault(f"{self.o.service} process killed", self.kill_service)
        await self.fault(f"MongoDB-protocol server stopped {self.o.mongo_pause:.0f} s",
                         self.pause_mongo)
        if self.o.mongo_kill:
            await self.fault("MongoDB-protocol server killed", self.kill_mongo)
        self.stop_load.set()
        await load
        self.judge()
        self.say(f"{self.report.booked} bookings seen; checking bookings, messages, audit")
        await self.check_bookings()
        await self.check_audit(officer)


async def run_drill(options: DrillOptions, console: Console | None = None) -> DrillReport:
    return await Drill(options, console or Console()).run()


def show(report: DrillReport, console: Console) -> None:
    console.rule(f"fault drill · {report.seconds:.0f} s")
    for f in report.faults:
        after = "NOT RECOVERED" if f.recovered_after is None else f"{f.recovered_after:.1f} s"
        console.print(f"  {f.window} {f.name}: {f.detail}; recovered after {after}")
    console.print(f"  bookings seen: {report.booked}; HTTP answers: "
                  + ", ".join(f"{k}×{v}" for k, v in sorted(report.statuses.items())))
    console.print(f"  audit chain: {report.chain}")
    console.print(f"  confirmation emails delivered again with the same Message-ID: "
                  f"{report.repeated_deliveries}")
    for cut in report.broken_in_flight:
        console.print(f"  [yellow]in flight at the SIGKILL (outcome unknown): {cut}")
    for bad in report.bad_answers[:20]:
        console.print(f"  [red]bad answer: {bad}")
    for error in report.errors:
        console.print(f"  [red]error: {error}")
    console.print("[green bold]drill passed" if report.ok else "[red bold]drill FAILED")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m healthflow.client.drill",
                                     description="Fault drill against a running platform.")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--mailbox", default="http://127.0.0.1:8027")
    parser.add_argument("--runner-pid", type=int, required=True,
                        help="pid of the healthflow-run process")
    parser.add_argument("--patients", type=int, default=30)
    parser.add_argument("--service", default="appointment")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    options = DrillOptions(args.url, args.mailbox, args.runner_pid,
                           os.environ.get("HEALTHFLOW_ADMIN_EMAIL", ""),
                           os.environ.get("HEALTHFLOW_ADMIN_PASSWORD", ""),
                           patients=args.patients, service=args.service)
    console = Console()
    report = asyncio.run(run_drill(options, console))
    show(report, console)
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
