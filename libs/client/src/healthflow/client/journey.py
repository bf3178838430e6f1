"""The demo's journey: its options, state and report, and the steps that build the
care directory (phase 1) and take patients through sign-up and booking (phase 2).

One :class:`Journey` per run; :mod:`healthflow.client.demo` drives it phase by phase
(:mod:`healthflow.client.checks` holds phases 3 and 4), and the fault drill
(:mod:`healthflow.client.drill`) reuses its set-up and booking steps.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
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
        o = self.o
        admin = self.session(await self.gateway.login(o.admin_email, o.admin_password))
        heart, general = await self._hospital(admin)
        # Three doctors: weekly hours every day 08:00–20:00 at the hospital (its zone).
        plan = [("cardiology", heart, 30), ("dermatology", general, 20),
                ("general-practice", general, 5)]
        await asyncio.gather(*(self._doctor(admin, *p) for p in plan))
        staff = [await self._staff(admin, role)
                 for role in ("patient_care", "compliance_officer")]
        # Searchable and bookable once the read models have the events.
        for specialty, doctor_id in self.doctors.items():
            await self.until(f"{specialty} doctor in search",
                             functools.partial(self._found, admin, specialty, doctor_id),
                             within=self.o.wait)
            await self.until(f"{specialty} doctor's slots",
                             functools.partial(self._slots, admin, doctor_id), within=self.o.wait)
        return admin, staff[0], staff[1]

    async def _hospital(self, admin: Session) -> tuple[str, str]:
        """Register and verify the run's hospital (in :attr:`site`'s city and zone) with two
        departments; their ids: cardiology, then the outpatient clinic."""
        site = self.site
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
        return heart["id"], general["id"]

    async def _doctor(self, admin: Session, specialty: str, department: str,
                      slot_minutes: int) -> None:
        """One doctor of ``specialty``: the admin creates the account and verifies the
        profile the doctor registers; the doctor publishes weekly hours, every day
        08:00–20:00 at the hospital in slots of ``slot_minutes``."""
        site = self.site
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

    async def _staff(self, admin: Session, role: str) -> Session:
        """A staff member with ``role``: the admin creates the account and, but for the
        platform-wide compliance officer, gives it a membership at the run's hospital
        (staff act only where they work); its session."""
        person = self.people.person(role.replace("_", ""))
        self.report.people.append(person)
        user = await admin.create_user(person.email, person.password, person.full_name,
                                       [role], person.phone)
        if role != "compliance_officer":
            await admin.assign_staff(self.hospital_id, user["id"], role)
        return self.session(await self.gateway.login(person.email, person.password))

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

            async def booked() -> JSON | None:
                try:
                    return await self.book_with_retry(
                        agent, doctor_id, datetime.now(UTC) + timedelta(days=2),
                        patient_id=patient_id, reason="Follow-up booked by patient care",
                        preferences=requests)
                except ApiError as exc:
                    if exc.status == 403 and "staff membership" in str(exc):
                        return None  # the agent's membership has not reached bookings yet
                    raise

            appointment = await self.until("the agent's staff membership", booked,
                                           within=self.o.wait)
            if appointment["booked_by_role"] == "patient" or \
                    appointment["preferences"]["notes_for_staff"] != requests["notes_for_staff"]:
                raise AssertionError("the staff booking lost its author or special requests")
            self.bookings.append(Booking(person, patient_id, appointment["id"], doctor_id,
                                         appointment["start"], [BOOKED_SUBJECT], by_staff=True))
            self.report.steps["bookings by patient care"] += 1

        await self.step(f"patient-care booking {number}", go)
