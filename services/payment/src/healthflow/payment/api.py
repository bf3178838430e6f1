"""HTTP routes of the payment service under ``/api/v1/payments``.

* ``GET /checkout/{appointment_id}``: the appointment's payment with its client secret
  (the paying patient) or without (the accountants of its hospital,
  ``payments:read_hospital``; the platform, ``payments:read_any``).
* ``GET ""``: the caller's payments (staff: those they may read, ``?patient_id=``).
* ``POST /webhooks/stripe``: public, accepted only with a valid ``Stripe-Signature``.

Billing (:mod:`.invoices`, :mod:`.billing`), FHIR names in the paths:

* ``POST /api/v1/charge-items`` (the encounter's doctor, or its hospital's finance),
  ``GET /api/v1/charge-items`` (keyset pages, newest first), ``GET /{id}``;
* ``GET /api/v1/invoices`` (keyset pages, newest first), ``GET /{id}``, ``GET /{id}/pdf``;
  finance: ``POST /api/v1/invoices`` (issue), ``POST /{id}/payments`` (desk),
  ``POST /{id}/cancel``; an invoice's credit notes ``GET /{id}/credit-notes`` and the
  PDF of one ``GET /{id}/credit-notes/{note_id}/pdf`` (:mod:`.credit_notes`);
* ``GET /api/v1/billing/summary`` (a patient), ``GET /api/v1/billing/revenue`` (a
  hospital, finance).

Insurance (:mod:`.insurance`; FHIR R4 resources at ``.../fhir``, ``application/fhir+json``):

* ``POST /api/v1/coverages`` (the patient's own), ``GET ""``, ``GET /{id}``,
  ``GET /{id}/fhir`` (Coverage), ``POST /{id}/cancel``;
* ``POST /api/v1/claims`` (an invoice's patient, or its hospital's finance: submitted
  and adjudicated at once), ``GET ""`` (keyset pages), ``GET /{id}``, ``GET /{id}/fhir``
  (a Bundle of Claim, ClaimResponse, Coverage).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from healthflow.common.auth import Principal, require, require_any
from healthflow.common.blobs import BlobStore
from healthflow.common.errors import BadRequest
from healthflow.common.http import get_runtime
from healthflow.common.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from healthflow.common.permissions import Permission as P
from healthflow.common.service import ServiceRuntime
from healthflow.payment import (
    billing,
    checkouts,
    credit_notes,
    eligibility,
    fhir,
    insurance,
    invoices,
    service,
    store,
)
from healthflow.payment.domain import ChargeItemStatus
from healthflow.payment.insurance_schemas import ClaimIn, ClaimOut, CoverageIn, CoverageOut
from healthflow.payment.payment_schemas import PaymentOut, WebhookAck
from healthflow.payment.schemas import (
    BillingSummaryOut,
    ChargeItemIn,
    ChargeItemOut,
    InvoiceCheckoutOut,
    InvoiceIssueIn,
    InvoiceOut,
    InvoicePaymentIn,
    RevenueOut,
)

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])

invoices_router = APIRouter(prefix="/api/v1/invoices", tags=["invoices"])
charge_items_router = APIRouter(prefix="/api/v1/charge-items", tags=["invoices"])
billing_router = APIRouter(prefix="/api/v1/billing", tags=["invoices"])
coverages_router = APIRouter(prefix="/api/v1/coverages", tags=["insurance"])
claims_router = APIRouter(prefix="/api/v1/claims", tags=["insurance"])
FHIR_JSON = "application/fhir+json"


def get_blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.blobs
    return blobs


Runtime = Annotated[ServiceRuntime, Depends(get_runtime)]
Blobs = Annotated[BlobStore, Depends(get_blobs)]
Id = Annotated[str, Path(max_length=64)]
Reader = require_any(P.PAYMENTS_READ_OWN, P.PAYMENTS_READ_HOSPITAL, P.PAYMENTS_READ_ANY)
BillingReader = require_any(P.INVOICES_READ_OWN, P.INVOICES_MANAGE_HOSPITAL)
Finance = require(P.INVOICES_MANAGE_HOSPITAL)
Insured = require(P.COVERAGES_MANAGE_OWN)
InsuranceReader = require_any(P.COVERAGES_MANAGE_OWN, P.INVOICES_MANAGE_HOSPITAL)


@router.get("/checkout/{appointment_id}", summary="The payment of an appointment")
async def checkout(runtime: Runtime,
                   appointment_id: Annotated[str, Path(max_length=64)],
                   principal: Principal = Reader) -> PaymentOut:
    """404 until the booking has reached this service (retry), and for other patients'."""
    doc = await service.checkout(runtime, principal, appointment_id)
    return PaymentOut.from_document(doc, with_secret=doc["patient_id"] == principal.subject)


