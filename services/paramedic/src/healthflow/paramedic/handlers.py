"""Events the paramedic service consumes, each one service call.

* ``emergency.raised`` (:class:`~healthflow.contracts.emergency.EmergencyRaised`):
  start assigning the nearest available unit (:func:`service.on_emergency_raised`).
* ``emergency.status_changed``: the working unit's duty status follows the
  emergency; closed or cancelled frees it (:func:`service.on_emergency_status`).

The handlers need the service's :class:`~healthflow.paramedic.service.Context`, so
the table is built by :func:`make_handlers`. The consumer's inbox makes each event
count once.
"""

from __future__ import annotations

from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.emergency import EmergencyRaised, EmergencyStatusChanged
from healthflow.paramedic import service


def make_handlers(ctx: service.Context) -> Handlers:
    """``{event type: handler}`` over ``ctx``."""

    async def on_raised(event: Received[EmergencyRaised], uow: UnitOfWork) -> None:
        await service.on_emergency_raised(uow, ctx, event.data)

    async def on_status_changed(event: Received[EmergencyStatusChanged],
                                uow: UnitOfWork) -> None:
        await service.on_emergency_status(uow, ctx, event.data.emergency_id,
                                          event.data.status)

    return {"emergency.raised": on_raised, "emergency.status_changed": on_status_changed}
