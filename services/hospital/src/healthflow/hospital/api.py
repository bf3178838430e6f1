"""HTTP routes of the hospital service: ``/api/v1/hospitals``.

Who may call what (permissions are declared on each route; ownership is
checked in :mod:`healthflow.hospital.service`):

==========================================  ==============================================
``GET  /``                                   public: verified hospitals; ``status`` other
                                             than ``verified`` needs ``hospitals:verify``
``POST /``                                   ``hospitals:register`` (representatives, admins)
``GET  /{id}``                               public if verified; else registrant or verifier
``POST /{id}/verify``, ``/{id}/reject``      ``hospitals:verify`` (admins)
``GET  /{id}/departments``                   as ``GET /{id}``
``POST /{id}/departments``, ``/{id}/staff``  registrant, or ``hospitals:manage`` (admins)
``GET  /{id}/staff``                         registrant, or ``hospitals:manage``
``DELETE /{id}/staff/{membership_id}``       registrant, or ``hospitals:manage``
==========================================  ==============================================
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from healthflow.common.auth import (
    MaybePrincipal,
    Principal,
    require,
    require_any,
)
from healthflow.common.http import get_runtime
from healthflow.common.mongo import Document
from healthflow.common.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from healthflow.common.permissions import Permission
from healthflow.common.service import ServiceRuntime
from healthflow.hospital import service
from healthflow.hospital.domain import HospitalStatus
from healthflow.hospital.schemas import (
    DepartmentCreate,
    DepartmentOut,
    HospitalCreate,
    HospitalOut,
    RejectBody,
    StaffAssign,
    StaffOut,
)

router = APIRouter(prefix="/api/v1/hospitals", tags=["hospitals"])

Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]


Manager = require_any(Permission.HOSPITALS_REGISTER, Permission.HOSPITALS_MANAGE)


def hospital_out(doc: Document, principal: Principal | None) -> HospitalOut:
    """The hospital as ``principal`` may see it (:func:`service.shown`)."""
    return HospitalOut.model_validate({**service.shown(doc, principal), "id": doc["_id"]})


def department_out(doc: Document) -> DepartmentOut:
    return DepartmentOut.model_validate({**doc, "id": doc["_id"]})


def staff_out(doc: Document) -> StaffOut:
    return StaffOut.model_validate({**doc, "id": doc["_id"]})


@router.get("", response_model=Page[HospitalOut], summary="List hospitals (public: verified)")
async def list_hospitals(
    runtime: Runtime,
    principal: MaybePrincipal,
    city: Annotated[str | None, Query(max_length=200, description="case-insensitive")] = None,
    service_code: Annotated[str | None, Query(alias="service", max_length=64,
                                              description="a service code")] = None,
    status: Annotated[
        HospitalStatus | Literal["all"],
        Query(description="verified (default, public); others need hospitals:verify"),
    ] = HospitalStatus.VERIFIED,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[HospitalOut]:
    """Hospitals ordered by name. Public callers see verified ones only.

    Raises Forbidden (403) when ``status`` is not ``verified`` and the caller lacks
    ``hospitals:verify``; BadRequest (400) for a foreign cursor.
    """
    docs, next_cursor = await service.list_hospitals(
        runtime, principal, status=status, city=city, service=service_code, cursor=cursor,
        limit=limit)
    return Page[HospitalOut](items=[hospital_out(d, principal) for d in docs],
                             next_cursor=next_cursor)


@router.post("", status_code=201, response_model=HospitalOut, summary="Register a hospital")
async def register_hospital(
    body: HospitalCreate, runtime: Runtime, response: Response,
    principal: Principal = require(Permission.HOSPITALS_REGISTER),
) -> HospitalOut:
    """Register a hospital; it is ``pending`` until an admin verifies it."""
    doc = await service.register(runtime, principal, body)
    response.headers["Location"] = f"{router.prefix}/{doc['_id']}"
    return hospital_out(doc, principal)


@router.get("/{hospital_id}", response_model=HospitalOut, summary="One hospital")
async def get_hospital(hospital_id: str, runtime: Runtime,
                       principal: MaybePrincipal) -> HospitalOut:
    """A hospital; an unverified one is 404 except to its registrant and to verifiers."""
    return hospital_out(await service.get(runtime, principal, hospital_id), principal)


@router.post("/{hospital_id}/verify", response_model=HospitalOut, summary="Verify a hospital")
async def verify_hospital(
    hospital_id: str, runtime: Runtime,
    principal: Principal = require(Permission.HOSPITALS_VERIFY),
) -> HospitalOut:
    """pending → verified (409 from any other status; 404 if unknown)."""

    return hospital_out(await service.decide(runtime, principal, hospital_id,
                                             HospitalStatus.VERIFIED), principal)


@router.post("/{hospital_id}/reject", response_model=HospitalOut, summary="Reject a hospital")
async def reject_hospital(
    hospital_id: str, body: RejectBody, runtime: Runtime,
    principal: Principal = require(Permission.HOSPITALS_VERIFY),
) -> HospitalOut:
    """pending → rejected with ``reason`` (409 from any other status; 404 if unknown)."""

    doc = await service.decide(runtime, principal, hospital_id, HospitalStatus.REJECTED,
                               reason=body.reason)
    return hospital_out(doc, principal)


@router.get("/{hospital_id}/departments", response_model=list[DepartmentOut],
            summary="Departments of a hospital")
async def list_departments(hospital_id: str, runtime: Runtime,
                           principal: MaybePrincipal) -> list[DepartmentOut]:
    """Departments ordered by name; visibility as for the hospital itself."""
    return [department_out(d)
            for d in await service.departments(runtime, principal, hospital_id)]


@router.post("/{hospital_id}/departments", status_code=201, response_model=DepartmentOut,
             summary="Add a department")
async def create_department(
    hospital_id: str, body: DepartmentCreate, runtime: Runtime,
    principal: Principal = Manager,
) -> DepartmentOut:
    """Add a department (the registrant or an admin; 409 for a duplicate name)."""

    return department_out(await service.create_department(runtime, principal, hospital_id,
                                                          body))


@router.get("/{hospital_id}/staff", response_model=list[StaffOut], summary="Staff memberships")
async def list_staff(hospital_id: str, runtime: Runtime,
                     principal: Principal = Manager) -> list[StaffOut]:
    """Who works where (the registrant or an admin)."""
    return [staff_out(d) for d in await service.staff(runtime, principal, hospital_id)]


@router.post("/{hospital_id}/staff", status_code=201, response_model=StaffOut,
             summary="Assign a user to the hospital's staff")
async def assign_staff(
    hospital_id: str, body: StaffAssign, runtime: Runtime,
    principal: Principal = Manager,
) -> StaffOut:
    """Add a membership (the registrant or an admin; 422 unknown department, 409 duplicate)."""

    return staff_out(await service.assign_staff(runtime, principal, hospital_id, body))


@router.delete("/{hospital_id}/staff/{membership_id}", status_code=204,
               summary="End a staff membership")
async def remove_staff(
    hospital_id: str, membership_id: str, runtime: Runtime,
    principal: Principal = Manager,
) -> Response:
    """Remove a membership (the registrant or an admin; 404 unknown membership);
    ``staff.removed`` ends the user's access to the hospital's resources."""
    await service.remove_staff(runtime, principal, hospital_id, membership_id)
    return Response(status_code=204)