@router.get("", summary="Payments, newest first (own; finance: their hospitals'; admin: any)")
async def list_payments(runtime: Runtime, principal: Principal = Reader,
                        patient_id: Annotated[str | None, Query(max_length=64)] = None,
                        review: Annotated[bool | None, Query(
                            description="only those flagged for review (true) or not")] = None,
                        limit: Annotated[int, Query(ge=1, le=100)] = 50) -> list[PaymentOut]:
    docs = await service.list_payments(runtime, principal, patient_id, limit, review=review)
    return [PaymentOut.from_document(d) for d in docs]


@router.post("/webhooks/stripe", summary="Stripe webhook (signed)")
async def stripe_webhook(request: Request, runtime: Runtime,
                         stripe_signature: Annotated[str | None, Header()] = None
                         ) -> WebhookAck:
    """Public, but applied only when ``Stripe-Signature`` verifies over the raw body
    (``stripe.Webhook.construct_event``); 400 otherwise. A repeat answers 200
    ``duplicate`` so that Stripe stops retrying."""
    outcome = await service.apply_webhook(runtime, await request.body(), stripe_signature)
    return WebhookAck(outcome=outcome)


@charge_items_router.post("", status_code=201, summary="Charge a service in an encounter")
async def add_charge_item(runtime: Runtime, body: ChargeItemIn,
                          principal: Principal = require(P.CHARGE_ITEMS_WRITE)
                          ) -> ChargeItemOut:
    """The encounter's doctor, or finance of its hospital (403 otherwise); 404 until the
    encounter is known here; 422 for bad money (integers of minor units only)."""
    doc = await invoices.add_charge_item(runtime, principal, **body.model_dump())
    return ChargeItemOut.from_document(doc)


@charge_items_router.get("", summary="Charge items, newest first (own; finance: theirs)")
async def list_charge_items(
        runtime: Runtime, principal: Principal = BillingReader,
        patient_id: Annotated[str | None, Query(max_length=64)] = None,
        hospital_id: Annotated[str | None, Query(max_length=64)] = None,
        status: ChargeItemStatus | None = None,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[ChargeItemOut]:
    """``status=billable``: what is still to be invoiced."""
    docs, next_cursor = await invoices.list_charge_items(
        runtime, principal, patient_id=patient_id, hospital_id=hospital_id, status=status,
        cursor=cursor, limit=limit)
    return Page[ChargeItemOut](items=[ChargeItemOut.from_document(d) for d in docs],
                               next_cursor=next_cursor)


@charge_items_router.get("/{item_id}", summary="One charge item (its patient, finance)")
async def get_charge_item(runtime: Runtime, item_id: Id,
                          principal: Principal = BillingReader) -> ChargeItemOut:
    return ChargeItemOut.from_document(
        await invoices.get_charge_item(runtime, principal, item_id))


@invoices_router.get("", summary="Invoices, newest first (own; finance: their hospitals')")
async def list_invoices(
        runtime: Runtime, principal: Principal = BillingReader,
        patient_id: Annotated[str | None, Query(max_length=64)] = None,
        hospital_id: Annotated[str | None, Query(max_length=64)] = None,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[InvoiceOut]:
    docs, next_cursor = await invoices.list_invoices(
        runtime, principal, patient_id=patient_id, hospital_id=hospital_id, cursor=cursor,
        limit=limit)
    return Page[InvoiceOut](items=[InvoiceOut.from_document(d) for d in docs],
                            next_cursor=next_cursor)


@invoices_router.post("", status_code=201, summary="Issue an invoice (finance)")
async def issue_invoice(runtime: Runtime, body: InvoiceIssueIn,
                        principal: Principal = Finance) -> InvoiceOut:
    """Of every billable charge item of the patient at the hospital, numbered next in
    the hospital's series; 422 when there is nothing to bill."""
    doc = await invoices.issue_for_patient(
        runtime, principal, patient_id=body.patient_id, hospital_id=body.hospital_id,
        tax_rate=service.settings_of(runtime).tax_rate)
    return InvoiceOut.from_document(doc)


@invoices_router.get("/{invoice_id}", summary="One invoice (its patient, finance)")
async def get_invoice(runtime: Runtime, invoice_id: Id,
                      principal: Principal = BillingReader) -> InvoiceOut:
    return InvoiceOut.from_document(await invoices.get(runtime, principal, invoice_id))


@invoices_router.get("/{invoice_id}/pdf", summary="The printable invoice (PDF)",
                     response_class=Response,
                     responses={200: {"content": {"application/pdf": {}}}})
async def invoice_pdf(runtime: Runtime, blobs: Blobs, invoice_id: Id,
                      principal: Principal = BillingReader) -> Response:
    document = await invoices.pdf(runtime, blobs, principal, invoice_id)
    return Response(document, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="invoice-{invoice_id}.pdf"',
        "Cache-Control": "no-store"})


@invoices_router.post("/{invoice_id}/payments", summary="Record a desk payment (finance)")
async def record_payment(runtime: Runtime, invoice_id: Id, body: InvoicePaymentIn,
                         principal: Principal = Finance) -> InvoiceOut:
    """409 for a cancelled or balanced invoice; 422 for more than is owed."""
    return InvoiceOut.from_document(
        await invoices.record_payment(runtime, principal, invoice_id, body.amount))


@invoices_router.post("/{invoice_id}/checkout", status_code=201,
                      summary="Pay what remains of one's invoice by card")
async def invoice_checkout(runtime: Runtime, invoice_id: Id, response: Response,
                           principal: Principal = require(P.INVOICES_READ_OWN)
                           ) -> InvoiceCheckoutOut:
    """A PaymentIntent for exactly the outstanding patient share (201; 200 with the same
    intent when repeated while that amount is owed); 404 for another's invoice; 409 when
    nothing is owed. The webhook records the payment on the invoice (``invoice.paid``)."""
    doc, opened = await checkouts.open_invoice_checkout(
        runtime, service.provider(runtime), principal, invoice_id)
    if not opened:
        response.status_code = 200
    return InvoiceCheckoutOut.model_validate(
        {"id": doc["_id"], **{k: v for k, v in doc.items() if k != "_id"}})


@invoices_router.get("/{invoice_id}/credit-notes",
                     summary="The credit notes of an invoice (its refunds)")
async def invoice_credit_notes(runtime: Runtime, invoice_id: Id,
                               principal: Principal = BillingReader
                               ) -> list[credit_notes.CreditNoteOut]:
    """Oldest first; 404 for an invoice not the caller's to see."""
    return [credit_notes.out(d)
            for d in await credit_notes.of_invoice(runtime, principal, invoice_id)]


@invoices_router.get("/{invoice_id}/credit-notes/{note_id}/pdf",
                     summary="The printable credit note (PDF)", response_class=Response,
                     responses={200: {"content": {"application/pdf": {}}}})
async def credit_note_pdf(runtime: Runtime, blobs: Blobs, invoice_id: Id, note_id: Id,
                          principal: Principal = BillingReader) -> Response:
    """Its patient and the finance of its hospital, as the invoice; 404 for anyone
    else and for a note of another invoice."""
    document = await credit_notes.pdf(runtime, blobs, principal, invoice_id, note_id)
    return Response(document, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="credit-note-{note_id}.pdf"',
        "Cache-Control": "no-store"})


