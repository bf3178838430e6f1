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
import functools
import json
import os
import secrets
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from healthflow.client.api import JSON, ApiError, Gateway, Mailbox, Session
from healthflow.client.people import People, Person, Site, pick_site

T = TypeVar("T")

SPECIALTIES = ("cardiology", "dermatology", "general-practice")
BOOKED_SUBJECT = "Your appointment is booked"
MOVED_SUBJECT = "Your appointment has moved"
CANCELLED_SUBJECT = "Your appointment is cancelled"
REMINDER_SUBJECT = "Reminder: your appointment"
SUBJECT_KINDS = {BOOKED_SUBJECT: "confirmation", MOVED_SUBJECT: "update",
                 CANCELLED_SUBJECT: "cancellation", REMINDER_SUBJECT: "reminder"}


@dataclass
class Options:
    """One demo run. Durations are seconds."""

    url: str = "http://127.0.0.1:8000"
    mailbox: str = "http://127.0.0.1:8027"
    patients: int = 10  # the edge's sign-up and log-in budgets set the pace (see estimate())
    concurrency: int = 8
    admin_email: str = ""
    admin_password: str = field(default="", repr=False)
    wait: float = 240.0  # for messages and audit entries to arrive
    reminder: bool = True  # book one appointment whose 1-hour reminder fires during the run
    reminder_offset: int = 60  # minutes: the platform's shortest reminder offset
    seed: int | None = None
    json_path: Path | None = None
    timeout: float = 30.0  # per request
    max_wait: float = 900.0  # one call may wait out 429/503 answers this long (edge budgets)


@dataclass
class Booking:
    """One appointment the demo made and what the patient should hear about it."""

    patient: Person
    patient_id: str
    appointment_id: str
    doctor_id: str
    start: str
    expected: list[str] = field(default_factory=list)  # email subjects, in order
    by_staff: bool = False


@dataclass
class Report:
    """What the run did and saw (the summary)."""

    tag: str
    site: str = ""
    started: str = ""
    steps: Counter[str] = field(default_factory=Counter)
    audit_types: Counter[str] = field(default_factory=Counter)
    mail: Counter[str] = field(default_factory=Counter)
    sms: int = 0
    patient_trail: Counter[str] = field(default_factory=Counter)
    chain: JSON = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # What the hygiene checks need: who was created and which tokens were used.
    people: list[Person] = field(default_factory=list, repr=False)
    tokens: list[str] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> JSON:
        return {"ok": self.ok, "tag": self.tag, "site": self.site, "started": self.started,
                "seconds": round(self.seconds, 1), "steps": dict(self.steps),
                "audit_types": dict(self.audit_types), "mail": dict(self.mail),
                "sms": self.sms, "patient_trail": dict(self.patient_trail),
                "chain": self.chain, "statuses": dict(self.statuses), "errors": self.errors}


