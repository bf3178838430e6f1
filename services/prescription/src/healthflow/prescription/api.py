"""HTTP routes under ``/api/v1/prescriptions`` (thin: parse, declare the permission,
call a use case, shape the answer).

* ``POST ""`` — prescribe in an encounter the caller conducts (issued at once, or a
  draft); ``POST /{id}/issue`` — issue a draft; ``POST /{id}/cancel`` and
  ``/{id}/entered-in-error`` — stop it; the prescriber only;
* ``POST /checks`` — the safety checks alone, nothing written;
* ``POST /{id}/dispense`` — a pharmacist hands some out;
* ``GET ""?patient_id=`` and ``GET /{id}`` — read; ``GET /{id}/pdf`` — the printable
  PDF, its SHA-256 signed;
* ``GET /verify/{id}`` — public: check a printed prescription.
* ``GET /keys`` — public: the JWK Set of the keys that sign (current and rotated out).

Ownership and care-relationship checks live in :mod:`.service`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from healthflow.common.auth import Principal, require, require_any
from healthflow.common.http import get_runtime
from healthflow.common.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from healthflow.common.permissions import Permission as P
from healthflow.common.service import ServiceRuntime
from healthflow.prescription import printed, service
from healthflow.prescription.domain import Status
from healthflow.prescription.schemas import (
    CheckIn,
    CheckOut,
    DispenseIn,
    IssueIn,
    KeySetOut,
    PrescriptionIn,
    PrescriptionOut,
    StopIn,
    VerificationOut,
)

Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]
Id = Annotated[str, Path(max_length=64)]
READERS = (P.PRESCRIPTIONS_READ_OWN, P.PRESCRIPTIONS_READ_TREATED, P.PRESCRIPTIONS_DISPENSE)

router = APIRouter(prefix="/api/v1/prescriptions", tags=["prescriptions"])
keys_router = APIRouter(prefix="/api/v1/prescriptions/keys", tags=["prescriptions"])
routers = [keys_router, router]


@router.post("", status_code=201, summary="Prescribe in an encounter you conduct")
async def prescribe(runtime: Runtime, body: PrescriptionIn, response: Response,
                    principal: Principal = require(P.PRESCRIPTIONS_WRITE_TREATED)
                    ) -> PrescriptionOut:
    """Issued (``active``) at once unless ``draft``. 409 ``prescription-safety`` names the
    allergy and duplicate conflicts; send ``override.reason`` to issue anyway. 422
    ``unknown-encounter``; 403 ``not-your-encounter``."""
    doc = await service.prescribe(runtime, principal, body)
    response.headers["Location"] = f"{router.prefix}/{doc['_id']}"
    return PrescriptionOut.from_document(doc)


@router.post("/checks", summary="The safety checks alone (nothing is written)")
async def check(runtime: Runtime, body: CheckIn,
                principal: Principal = require(P.PRESCRIPTIONS_WRITE_TREATED)) -> CheckOut:
    """The allergy and duplicate conflicts issuing would meet, before writing one."""
    issues = await service.check(runtime, principal, body)
    return CheckOut(conflicts=[i.as_json() for i in issues])


@router.get("", summary="A patient's prescriptions, oldest first, a page at a time")
async def list_prescriptions(
        runtime: Runtime, patient_id: Annotated[str, Query(min_length=1, max_length=64)],
        cursor: Annotated[str | None, Query(max_length=512)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
        principal: Principal = require_any(*READERS)) -> Page[PrescriptionOut]:
    """Pharmacists see the active ones; the patient all but drafts; ``next_cursor`` of
    the last page is null."""
    docs, next_cursor = await service.list_for_patient(runtime, principal, patient_id,
                                                       cursor=cursor, limit=limit)
    return Page[PrescriptionOut](items=[PrescriptionOut.from_document(d) for d in docs],
                                 next_cursor=next_cursor)


@router.get("/{prescription_id}", summary="One prescription")
async def get_prescription(runtime: Runtime, prescription_id: Id,
                           principal: Principal = require_any(*READERS)) -> PrescriptionOut:
    """404 for another patient's; 403 ``not-treating``."""
    return PrescriptionOut.from_document(
        await service.read(runtime, principal, prescription_id))


@router.post("/{prescription_id}/issue", summary="Issue a draft (after the safety checks)")
async def issue(runtime: Runtime, prescription_id: Id, body: IssueIn,
                principal: Principal = require(P.PRESCRIPTIONS_WRITE_TREATED)
                ) -> PrescriptionOut:
    """409 ``prescription-safety`` without an override; 409 ``prescription-state``."""
    return PrescriptionOut.from_document(
        await service.issue(runtime, principal, prescription_id, body.override))


@router.post("/{prescription_id}/cancel", summary="Cancel (stop) a prescription")
async def cancel(runtime: Runtime, prescription_id: Id, body: StopIn,
                 principal: Principal = require(P.PRESCRIPTIONS_WRITE_TREATED)
                 ) -> PrescriptionOut:
    """By its prescriber; 409 ``prescription-state`` unless draft or active."""
    return PrescriptionOut.from_document(await service.stop(
        runtime, principal, prescription_id, Status.CANCELLED, body.reason))


@router.post("/{prescription_id}/entered-in-error", summary="Withdraw a prescription")
async def withdraw(runtime: Runtime, prescription_id: Id, body: StopIn,
                   principal: Principal = require(P.PRESCRIPTIONS_WRITE_TREATED)
                   ) -> PrescriptionOut:
    """Status ``entered-in-error``; nothing is deleted."""
    return PrescriptionOut.from_document(await service.stop(
        runtime, principal, prescription_id, Status.ENTERED_IN_ERROR, body.reason))


@router.post("/{prescription_id}/dispense", summary="Dispense some of a prescription")
async def dispense(runtime: Runtime, prescription_id: Id, body: DispenseIn,
                   principal: Principal = require(P.PRESCRIPTIONS_DISPENSE)) -> PrescriptionOut:
    """In the prescribed unit; 409 ``over-dispense`` beyond quantity × (1 + repeats);
    ``completed`` once all is dispensed."""
    return PrescriptionOut.from_document(
        await service.dispense(runtime, principal, prescription_id, body))


@router.get("/{prescription_id}/pdf", summary="The printable prescription (PDF, signed)",
            response_class=Response,
            responses={200: {"content": {"application/pdf": {}}}})
async def pdf(runtime: Runtime, prescription_id: Id,
              principal: Principal = require_any(*READERS)) -> Response:
    """With a QR code of its verification address (under the configured
    ``public_base_url``); 409 ``prescription-state`` unless active or completed."""
    document = await printed.printable(runtime, principal, prescription_id)
    return Response(document, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="prescription-{prescription_id}.pdf"'})


@keys_router.get("", summary="The public keys that sign prescriptions (JWK Set, public)")
async def key_set(runtime: Runtime) -> KeySetOut:
    """RFC 7517 §5 JWK Set of Ed25519 keys (RFC 8037), the current signing key first and
    every key rotated out after it: a signature's ``kid`` names its key."""
    return KeySetOut.model_validate({"keys": await printed.key_set(runtime)})


@router.get("/verify/{prescription_id}", summary="Check a printed prescription (public)")
async def verify(runtime: Runtime, prescription_id: Id,
                 sha256: Annotated[str | None, Query(pattern="^[0-9a-fA-F]{64}$")] = None
                 ) -> VerificationOut:
    """Status, the signed hashes of its PDFs and the public key; ``?sha256=`` of a PDF
    answers ``matches``. 404 unless printed."""
    return VerificationOut.model_validate(
        await printed.verification(runtime, prescription_id, sha256))