@invoices_router.post("/{invoice_id}/cancel", summary="Void an unpaid invoice (finance)")
async def cancel_invoice(runtime: Runtime, invoice_id: Id,
                         principal: Principal = Finance) -> InvoiceOut:
    """409 once anything was paid on it; its number is not re-used."""
    return InvoiceOut.from_document(await invoices.cancel(runtime, principal, invoice_id))


@billing_router.get("/summary", summary="A patient's billing summary")
async def summary(runtime: Runtime, principal: Principal = BillingReader,
                  patient_id: Annotated[str | None, Query(max_length=64)] = None
                  ) -> BillingSummaryOut:
    return BillingSummaryOut.model_validate(
        await billing.patient_summary(runtime, principal, patient_id))


@billing_router.get("/revenue", summary="A hospital's revenue by period, doctor, service")
async def revenue(runtime: Runtime,
                  hospital_id: Annotated[str, Query(min_length=1, max_length=64)],
                  start: Annotated[datetime, Query(alias="from")],
                  end: Annotated[datetime, Query(alias="to")],
                  period: Literal["day", "month", "year"] = "month",
                  principal: Principal = Finance) -> RevenueOut:
    """Invoices issued in ``[from, to)`` (aware times, RFC 3339); 400 for naive times or
    an empty range."""
    if start.tzinfo is None or end.tzinfo is None or end <= start:
        raise BadRequest("from and to must be aware times (RFC 3339 with an offset), "
                         "from before to")
    return RevenueOut.model_validate(await billing.hospital_revenue(
        runtime, principal, hospital_id=hospital_id, start=start, end=end, period=period))


@coverages_router.post("", status_code=201, summary="Add a coverage (the patient's own)")
async def add_coverage(runtime: Runtime, body: CoverageIn,
                       principal: Principal = Insured) -> CoverageOut:
    """422 for a period ending before it starts."""
    return CoverageOut.from_document(
        await insurance.add_coverage(runtime, principal, **body.model_dump()))


