"""Phases 3 and 4 of the demo: what the platform did in reply, checked.

Phase 3 waits for every email and SMS the run's bookings should cause to reach
the local mailbox and SMS log; phase 4 has the compliance officer count the run's
audit events, read one patient's trail and verify the chain. Shortfalls are
recorded as errors in the journey's report, never raised.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from healthflow.client.api import Session
from healthflow.client.journey import SUBJECT_KINDS, Journey

# ----- 3. messages

async def messages(journey: Journey, task: Any) -> None:
    """Wait until every expected email and SMS is in the local mailbox and SMS log."""
    expected: dict[str, Counter[str]] = {}
    phones: dict[str, int] = {}
    for booking in journey.bookings:
        wanted = expected.setdefault(booking.patient.email, Counter())
        wanted.update(booking.expected)
        phones[booking.patient.phone] = phones.get(booking.patient.phone, 0) + len(
            booking.expected)
    total = sum(sum(c.values()) for c in expected.values())
    journey.progress.update(task, total=total)
    deadline = time.monotonic() + journey.o.wait
    if journey.reminder_due is not None:  # the reminder cannot arrive before it is due
        ahead = (journey.reminder_due - datetime.now(UTC)).total_seconds()
        deadline = max(deadline, time.monotonic() + ahead + journey.o.wait)
    while True:
        mail = [m for m in await journey.mailbox.mail() if journey.tag in " ".join(m["to"])]
        got: dict[str, Counter[str]] = {}
        for m in mail:
            for to in m["to"]:
                got.setdefault(to, Counter())[m["subject"]] += 1
        done = sum(min(n, got.get(email, Counter())[subject])
                   for email, wanted in expected.items() for subject, n in wanted.items())
        journey.progress.update(task, completed=done)
        sms = [s for s in await journey.mailbox.sms() if s["to"] in phones]
        if done >= total and len(sms) >= sum(phones.values()):
            break
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    for m in mail:
        journey.report.mail[SUBJECT_KINDS.get(m["subject"], "welcome/other")] += 1
    journey.report.sms = len(sms)
    for email, wanted in expected.items():
        for subject, n in wanted.items():
            seen = got.get(email, Counter())[subject]
            if seen != n:
                journey.report.errors.append(
                    f"mailbox: {seen} × {subject!r} for a patient, expected {n}")
    if len(sms) < sum(phones.values()):
        journey.report.errors.append(f"SMS log: {len(sms)} messages to this run's patients, "
                                     f"expected {sum(phones.values())}")


# ----- 4. compliance

async def compliance(journey: Journey, officer: Session, task: Any) -> None:
    """One patient's trail, the run's event counts (once they settle), the chain."""
    bookings = sum(1 for _ in journey.bookings)
    since = journey.report.started

    async def counted() -> Counter[str] | None:
        counts = Counter([e["type"] async for e in officer.audit_events(**{"from": since})])
        journey.progress.update(task, completed=min(counts["appointment.booked"], bookings))
        return counts if counts["appointment.booked"] >= bookings else None

    journey.progress.update(task, total=bookings)
    counts = await journey.step("audit log counts", lambda: journey.until(
        "every booking in the audit log", counted, within=journey.o.wait, interval=2.0))
    if counts is not None:
        await asyncio.sleep(2.0)  # let the last notification events land too
        journey.report.audit_types = Counter(
            [e["type"] async for e in officer.audit_events(**{"from": since})])
    if journey.bookings:
        patient_id = journey.bookings[0].patient_id
        trail = await journey.step("one patient's audit trail", lambda: _trail(
            officer, patient_id))
        if trail is not None:
            journey.report.patient_trail = trail
            if trail["appointment.booked"] < 1:
                journey.report.errors.append("the patient's audit trail has no booking")
    chain = await journey.step("audit chain verification", officer.audit_verify)
    if chain is not None:
        journey.report.chain = {k: chain.get(k) for k in ("ok", "checked", "head_seq",
                                                          "first_broken_index", "reason")}
        if not chain.get("ok"):
            journey.report.errors.append(f"the audit chain does not verify: {chain}")


async def _trail(officer: Session, patient_id: str) -> Counter[str]:
    """How many events of each type ``patient_id``'s audit trail holds."""
    return Counter([e["type"] async for e in officer.audit_events(patient=patient_id)])