class Journey:
    """The demo's state and steps (one instance per run)."""

    def __init__(self, options: Options, console: Console) -> None:
        self.o = options
        self.console = console
        self.tag = secrets.token_hex(3)
        self.report = Report(self.tag)
        self.gateway = Gateway(options.url, timeout=options.timeout, on_call=self._count,
                               max_wait=options.max_wait)
        self.mailbox = Mailbox(options.mailbox)
        self.site: Site = pick_site()
        self.reminder_due: datetime | None = None  # aware UTC, when the reminder falls due
        self.people = People(self.site, self.tag, options.seed)
        self.bookings: list[Booking] = []
        self.doctors: dict[str, str] = {}  # specialty → doctor id
        self.hospital_id = ""
        self.sem = asyncio.Semaphore(options.concurrency)
        self.progress = Progress(TextColumn("{task.description:<28}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=console, transient=False)

    def _count(self, call: Any) -> None:
        self.report.statuses[str(call.status or call.error)] += 1

    def session(self, session: Session) -> Session:
        self.report.tokens += [session.access_token, session.refresh_token]
        return session

    async def step(self, what: str, action: Callable[[], Awaitable[T]]) -> T | None:
        """Run ``action``; on failure record ``what`` and the error, return None."""
        try:
            return await action()
        except (ApiError, httpx.HTTPError, AssertionError, KeyError, TimeoutError) as exc:
            self.report.errors.append(f"{what}: {type(exc).__name__}: {exc}")
            return None

    async def until(self, what: str, check: Callable[[], Awaitable[T | None]],
                    within: float, interval: float = 0.5) -> T:
        """Poll ``check`` until it returns something truthy (``within`` seconds).

        Raises:
            TimeoutError: naming ``what``.
        """
        deadline = time.monotonic() + within
        while True:
            try:
                value = await check()
            except ApiError as exc:
                if exc.status not in (404, 409):
                    raise
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not within {within:.0f} s")
            await asyncio.sleep(interval)

    # ----- 1. the care directory

    async def directory(self) -> tuple[Session, Session, Session]:
        """Admin, patient-care agent and compliance officer sessions; hospital and doctors."""
        o, site = self.o, self.site
        admin = self.session(await self.gateway.login(o.admin_email, o.admin_password))
        f = self.people.faker
        hospital = await admin.register_hospital({
            "name": f"{f.last_name()} {site.city} Hospital",
            "address": {"lines": [f.street_address()], "city": site.city,
                        "postal_code": f.postcode()[:20], "country": site.country},
            "contacts": [{"system": "phone", "value": self.people.phone()},
                         {"system": "email", "value": f"front-desk.{self.tag}@example.org"}],
            "time_zone": site.zone, "services": list(SPECIALTIES)})
        self.hospital_id = hospital["id"]
        await admin.verify_hospital(self.hospital_id)
        heart = await admin.add_department(self.hospital_id, "Cardiology", ["cardiology"])
        general = await admin.add_department(self.hospital_id, "Outpatient Clinic",
                                             ["dermatology", "general-practice"])
        self.report.steps["hospitals verified"] += 1
        self.report.steps["departments"] += 2
        # Three doctors: weekly hours every day 08:00–20:00 at the hospital (its zone).
        plan = [("cardiology", heart["id"], 30), ("dermatology", general["id"], 20),
                ("general-practice", general["id"], 5)]

        async def doctor(specialty: str, department: str, slot_minutes: int) -> None:
            person = self.people.person("doctor")
            self.report.people.append(person)
            await admin.create_user(person.email, person.password, person.full_name,
                                    ["doctor"], person.phone)
            me = self.session(await self.gateway.login(person.email, person.password))
            profile = await me.register_doctor({
                "name": {"prefix": "Dr.", "given": [person.given], "family": person.family},
                "licence": {"number": f"LIC-{self.tag}-{self.people.count}",
                            "issuer": f"{site.city} Medical Council", "country": site.country},
                "qualifications": [{"code": "MD", "issuer": f"University of {site.city}"}],
                "specialties": [specialty], "languages": ["en"],
                "affiliations": [{"hospital_id": self.hospital_id, "department_id": department}],
                "modes": ["in_person"], "fee": {"amount": 6000, "currency": "EUR"},
                "time_zone": site.zone})
            await admin.verify_doctor(profile["id"])
            weekly = [{"location": f"hospital:{self.hospital_id}", "day": day,
                       "start": "08:00", "end": "20:00"}
                      for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")]
            await me.put_availability(profile["id"], {"slot_minutes": slot_minutes,
                                                      "weekly": weekly})
            self.doctors[specialty] = profile["id"]
            self.report.steps["doctors verified"] += 1

        await asyncio.gather(*(doctor(*p) for p in plan))
        staff = []
        for role in ("patient_care", "compliance_officer"):
            person = self.people.person(role.replace("_", ""))
            self.report.people.append(person)
            await admin.create_user(person.email, person.password, person.full_name, [role],
                                    person.phone)
            staff.append(self.session(await self.gateway.login(person.email, person.password)))
        # Searchable and bookable once the read models have the events.
        for specialty, doctor_id in self.doctors.items():
            await self.until(f"{specialty} doctor in search",
                             functools.partial(self._found, admin, specialty, doctor_id),
                             within=self.o.wait)
            await self.until(f"{specialty} doctor's slots",
                             functools.partial(self._slots, admin, doctor_id), within=self.o.wait)
        return admin, staff[0], staff[1]

    async def _slots(self, session: Session, doctor_id: str) -> list[JSON]:
        now = datetime.now(UTC)
        return await session.free_slots(doctor_id, now, now + timedelta(days=14))

    async def _found(self, session: Session, specialty: str, doctor_id: str) -> bool:
        return any(d["id"] == doctor_id
                   for d in await session.search_doctors(specialty=specialty, limit="100"))

    # ----- 2. patients

    async def free_slot(self, session: Session, doctor_id: str, earliest: datetime,
                        pick: int = 40) -> str:
        """The start of a random free slot among the first ``pick`` after ``earliest``."""
        slots = await session.free_slots(doctor_id, earliest, earliest + timedelta(days=14))
        if not slots:
            raise AssertionError(f"no free slot of doctor {doctor_id}")
        return str(self.people.random.choice(slots[:pick])["start"])

    async def book_with_retry(self, session: Session, doctor_id: str, earliest: datetime,
                              *, soonest: bool = False, pick: int = 40, **kwargs: Any) -> JSON:
        """Book one of the first ``pick`` free slots (the first when ``soonest``); another
        one when somebody else took it first (409)."""
        for attempt in range(6):
            start = await self.free_slot(session, doctor_id, earliest,
                                         pick=1 if soonest else pick)
            try:
                return await session.book(doctor_id, start, **kwargs)
            except ApiError as exc:
                if exc.status != 409 or attempt == 5:
                    raise
        raise AssertionError("unreachable")

    async def patient(self, index: int) -> tuple[Person, Session, str] | None:
        """Register, sign in, fill in the chart; returns the person, session, patient id."""
        person = self.people.person("patient")
        self.report.people.append(person)

        async def go() -> tuple[Person, Session, str]:
            await self.gateway.register_patient(person.email, person.password,
                                                person.full_name, person.phone)
            session = self.session(await self.gateway.login(person.email, person.password))
            await self.until("the patient's chart", session.my_chart, within=self.o.wait)
            chart = self.people.chart(person)
            await session.update_my_chart({k: v for k, v in chart.items() if v is not None})
            self.report.steps["patients registered"] += 1
            return person, session, session.user_id

        async with self.sem:
            return await self.step(f"patient {index} registration", go)

    async def journey(self, index: int, person: Person, session: Session,
                      patient_id: str) -> None:
        """Search, book; every 5th reschedules, every 7th cancels; the first gets a reminder."""
        async def go() -> None:
            specialty = SPECIALTIES[index % len(SPECIALTIES)]
            found = await session.search_doctors(specialty=specialty)
            doctor_id = next(d["id"] for d in found if d["id"] == self.doctors[specialty])
            self.report.steps["searches"] += 1
            soon = index == 0 and self.o.reminder
            if soon:  # the 1-hour reminder is due within about five minutes
                doctor_id = self.doctors["general-practice"]
                earliest = datetime.now(UTC) + timedelta(minutes=self.o.reminder_offset,
                                                         seconds=45)
            else:
                earliest = datetime.now(UTC) + timedelta(hours=3)
            appointment = await self.book_with_retry(session, doctor_id, earliest,
                                                     reason="Consultation", soonest=soon)
            booking = Booking(person, patient_id, appointment["id"], doctor_id,
                              appointment["start"], [BOOKED_SUBJECT])
            self.bookings.append(booking)
            self.report.steps["bookings"] += 1
            if soon:
                booking.expected.append(REMINDER_SUBJECT)
                self.report.steps["reminders expected"] += 1
                due = datetime.fromisoformat(appointment["start"]) - timedelta(
                    minutes=self.o.reminder_offset)
                self.reminder_due = max(self.reminder_due or due, due)
            elif index % 5 == 4:
                await self.confirmed(person)
                start = await self.free_slot(session, doctor_id, earliest + timedelta(days=1))
                moved = await session.reschedule(booking.appointment_id, start)
                booking.start = moved["start"]
                booking.expected.append(MOVED_SUBJECT)
                self.report.steps["reschedules"] += 1
            elif index % 7 == 6:
                await self.confirmed(person)
                await session.cancel(booking.appointment_id, "patient_request")
                booking.expected.append(CANCELLED_SUBJECT)
                self.report.steps["cancellations"] += 1

        async with self.sem:
            await self.step(f"patient {index} booking", go)

    async def confirmed(self, person: Person) -> None:
        """Wait until the booking confirmation reached ``person``'s mailbox, as a patient
        would before changing the appointment (``wait`` seconds at most)."""
        async def arrived() -> bool:
            return any(m["subject"] == BOOKED_SUBJECT for m in await self.mailbox.mail(
                person.email))

        await self.until("the booking confirmation", arrived, within=self.o.wait)

    async def on_behalf(self, agent: Session, patient: tuple[Person, Session, str],
                        number: int) -> None:
        """The patient-care agent books for ``patient`` with special requests."""
        person, _, patient_id = patient
        requests = [
            {"interpreter_language": "ar", "accessibility_needs": ["wheelchair access"],
             "notes_for_staff": "Arrives with a carer; prefers a ground-floor room."},
            {"interpreter_language": "pt-BR", "preferred_practitioner_gender": "female",
             "accessibility_needs": ["hearing loop"],
             "notes_for_staff": "Hard of hearing; please face the patient when speaking."},
        ][number % 2]

        async def go() -> None:
            doctor_id = self.doctors["cardiology"]
            appointment = await self.book_with_retry(
                agent, doctor_id, datetime.now(UTC) + timedelta(days=2), patient_id=patient_id,
                reason="Follow-up booked by patient care", preferences=requests)
            if appointment["booked_by_role"] == "patient" or \
                    appointment["preferences"]["notes_for_staff"] != requests["notes_for_staff"]:
                raise AssertionError("the staff booking lost its author or special requests")
            self.bookings.append(Booking(person, patient_id, appointment["id"], doctor_id,
                                         appointment["start"], [BOOKED_SUBJECT], by_staff=True))
            self.report.steps["bookings by patient care"] += 1

        await self.step(f"patient-care booking {number}", go)

    # ----- 3. messages

    async def messages(self, task: Any) -> None:
        """Wait until every expected email and SMS is in the local mailbox and SMS log."""
        expected: dict[str, Counter[str]] = {}
        phones: dict[str, int] = {}
        for booking in self.bookings:
            wanted = expected.setdefault(booking.patient.email, Counter())
            wanted.update(booking.expected)
            phones[booking.patient.phone] = phones.get(booking.patient.phone, 0) + len(
                booking.expected)
        total = sum(sum(c.values()) for c in expected.values())
        self.progress.update(task, total=total)
        deadline = time.monotonic() + self.o.wait
        if self.reminder_due is not None:  # the reminder cannot arrive before it is due
            ahead = (self.reminder_due - datetime.now(UTC)).total_seconds()
            deadline = max(deadline, time.monotonic() + ahead + self.o.wait)
        while True:
            mail = [m for m in await self.mailbox.mail() if self.tag in " ".join(m["to"])]
            got: dict[str, Counter[str]] = {}
            for m in mail:
                for to in m["to"]:
                    got.setdefault(to, Counter())[m["subject"]] += 1
            done = sum(min(n, got.get(email, Counter())[subject])
                       for email, wanted in expected.items() for subject, n in wanted.items())
            self.progress.update(task, completed=done)
            sms = [s for s in await self.mailbox.sms() if s["to"] in phones]
            if done >= total and len(sms) >= sum(phones.values()):
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(1.0)
        for m in mail:
            self.report.mail[SUBJECT_KINDS.get(m["subject"], "welcome/other")] += 1
        self.report.sms = len(sms)
        for email, wanted in expected.items():
            for subject, n in wanted.items():
                seen = got.get(email, Counter())[subject]
                if seen != n:
                    self.report.errors.append(
                        f"mailbox: {seen} × {subject!r} for a patient, expected {n}")
        if len(sms) < sum(phones.values()):
            self.report.errors.append(f"SMS log: {len(sms)} messages to this run's patients, "
                                      f"expected {sum(phones.values())}")

    # ----- 4. compliance

    async def compliance(self, officer: Session, task: Any) -> None:
        """One patient's trail, the run's event counts (once they settle), the chain."""
        bookings = sum(1 for _ in self.bookings)
        since = self.report.started

        async def counted() -> Counter[str] | None:
            counts = Counter([e["type"] async for e in officer.audit_events(**{"from": since})])
            self.progress.update(task, completed=min(counts["appointment.booked"], bookings))
            return counts if counts["appointment.booked"] >= bookings else None

        self.progress.update(task, total=bookings)
        counts = await self.step("audit log counts", lambda: self.until(
            "every booking in the audit log", counted, within=self.o.wait, interval=2.0))
        if counts is not None:
            await asyncio.sleep(2.0)  # let the last notification events land too
            self.report.audit_types = Counter(
                [e["type"] async for e in officer.audit_events(**{"from": since})])
        if self.bookings:
            patient_id = self.bookings[0].patient_id
            trail = await self.step("one patient's audit trail", lambda: self._trail(
                officer, patient_id))
            if trail is not None:
                self.report.patient_trail = trail
                if trail["appointment.booked"] < 1:
                    self.report.errors.append("the patient's audit trail has no booking")
        chain = await self.step("audit chain verification", officer.audit_verify)
        if chain is not None:
            self.report.chain = {k: chain.get(k) for k in ("ok", "checked", "head_seq",
                                                           "first_broken_index", "reason")}
            if not chain.get("ok"):
                self.report.errors.append(f"the audit chain does not verify: {chain}")

    async def _trail(self, officer: Session, patient_id: str) -> Counter[str]:
        return Counter([e["type"] async for e in officer.audit_events(patient=patient_id)])

    # ----- the run

    async def run(self) -> Report:
        started = time.monotonic()
        self.report.started = datetime.now(UTC).isoformat(timespec="seconds")
        self.report.site = f"{self.site.city} ({self.site.zone})"
        try:
            with self.progress:
                await self._run()
        finally:
            self.report.seconds = time.monotonic() - started
            await self.gateway.aclose()
            await self.mailbox.aclose()
        return self.report

    async def _run(self) -> None:
        p = self.progress
        setup = p.add_task("hospital, doctors, staff", total=1)
        roles = await self.step("hospital, doctors and staff", self.directory)
        p.update(setup, completed=1)
        if roles is None:
            return
        _, agent, officer = roles
        signup = p.add_task("patients sign up", total=self.o.patients)
        booking = p.add_task("patients book", total=self.o.patients + 2)

        async def one(index: int) -> tuple[Person, Session, str] | None:
            result = await self.patient(index)
            p.advance(signup)
            if result is not None:
                await self.journey(index, *result)
            p.advance(booking)
            return result

        # Patient 0 books first: the reminder it is owed falls due while the others sign up.
        first = await one(0)
        rest = await asyncio.gather(*(one(i) for i in range(1, self.o.patients)))
        patients = [r for r in (first, *rest) if r is not None]
        for number, patient in enumerate(patients[1:3]):
            await self.on_behalf(agent, patient, number)
            p.advance(booking)
        mail = p.add_task("messages arrive", total=None)
        await self.step("messages", lambda: self.messages(mail))
        audit = p.add_task("audit log settles", total=None)
        await self.compliance(officer, audit)


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
                                                            Options.mailbox),
                        help="the local mailbox view `make run` prints (default %(default)s)")
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


async def run_demo(options: Options, console: Console | None = None) -> Report:
    """Drive one journey and return its report (never raises for a failed step)."""
    console = console or Console()
    return await Journey(options, console).run()


def load_dotenv_defaults(path: Path = Path(".env")) -> None:
    """``KEY=VALUE`` lines of ``.env`` into ``os.environ`` where not set (as ``make run`` does)."""
    if not path.is_file():
        return
    for line in path.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            os.environ.setdefault(key.strip().removeprefix("export "),
                                  value.strip().strip("'\""))


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