@coverages_router.get("", summary="A patient's coverages (own; finance: their patients')")
async def list_coverages(runtime: Runtime, principal: Principal = InsuranceReader,
                         patient_id: Annotated[str | None, Query(max_length=64)] = None
                         ) -> list[CoverageOut]:
    """403 for another patient's, unless a hospital of the caller's finance invoiced
    them."""
    docs = await insurance.list_coverages(runtime, principal, patient_id)
    return [CoverageOut.from_document(d) for d in docs]


@coverages_router.get("/{coverage_id}", summary="One coverage")
async def get_coverage(runtime: Runtime, coverage_id: Id,
                       principal: Principal = InsuranceReader) -> CoverageOut:
    return CoverageOut.from_document(
        await insurance.get_coverage(runtime, principal, coverage_id))


@coverages_router.post("/{coverage_id}/eligibility", status_code=201,
                       summary="Is the coverage in force? (CoverageEligibilityRequest)")
async def check_eligibility(runtime: Runtime, coverage_id: Id,
                            body: eligibility.EligibilityIn | None = None,
                            principal: Principal = Insured) -> eligibility.EligibilityOut:
    """The payer's CoverageEligibilityResponse through the clearinghouse, kept; 404 for
    another's coverage; 503 without a clearinghouse."""
    service_date = body.service_date if body else None
    return eligibility.out(await eligibility.check(runtime, principal, coverage_id,
                                                   service_date))


@coverages_router.get("/{coverage_id}/fhir", summary="One coverage as FHIR R4 Coverage",
                      response_class=Response,
                      responses={200: {"content": {FHIR_JSON: {}}}})
async def coverage_fhir(runtime: Runtime, coverage_id: Id,
                        principal: Principal = InsuranceReader) -> Response:
    doc = await insurance.get_coverage(runtime, principal, coverage_id)
    return Response(fhir.dumps(fhir.coverage(doc)), media_type=FHIR_JSON)


@coverages_router.post("/{coverage_id}/cancel", summary="Withdraw a coverage (own)")
async def cancel_coverage(runtime: Runtime, coverage_id: Id,
                          principal: Principal = Insured) -> CoverageOut:
    return CoverageOut.from_document(
        await insurance.cancel_coverage(runtime, principal, coverage_id))


@claims_router.post("", status_code=201, summary="Claim an invoice from the payer")
async def submit_claim(runtime: Runtime, body: ClaimIn,
                       principal: Principal = InsuranceReader) -> ClaimOut:
    """Submitted through the clearinghouse and adjudicated: the response says what the
    payer covers; the invoice then owes the rest. 404 for an invoice not the caller's;
    422 for a coverage not of its patient; 409 when paid on, cancelled or claimed."""
    return ClaimOut.from_document(await insurance.submit_claim(
        runtime, principal, invoice_id=body.invoice_id, coverage_id=body.coverage_id))


@claims_router.get("", summary="Claims, newest first (own; finance: their hospitals')")
async def list_claims(
        runtime: Runtime, principal: Principal = InsuranceReader,
        patient_id: Annotated[str | None, Query(max_length=64)] = None,
        hospital_id: Annotated[str | None, Query(max_length=64)] = None,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[ClaimOut]:
    docs, next_cursor = await insurance.list_claims(
        runtime, principal, patient_id=patient_id, hospital_id=hospital_id, cursor=cursor,
        limit=limit)
    return Page[ClaimOut](items=[ClaimOut.from_document(d) for d in docs],
                          next_cursor=next_cursor)


@claims_router.get("/{claim_id}", summary="One claim with its adjudication")
async def get_claim(runtime: Runtime, claim_id: Id,
                    principal: Principal = InsuranceReader) -> ClaimOut:
    return ClaimOut.from_document(await insurance.get_claim(runtime, principal, claim_id))


@claims_router.get("/{claim_id}/fhir", summary="A claim as a FHIR R4 Bundle (Claim, "
                   "ClaimResponse, Coverage)", response_class=Response,
                   responses={200: {"content": {FHIR_JSON: {}}}})
async def claim_fhir(runtime: Runtime, claim_id: Id,
                     principal: Principal = InsuranceReader) -> Response:
    doc = await insurance.get_claim(runtime, principal, claim_id)
    coverage = await runtime.db[store.COVERAGES].find_one({"_id": doc["coverage_id"]})
    return Response(fhir.dumps(fhir.claim_bundle(doc, coverage)), media_type=FHIR_JSON)


routers = [router, charge_items_router, invoices_router, billing_router, coverages_router,
           claims_router]
