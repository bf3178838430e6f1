"""Collections, indexes and queries of the doctor service (its repository; the use cases
that write, and the events they record, are in :mod:`healthflow.doctor.service`).

Collections (database ``healthflow_doctor``)::

    doctors      {_id: doctor id = user id, name{prefix, given[], family}, display_name,
                  name_keys[], sort_key, qualifications[], licence{number, issuer, country},
                  specialties[], languages[], language_keys[], affiliations[{hospital_id,
                  department_id}], modes[], fee{amount, currency, requires_prepayment},
                  time_zone, status,
                  rejection_reason, decided_at, decided_by,
                  schedule{slot_minutes, weekly[{location, day, start, end, breaks[]}],
                           leave[{kind, start_date, end_date, hospital_id, note}]} | None,
                  blocked[{location, start, end}]            (leave as aware UTC)
                  searchable, search_hospitals[], search_departments[], search_cities[],
                  open_dates[], open_dates_from, open_dates_until,
                  created_at, updated_at, version}
    hospitals    read model of hospital.* events:
                 {_id: hospital id, version, name, city, city_norm, country, time_zone,
                  status, verified}
    departments  read model of department.created: {_id, hospital_id, name}
    bookings     read model of appointment.booked/.cancelled/.rescheduled:
                 {_id: appointment id, doctor_id, start, end, status, event_time}

``open_dates`` lists the local dates (``YYYY-MM-DD``, and ``YYYY-MM-DD/<mode>``) on
which the doctor has at least one free slot in the next
:data:`~healthflow.doctor.domain.SEARCH_HORIZON_DAYS` days: availability minus
leave minus the active bookings the appointment service announced. It is
recomputed whenever one of those changes and daily (see ``app.py``), so the date
filter of search is one indexed equality. The appointment service stays the
authority on individual slots.

Every search is answered through one named index (``hint``): the
MongoDB-protocol server in use falls back to a collection scan when two
indexes could serve a query, and the hint makes the plan explicit everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from healthflow.common.mongo import Document, Indexes
from healthflow.common.pagination import keyset_page
from healthflow.doctor import domain
from healthflow.doctor.domain import (
    HospitalFacts,
    Mode,
)

DOCTORS = "doctors"
HOSPITALS = "hospitals"
DEPARTMENTS = "departments"
BOOKINGS = "bookings"

SEARCH_FIELDS = {
    # query parameter → (indexed field, index name); the order is the hint priority
    "department": ("search_departments", "search_department"),
    "hospital": ("search_hospitals", "search_hospital"),
    "name": ("name_keys", "search_name"),
    "date": ("open_dates", "search_date"),
    "specialty": ("specialties", "search_specialty"),
    "city": ("search_cities", "search_city"),
    "language": ("language_keys", "search_language"),
    "mode": ("modes", "search_mode"),
}


def _search_index(field: str, name: str) -> IndexModel:
    return IndexModel([("searchable", ASCENDING), (field, ASCENDING), ("sort_key", ASCENDING)],
                      name=name)


INDEXES: Indexes = {
    DOCTORS: [
        IndexModel([("searchable", ASCENDING), ("sort_key", ASCENDING)], name="search_all"),
        *(_search_index(field, name) for field, name in SEARCH_FIELDS.values()),
        IndexModel([("affiliations.hospital_id", ASCENDING)], name="affiliation_hospital"),
        IndexModel([("open_dates_from", ASCENDING)], name="open_dates_from"),
    ],
    DEPARTMENTS: [IndexModel([("hospital_id", ASCENDING)], name="hospital")],
    BOOKINGS: [IndexModel([("doctor_id", ASCENDING), ("start", ASCENDING)], name="doctor_start")],
}

FREED = "cancelled"
"""The one booking status that frees its slot (every other status occupies it)."""


# -- read models -----------------------------------------------------------------------


def _facts(doc: Document) -> HospitalFacts:
    return HospitalFacts(doc["_id"], bool(doc.get("verified")), doc["name"], doc["city"],
                         doc["time_zone"])


async def hospital_facts(db: AsyncDatabase[Document], ids: Sequence[str],
                         session: Any = None) -> dict[str, HospitalFacts]:
    """What the read model knows of hospitals ``ids`` (unknown ones are absent)."""
    if not ids:
        return {}
    docs = await db[HOSPITALS].find({"_id": {"$in": list(ids)}}, session=session).to_list()
    return {d["_id"]: _facts(d) for d in docs}


# -- derived fields ----------------------------------------------------------------------


# -- reads -------------------------------------------------------------------------------


async def get_doctor(db: AsyncDatabase[Document], doctor_id: str,
                     session: Any = None) -> Document | None:
    return await db[DOCTORS].find_one({"_id": doctor_id}, session=session)


def search_query(*, name: str | None = None, specialty: str | None = None,
                 hospital: str | None = None, department: str | None = None,
                 city: str | None = None, language: str | None = None,
                 mode: Mode | None = None, on: date | None = None
                 ) -> tuple[dict[str, Any], str]:
    """The filter of a doctor search and the index that serves it.

    Only ``searchable`` doctors (licence verified, at a verified hospital) match. ``name``
    is a case-insensitive prefix of any word of the name; ``city`` is case-insensitive;
    ``language`` matches a full BCP 47 tag or its primary subtag (``en`` finds ``en-GB``);
    ``on`` keeps doctors with a free slot on that local date (in ``mode`` when given).
    The most selective present filter picks the index (see :data:`SEARCH_FIELDS`).
    """
    values: dict[str, Any] = {}
    if department:
        values["department"] = department
    if hospital:
        values["hospital"] = hospital
    if name:
        bounds = domain.prefix_range(name)
        if bounds is not None:
            # $elemMatch: both bounds must hold for the same word of the (array) field
            values["name"] = {"$elemMatch": {"$gte": bounds[0], "$lt": bounds[1]}}
    if on is not None:
        values["date"] = on.isoformat() + (f"/{mode.value}" if mode else "")
    if specialty:
        values["specialty"] = specialty.strip().lower()
    if city:
        values["city"] = domain.normalise(city)
    if language:
        values["language"] = language.strip().lower()
    if mode:
        values["mode"] = mode.value
    query: dict[str, Any] = {"searchable": True}
    index = "search_all"
    for key, (field, name_) in SEARCH_FIELDS.items():
        if key in values:
            query[field] = values[key]
            if index == "search_all":
                index = name_
    return query, index


async def search(db: AsyncDatabase[Document], query: dict[str, Any], index: str, *,
                 cursor: str | None, limit: int) -> tuple[list[Document], str | None]:
    """One page of ``query`` ordered by name then id, and the next cursor.

    Raises:
        BadRequest: (400) for a cursor this API did not issue.
    """
    return await keyset_page(db[DOCTORS], query, sort=["sort_key"], cursor=cursor,
                             limit=limit, hint=index)


# -- writes (inside one transaction) ----------------------------------------------------


