"""The payment service's composition root: the runtime, the Stripe adapter, the
clearinghouse (the payer sandbox), its consumer, the hold-expiry, billing, credit-note
and credit-note PDF job workers, the reconciliation loop, the blob store (invoice and
credit-note PDFs, receipts) and the routes."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from healthflow.common import migrations
from healthflow.common.blobs import BlobStore
from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.events.transport import Transport
from healthflow.common.http import create_service_app
from healthflow.common.jobs import Handler, Job, JobWorker
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import load_settings
from healthflow.common.workers import Hooks, Loop
from healthflow.contracts.appointment import AppointmentBooked
from healthflow.payment import (
    api,
    checkout_closing,
    credit_notes,
    finance_api,
    handlers,
    invoices,
    reconcile,
    refunds,
    service,
    store,
)
from healthflow.payment.clearinghouse import PayerSandbox
from healthflow.payment.provider import Stripe
from healthflow.payment.settings import Settings


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> FastAPI:
    """The payment service app (settings from ``PAYMENT_*`` when not given)."""
    settings = settings or load_settings(Settings)
    stripe = Stripe(settings)
    runtime = ServiceRuntime(settings, indexes=store.INDEXES,
                             handlers=handlers.make_handlers(settings),
                             transport=transport)
    runtime.state["stripe"] = stripe
    # the only clearinghouse built: production refuses it (Settings.own_production_problems)
    runtime.state["clearinghouse"] = (PayerSandbox(settings.payer_sandbox_plans)
                                      if settings.clearinghouse == "sandbox" else None)

    add_stripe_jobs(runtime, stripe, settings)

    async def bill(uow: UnitOfWork, job: Job) -> None:
        await invoices.bill_payment(uow, job.payload["payment_id"], settings.tax_rate)

    # one at a time: every invoice of a hospital increments the same counter
    runtime.add_worker(JobWorker(runtime, invoices.BILLING, bill, lease=30.0, concurrency=1,
                                 interval=0.25).loop())
    async def credit(uow: UnitOfWork, job: Job) -> None:
        await credit_notes.issue_for_refund(uow, job.payload["payment_id"],
                                            job.payload["refund_id"])

    # one at a time too: a hospital's credit notes share one counter
    runtime.add_worker(JobWorker(runtime, credit_notes.CREDIT, credit, lease=30.0,
                                 concurrency=1, interval=0.25).loop())
    window = timedelta(hours=settings.reconcile_window_hours)

    async def reconcile_pass() -> None:
        await reconcile.reconcile(runtime, stripe, window=window)

    runtime.add_worker(Loop("payment-reconciliation", reconcile_pass,
                            interval=settings.reconcile_interval_seconds))
    blobs = BlobStore(settings)
    runtime.add_worker(Hooks("blobs", blobs.start, blobs.close))

    async def print_credit_note(uow: UnitOfWork, job: Job) -> None:
        await credit_notes.print_pdf(uow, blobs, job.payload["credit_note_id"])

    # after the blob store's start: the job puts the PDF there
    runtime.add_worker(JobWorker(runtime, credit_notes.PDF, print_credit_note, lease=60.0,
                                 concurrency=2, interval=0.25).loop())
    app = create_service_app(runtime, routers=[*api.routers, *finance_api.routers],
                             title="HealthFlow payment",
                             body_limits={("PUT", path): settings.receipt_max_bytes
                                          for path in finance_api.RECEIPT_PATHS},
                             description="Payments for appointments through Stripe; charge "
                             "items and invoices (FHIR ChargeItem, Invoice) with their PDFs; "
                             "billing summaries; coverages and claims (FHIR Coverage, Claim, "
                             "ClaimResponse) through a clearinghouse; a hospital's books "
                             "(expenses, other incomes, monthly profit and loss).")
    app.state.blobs = blobs
    return app


def add_stripe_jobs(runtime: ServiceRuntime, stripe: Stripe, settings: Settings) -> None:
    """The workers of the jobs that call Stripe (checkout, hold expiry, refund, closing a
    stale invoice checkout), retried
    with backoff through an outage and then dead (``make jobs``), and the start-up
    placing of older payments in their hospital."""
    def stripe_jobs(queue: str, handler: Handler, interval: float) -> Loop:
        return JobWorker(runtime, queue, handler, lease=60.0, interval=interval,
                         retry_base=settings.stripe_job_retry_base_seconds,
                         max_attempts=settings.stripe_job_max_attempts).loop()

    hold = service.hold_of(settings)

    async def open_checkout(uow: UnitOfWork, job: Job) -> None:
        await service.open_checkout(uow, stripe,
                                    AppointmentBooked.model_validate(job.payload["booked"]),
                                    hold, settings.eligibility_required_hospitals)

    runtime.add_worker(stripe_jobs(service.CHECKOUT, open_checkout, 0.25))

    async def expire(uow: UnitOfWork, job: Job) -> None:
        booked = job.payload.get("booked")
        await service.expire_hold(uow, stripe, job.payload["payment_id"],
                                  AppointmentBooked.model_validate(booked) if booked else None)

    runtime.add_worker(stripe_jobs(service.HOLD_EXPIRY, expire, 1.0))
    policy = refunds.policy_of(settings)

    async def refund(uow: UnitOfWork, job: Job) -> None:
        await refunds.run_refund_job(uow, stripe, policy, job.payload)

    runtime.add_worker(stripe_jobs(refunds.REFUND, refund, 0.25))

    async def close_checkout(uow: UnitOfWork, job: Job) -> None:
        await checkout_closing.close_checkout(uow, stripe, job.payload["checkout_id"])

    runtime.add_worker(stripe_jobs(checkout_closing.CLOSE, close_checkout, 0.5))

    async def backfill() -> None:
        await migrations.apply_once(runtime.db, "payments.hospital_id",
                                    lambda: service.backfill_hospitals(runtime))
        await migrations.apply_once(runtime.db, "charge_items.online_hospital",
                                    lambda: service.backfill_charge_item_hospitals(runtime))

    async def nothing() -> None:
        return None

    runtime.add_worker(Hooks("payment-hospitals", backfill, nothing))
