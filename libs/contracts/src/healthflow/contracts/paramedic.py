"""Contracts of the events the paramedic service publishes (identifiers only).

The paramedic service owns the units (status, position) and so the assignment:
it claims a unit for an emergency with one conditional update in its own
database and publishes what happened to the offer. Positions are never
published; a unit on its way publishes its travel time to the incident instead
(``paramedic.eta_updated``). ``subject`` is ``emergency/<id>``.
"""

from __future__ import annotations

from datetime import datetime

from healthflow.contracts.base import EventPayload, event_type

PUBLISHER = "paramedic"


class TaskEvent(EventPayload):
    """Fields every task event shares: the task, its emergency, the unit and its
    paramedic's user id. ``slot``: which of the units the emergency asks for — a P1
    asks for two, each offered, declined and re-offered on its own (1 or 2; ``None``
    from older publishers: 1; added compatibly)."""

    task_id: str
    emergency_id: str
    unit_id: str
    paramedic_id: str
    slot: int | None = None


@event_type("paramedic.task_offered", version=1, publisher=PUBLISHER)
class TaskOffered(TaskEvent):
    """The fastest available unit was claimed and offered the task at ``offered_at``;
    it must accept before ``expires_at`` (aware UTC). ``distance_m`` is the straight-line
    (great-circle) distance in metres, ``travel_s`` the estimated travel time in seconds,
    by road when ``by_road`` (else from the straight line); ``attempt`` counts offers for
    this emergency from 1. ``call_sign`` is the unit's radio call sign (who is coming;
    not a person's name). A dispatcher's manual (re)assignment names them in
    ``assigned_by`` (user id) with a ``reason`` code (``nearer_unit``,
    ``unit_unavailable``, ``crew_request``, ``escalated``, ``other``); both ``None``
    for the automatic offers. ``stream_connected`` says whether the paramedic app had
    its task stream open when offered (``False``: the notification service texts the
    paramedic besides the Web Push every offer gets; ``None`` from older publishers).
    The last four fields were added compatibly."""

    distance_m: float
    travel_s: float
    by_road: bool
    attempt: int
    offered_at: datetime
    expires_at: datetime
    call_sign: str | None = None
    assigned_by: str | None = None
    reason: str | None = None
    stream_connected: bool | None = None


@event_type("paramedic.task_unacknowledged", version=1, publisher=PUBLISHER)
class TaskUnacknowledged(EventPayload):
    """An offer went out on the app's open task stream (``stream_connected`` true) at
    ``offered_at`` but the app did not acknowledge it (``POST …/tasks/{id}/ack``, or an
    accept or decline) within the paramedic setting ``ack_timeout_s``: the notification
    service texts the paramedic, as for an offer made while the stream was closed. At
    most once per task. ``emergency_id`` for an emergency task, ``order_id`` for an
    X-ray task (``subject`` ``emergency/<id>`` or ``xray-order/<id>``); ``call_sign`` and
    ``expires_at`` as in ``task_offered``."""

    task_id: str
    unit_id: str
    paramedic_id: str
    emergency_id: str | None = None
    order_id: str | None = None
    call_sign: str | None = None
    offered_at: datetime
    expires_at: datetime


@event_type("paramedic.eta_updated", version=1, publisher=PUBLISHER)
class EtaUpdated(TaskEvent):
    """The unit that accepted the task reported a position taken at ``reported_at``
    while on its way (the emergency ``assigned`` or ``en_route``): it is ``distance_m``
    metres (great circle) and ``travel_s`` seconds from the incident, by road when
    ``by_road`` (else the straight-line estimate). Throttled: the first report after
    accepting, then only on a large enough change or after an interval (paramedic
    settings ``eta_*``); the position itself is not published. ``call_sign`` as in
    ``task_offered``."""

    call_sign: str
    distance_m: float
    travel_s: float
    by_road: bool
    reported_at: datetime


@event_type("paramedic.task_accepted", version=1, publisher=PUBLISHER)
class TaskAccepted(TaskEvent):
    """The paramedic accepted the task at ``accepted_at``."""

    accepted_at: datetime


@event_type("paramedic.task_declined", version=1, publisher=PUBLISHER)
class TaskDeclined(TaskEvent):
    """The task ended without the crew finishing it at ``declined_at``: ``reason`` is
    ``declined`` (the paramedic said no), ``timeout`` (no answer in time) or
    ``reassigned`` (a dispatcher gave the emergency to another unit, also after
    acceptance; or such a reassignment undone because the crew it took the emergency
    from reached the patient first) or ``stood_down`` (a P1's second unit not needed:
    the patient left the scene before it accepted)."""

    reason: str
    declined_at: datetime


@event_type("paramedic.assignment_escalated", version=1, publisher=PUBLISHER)
class AssignmentEscalated(EventPayload):
    """No unit could be offered the emergency at ``escalated_at``: ``reason`` is
    ``no_unit_available`` (none available with a fresh position within range, or all
    declined) or ``no_position`` (the emergency has no coordinates). Dispatchers see
    it flagged; the paramedic service tries again every retry interval. ``slot`` as in
    the task events (a P1's second unit may be escalated while the first is coming)."""

    emergency_id: str
    reason: str
    attempts: int
    escalated_at: datetime
    slot: int | None = None


class XrayTaskEvent(EventPayload):
    """Fields every X-ray task event shares: the task, the X-ray order it was made from
    (``xray.requested``), the unit and its paramedic's user id. Nothing about the
    patient or the clinical question: the crew reads the order on the imaging work
    list. ``subject`` is ``xray-order/<id>``."""

    task_id: str
    order_id: str
    unit_id: str
    paramedic_id: str


@event_type("paramedic.xray_task_offered", version=1, publisher=PUBLISHER)
class XrayTaskOffered(XrayTaskEvent):
    """A radiography-qualified unit was claimed and offered the X-ray task at
    ``offered_at``; it must accept before ``expires_at`` (aware UTC). ``attempt``
    counts offers for this order from 1; ``call_sign`` as in ``task_offered``;
    ``stream_connected`` ``False``: the app had no task stream open, so the
    notification service texts the paramedic besides the Web Push (as for
    ``task_offered``)."""

    attempt: int
    offered_at: datetime
    expires_at: datetime
    call_sign: str | None = None
    stream_connected: bool | None = None


@event_type("paramedic.xray_task_accepted", version=1, publisher=PUBLISHER)
class XrayTaskAccepted(XrayTaskEvent):
    """The paramedic accepted the X-ray task at ``accepted_at``."""

    accepted_at: datetime


@event_type("paramedic.xray_task_ended", version=1, publisher=PUBLISHER)
class XrayTaskEnded(XrayTaskEvent):
    """The X-ray task ended at ``ended_at``: ``reason`` is ``declined`` (the paramedic
    said no; the next unit is offered it), ``timeout`` (no answer in time; likewise),
    ``revoked`` (the order was cancelled, ``xray.revoked``), ``completed`` (an image
    was stored for the order, ``xray.uploaded``) or ``preempted`` (a P1 took the unit;
    the order is offered to the next unit)."""

    reason: str
    ended_at: datetime
