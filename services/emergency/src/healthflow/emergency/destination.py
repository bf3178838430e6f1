"""The destination hospital: the read model of hospitals, departments and staff (from
the hospital service's events) and the choice made when the crew starts transporting.

A destination is the nearest *verified* hospital with a registered position that has
a department offering the code :func:`~healthflow.emergency.domain.destination_departments`
prefers (great-circle distance from the incident, ``$geoNear``); its doctors and nurses
are told in advance through ``emergency.destination_chosen``, which the notification
service turns into an urgent push/SMS (ids, priority and the department only: no PHI).
"""

from __future__ import annotations

from datetime import datetime

from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.mongo import Document
from healthflow.contracts.hospital import DepartmentCreated, HospitalSnapshot
from healthflow.emergency import events, store
from healthflow.emergency.domain import Triage, destination_departments, geo_point

SEARCH_RADIUS_M = 100_000.0
"""How far from the incident a destination is looked for (metres)."""


async def on_hospital(uow: UnitOfWork, data: HospitalSnapshot) -> None:
    """``hospital.registered|verified|rejected``: the hospital's status and position
    (applied only when newer than the one held, by ``version``)."""
    location = (geo_point(data.latitude, data.longitude)
                if data.latitude is not None and data.longitude is not None else None)
    await store.put_hospital(uow.db, uow.session, data.hospital_id, data.version,
                             {"name": data.name, "status": data.status,
                              "location": location})


async def on_department(uow: UnitOfWork, data: DepartmentCreated) -> None:
    """``department.created``: what the department offers (its service codes)."""
    await store.put_department(uow.db, uow.session, data.department_id, data.hospital_id,
                               list(data.services))


async def choose(uow: UnitOfWork, doc: Document, now: datetime) -> Document | None:
    """The destination of the emergency ``doc`` leaving the scene at ``now``, and
    ``emergency.destination_chosen`` for it; None when the emergency has no position or
    no verified hospital within :data:`SEARCH_RADIUS_M` has a fitting department (the
    crew then hands over by radio, as today).

    Returns ``{hospital_id, name, department_id, department, distance_m, chosen_at}``.
    """
    if doc.get("location") is None:
        return None
    for department in destination_departments(Triage(**doc["triage"])):
        hospital = await store.nearest_hospital(uow.db, uow.session, doc["location"],
                                                department, SEARCH_RADIUS_M)
        if hospital is None:
            continue
        unit = await store.department_offering(uow.db, uow.session, hospital["_id"],
                                               department)
        assert unit is not None  # department_services only holds departments' codes
        staff = await store.receiving_staff(uow.db, uow.session, hospital["_id"], unit["_id"])
        chosen = {"hospital_id": hospital["_id"], "name": hospital.get("name"),
                  "department_id": unit["_id"], "department": department,
                  "distance_m": round(float(hospital["distance_m"]), 1), "chosen_at": now}
        uow.publish(events.EmergencyDestinationChosen(
            emergency_id=doc["_id"], priority=doc["priority"], hospital_id=hospital["_id"],
            department_id=unit["_id"], department=department,
            distance_m=chosen["distance_m"],
            unit_id=(doc.get("assignment") or {}).get("unit_id"),
            receiving_staff=staff, chosen_at=now),
            subject=f"emergency/{doc['_id']}", patientid=doc.get("patient_id"))
        return chosen
    return None
