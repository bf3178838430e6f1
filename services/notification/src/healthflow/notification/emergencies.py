"""Messages about emergencies (issue 14): the receiving hospital's staff told of an
inbound patient, and a paramedic's task offers (pushed, texted as a fallback)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from healthflow.common.events.outbox import UnitOfWork
from healthflow.notification import domain, store
from healthflow.notification.messages import PushOptions, plan_message
from healthflow.notification.service import Context

log = logging.getLogger(__name__)


async def apply_emergency_inbound(uow: UnitOfWork, raw: dict[str, Any], event_id: str,
                                  ctx: Context) -> None:
    """``emergency.destination_chosen``: tell each of the receiving hospital's staff
    (``receiving_staff`` user ids) that an ambulance is bringing a ``priority`` patient
    to ``department``; once per event and person. Only those who work there now: a
    current membership at ``hospital_id`` in this service's read model of
    ``staff.assigned``/``staff.removed`` (:mod:`healthflow.common.tenancy`); the
    emergency service's list may predate a removal. Someone whose ``staff.assigned`` has
    not reached this service yet is not told either (logged as a count, never ids)."""
    hospital = await store.get(uow.db, store.DIRECTORY, f"hospital:{raw['hospital_id']}",
                               uow.session)
    context = {"priority": raw["priority"], "department": raw["department"],
               "hospital": (hospital or {}).get("name")}
    current = await store.current_staff(uow.db, uow.session, raw["hospital_id"],
                                        raw["receiving_staff"])
    if skipped := len(set(raw["receiving_staff"]) - current):
        log.info("inbound notice not sent to staff without a current membership",
                 extra={"hospital_id": raw["hospital_id"], "skipped": skipped})
    for user_id in [u for u in raw["receiving_staff"] if u in current]:
        await plan_message(uow, ctx, user_id=user_id, kind=domain.EMERGENCY_INBOUND,
                           source_id=event_id, trigger="emergency.destination_chosen",
                           context=context)


async def apply_task_offered(uow: UnitOfWork, raw: dict[str, Any], event_id: str,
                             ctx: Context, trigger: str = "paramedic.task_offered") -> None:
    """``paramedic.task_offered`` (or ``trigger``: ``paramedic.xray_task_offered``, or
    ``paramedic.task_unacknowledged`` — an offer the open stream carried but the app
    never acknowledged —, same fields used): tell the paramedic (``paramedic_id``) on
    the channels :func:`domain.task_offer_channels` names — an offer is pushed at once to
    every browser they subscribed (``Urgency: high``, ``TTL`` up to ``expires_at``, a
    ``Topic`` per task; payload :func:`domain.task_push_data`), and texted when the unit's
    app had no task stream open (``stream_connected`` False) or never acknowledged it.
    Both are cancelled unsent after ``expires_at``; once per event, channel and browser."""
    channels = domain.task_offer_channels(trigger, raw.get("stream_connected"))
    push = PushOptions(data=domain.task_push_data(raw),
                       topic=domain.push_topic(f"task:{raw['task_id']}"))
    await plan_message(uow, ctx, user_id=raw["paramedic_id"],
                       kind=replace(domain.TASK_OFFERED, channels=channels),
                       source_id=event_id, trigger=trigger,
                       context={"call_sign": raw.get("call_sign") or raw["unit_id"],
                                "xray": raw.get("order_id") is not None},
                       expires_at=raw["expires_at"], push=push)
