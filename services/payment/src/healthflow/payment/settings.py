"""Settings of the payment service (environment prefix ``PAYMENT_``)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from healthflow.common.settings import ServiceSettings, env_name
from healthflow.common.topology import SERVICES
from healthflow.payment.clearinghouse import PlanRule

SANDBOX_PLANS = {"standard": PlanRule(covered_basis_points=8000, copay=1000),
                 "premium": PlanRule(covered_basis_points=10_000)}
"""The sandbox payer's plans when none are configured (EUR)."""
RECEIPT_CEILING = 25 * 1024 * 1024
"""The largest receipt any configuration takes (bytes): the gateway's ``document`` group's
max body (``healthflow.gateway.routes.POLICIES``)."""


class Settings(ServiceSettings):
    """Stripe is reached only through the official ``stripe`` library: at
    ``stripe_api_base`` when set (the local localstripe the runner starts), else at
    Stripe itself. The webhook secret is the endpoint's ``whsec_…`` signing secret; it
    has no default (a known one would let anyone forge a payment): until it is set, the
    webhook route answers 503 (``make run`` and the test platforms set it).

    Claims go through ``clearinghouse``: ``sandbox`` (the default: the payer sandbox,
    :class:`healthflow.payment.clearinghouse.PayerSandbox`, adjudicating by
    ``payer_sandbox_plans``, JSON per plan code, e.g.
    ``PAYMENT_PAYER_SANDBOX_PLANS='{"basic": {"covered_basis_points": 7000, "copay": 500,
    "currency": "EUR", "excluded_codes": ["cosmetic"], "excluded_diagnoses": ["Z41"],
    "diagnosis_required": true}}'``) or ``none`` (claims are
    refused with 503: what production sets until a real clearinghouse is built).

    ``HEALTHFLOW_ENV=production`` also refuses (:meth:`own_production_problems`) an unset
    webhook secret, a ``stripe_api_base`` on a local host (localstripe) and the payer
    sandbox."""

    model_config = SettingsConfigDict(
        env_prefix="PAYMENT_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = "payment"
    port: int = SERVICES["payment"].port
    stripe_api_key: SecretStr = SecretStr("sk_test_localstripe")
    stripe_api_base: str | None = None
    stripe_webhook_secret: SecretStr | None = None
    # Stripe-Signature timestamps older than this many seconds are refused (replay window).
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=3600)
    # An unpaid hold on a slot ends this many seconds after the checkout opened.
    hold_seconds: int = Field(default=900, ge=1, le=86400)
    # Refunds when an appointment is cancelled (healthflow.payment.domain.RefundPolicy):
    # a patient cancelling at least this many hours ahead gets everything back, later
    # this percentage (0: nothing); the doctor or the hospital cancelling: everything.
    refund_full_window_hours: int = Field(default=24, ge=0, le=24 * 30)
    late_refund_percent: int = Field(default=0, ge=0, le=100)
    # Reconciliation: every this many seconds, the unpaid payments opened in the last
    # ``reconcile_window_hours`` are compared with their PaymentIntents at Stripe.
    reconcile_interval_seconds: float = Field(default=300.0, gt=0)
    reconcile_window_hours: int = Field(default=48, ge=1, le=24 * 30)

    # Stripe HTTP calls: seconds before a request is given up, and how many times the
    # stripe library retries one (network errors, 409/429/5xx; exponential backoff).
    stripe_timeout_seconds: float = Field(default=10.0, gt=0, le=80)
    stripe_max_retries: int = Field(default=2, ge=0, le=5)
    # The jobs that call Stripe (checkout, refund, hold expiry) retry after
    # ``stripe_job_retry_base_seconds`` · 2^(attempt-1) (at most an hour) and are dead
    # (``make jobs``) after ``stripe_job_max_attempts``: 12 outlast a ~2.4 h outage.
    stripe_job_retry_base_seconds: float = Field(default=5.0, gt=0, le=3600)
    stripe_job_max_attempts: int = Field(default=12, ge=1, le=50)

    # Invoices (healthflow.payment.domain.split_tax): the tax contained in prices, in
    # basis points (700 = 7 %), per issuing hospital id (JSON, e.g.
    # PAYMENT_TAX_RATES='{"<hospital id>": 700}'); others, and the platform, the default.
    tax_rates: dict[str, Annotated[int, Field(ge=0, le=10_000)]] = Field(default_factory=dict)
    default_tax_basis_points: int = Field(default=0, ge=0, le=10_000)

    # Insurance claims: the clearinghouse (only the local payer sandbox is built) and the
    # sandbox payer's rules per plan code.
    clearinghouse: Literal["sandbox", "none"] = "sandbox"
    payer_sandbox_plans: dict[str, PlanRule] = Field(
        default_factory=lambda: dict(SANDBOX_PLANS))

    # Receipts of expenses and incomes (PUT …/{id}/receipt, a raw body streamed to S3):
    # the largest accepted, in bytes (a scan or a phone photo is often 2–10 MB). At most
    # the receipt blob use's 25 MiB, which is the gateway's ``document`` group's max body
    # (the edge must never refuse what the service takes); every other route keeps
    # ``max_body_bytes`` (1 MiB).
    receipt_max_bytes: int = Field(default=RECEIPT_CEILING, ge=1, le=RECEIPT_CEILING)

    # Hospitals (ids) that book a paid consultation only for a patient holding a coverage
    # verified in force on its day (POST /coverages/{id}/eligibility); others are refused.
    eligibility_required_hospitals: frozenset[str] = frozenset()

    def tax_rate(self, hospital_id: str | None) -> int:
        """The tax rate in basis points of invoices ``hospital_id`` issues."""
        return self.tax_rates.get(hospital_id or "", self.default_tax_basis_points)

    def own_production_problems(self) -> list[str]:
        """An unset webhook secret; a Stripe API base on a loopback or local host; the
        payer sandbox as the clearinghouse."""
        problems = []
        if self.stripe_webhook_secret is None or not self.stripe_webhook_secret.get_secret_value():
            problems.append(f"{env_name(type(self), 'stripe_webhook_secret')}: is not set "
                            "(no webhook could be verified)")
        if self.stripe_api_base and _is_local(self.stripe_api_base):
            problems.append(f"{env_name(type(self), 'stripe_api_base')}: points at a local "
                            f"server ({self.stripe_api_base}), not Stripe")
        if self.clearinghouse == "sandbox":
            problems.append(f"{env_name(type(self), 'clearinghouse')}: is the payer sandbox "
                            "(claims adjudicated by local rules, not by a payer); set it to "
                            "none (no real clearinghouse is built yet)")
        return problems


def _is_local(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host in ("localhost", "") or host.endswith(".localhost") or "localstripe" in host:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified
