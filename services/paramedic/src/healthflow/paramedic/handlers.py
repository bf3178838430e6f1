"""Events the paramedic service consumes, each one service call.

* ``emergency.raised`` (:class:`~healthflow.contracts.emergency.EmergencyRaised`):
  start assigning the nearest available unit (:func:`service.on_emergency_raised`).
* ``emergency.status_changed``: the working unit's duty status follows the
  emergency; closed or cancelled frees it (:func:`lifecycle.on_emergency_status`).
* ``emergency.located``: a dispatcher set the incident's position; an emergency
  waiting for want of one is assigned as a raised one (:func:`locating.on_located`).
* ``emergency.reprioritised``: the emergency's assignments and open tasks take the
  new priority (pushed on the task stream); raised to P1, a second unit is sought
  (:func:`priorities.on_reprioritised`).
* ``xray.requested`` (:class:`~healthflow.contracts.xray.XrayRequested`): an X-ray
  task waits for a radiography-qualified unit (:func:`xraytasks.on_xray_requested`).
* ``xray.revoked`` / ``xray.uploaded``: the order was cancelled / an image was stored
  for it: its task is cancelled / done and the unit freed (:func:`xraytasks.on_xray_ended`).

The handlers need the service's :class:`~healthflow.paramedic.service.Context`, so
the table is built by :func:`make_handlers`. The consumer's inbox makes each event
count once.
"""

from __future__ import annotations

from healthflow.common.events.consumer import Handlers, Received
from healthflow.common.events.outbox import UnitOfWork
from healthflow.contracts.emergency import (
    EmergencyLocated,
    EmergencyRaised,
    EmergencyReprioritised,
    EmergencyStatusChanged,
)
from healthflow.contracts.xray import XrayRequested, XrayRevoked, XrayUploaded
from healthflow.paramedic import lifecycle, locating, priorities, service, xraytasks


def make_handlers(ctx: service.Context) -> Handlers:
    """``{event type: handler}`` over ``ctx``."""

    async def on_raised(event: Received[EmergencyRaised], uow: UnitOfWork) -> None:
        await service.on_emergency_raised(uow, ctx, event.data)

    async def on_status_changed(event: Received[EmergencyStatusChanged],
                                uow: UnitOfWork) -> None:
        await lifecycle.on_emergency_status(uow, ctx, event.data.emergency_id,
                                            event.data.status, event.data.unit_id)

    async def on_located(event: Received[EmergencyLocated], uow: UnitOfWork) -> None:
        await locating.on_located(uow, ctx, event.data)

    async def on_reprioritised(event: Received[EmergencyReprioritised],
                               uow: UnitOfWork) -> None:
        await priorities.on_reprioritised(uow, ctx, event.data)

    async def on_xray_requested(event: Received[XrayRequested], uow: UnitOfWork) -> None:
        await xraytasks.on_xray_requested(uow, ctx, event.data)

    async def on_xray_revoked(event: Received[XrayRevoked], uow: UnitOfWork) -> None:
        await xraytasks.on_xray_ended(uow, ctx, event.data.order_id, "revoked")

    async def on_xray_uploaded(event: Received[XrayUploaded], uow: UnitOfWork) -> None:
        await xraytasks.on_xray_ended(uow, ctx, event.data.order_id, "completed")

    return {"emergency.raised": on_raised, "emergency.status_changed": on_status_changed,
            "emergency.reprioritised": on_reprioritised, "emergency.located": on_located,
            "xray.requested": on_xray_requested, "xray.revoked": on_xray_revoked,
            "xray.uploaded": on_xray_uploaded}
