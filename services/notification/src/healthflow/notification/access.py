"""What the records service's access events tell the patient (queued in the consumer's
:class:`UnitOfWork` like every message: :mod:`healthflow.notification.messages`).

* ``record.emergency_access_granted`` (break-the-glass): the patient is told, on their
  feed, by e-mail and push, that a clinician without a care relationship opened their
  record in an emergency, that the access is logged and reviewed, and that the app shows
  who read it. The message names no clinician, reason or content.
"""

from __future__ import annotations

from typing import Any

from healthflow.common.events.consumer import Handler, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.records import EmergencyAccessGranted
from healthflow.notification import domain
from healthflow.notification.messages import plan_message
from healthflow.notification.service import Context


async def apply_emergency_access(uow: UnitOfWork, raw: dict[str, Any], event_id: str,
                                 ctx: Context) -> None:
    """Queue the patient's message for one grant (once per event: the inbox)."""
    await plan_message(uow, ctx, user_id=raw["patient_id"], kind=domain.EMERGENCY_ACCESS,
                       source_id=event_id, trigger="record.emergency_access_granted",
                       context={})


def handler(ctx: Context) -> Handler:
    """The consumer's handler of ``record.emergency_access_granted`` over ``ctx``."""

    async def on_emergency_access(event: Received[EmergencyAccessGranted], uow: UnitOfWork
                                  ) -> None:
        await apply_emergency_access(uow, event.data.model_dump(), event.id, ctx)

    return on_emergency_access
