"""The runner's local stand-ins for outside providers, each started only when the
service that needs it runs and no real provider is configured:

* :func:`start_stripe` — localstripe (:class:`~healthflow.devkit.embedded.EmbeddedStripe`)
  for the payment service, unless ``PAYMENT_STRIPE_API_BASE`` is set; on
  ``HEALTHFLOW_STRIPE_PORT``/8420 (a free port when taken), its webhooks signed with
  ``PAYMENT_STRIPE_WEBHOOK_SECRET`` (or a generated secret) and sent to the gateway;
* :func:`start_janus` — Janus (:class:`~healthflow.devkit.janus.EmbeddedJanus`) for the
  teleconference service, unless ``TELECONFERENCE_JANUS_URL`` is set; its client API on
  ``HEALTHFLOW_JANUS_PORT``/8088 and admin API on ``HEALTHFLOW_JANUS_ADMIN_PORT``/7088
  (free ports when taken), configuration and recordings under ``<var>/janus``.

Each puts the variables that point its service at it into ``os.environ`` (the services
are started afterwards) and reports on the console; one that will not start is
reported red and the rest of the platform runs without it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from healthflow.devkit.config import Config
from healthflow.devkit.console import Console
from healthflow.devkit.discovery import HOST, Component
from healthflow.devkit.embedded import EmbeddedStripe, free_port, port_open
from healthflow.devkit.janus import EmbeddedJanus


def _port(variable: str, default: int) -> int:
    wanted = int(os.environ.get(variable) or default)
    return free_port() if port_open(HOST, wanted, 0.2) else wanted


async def start_stripe(components: Sequence[Component], config: Config,
                       console: Console) -> EmbeddedStripe | None:
    if os.environ.get("PAYMENT_STRIPE_API_BASE"):
        return None
    stripe = EmbeddedStripe(_port("HEALTHFLOW_STRIPE_PORT", 8420),
                            os.environ.get("PAYMENT_STRIPE_WEBHOOK_SECRET"),
                            log_file=config.log_dir / "localstripe.log")
    try:
        await asyncio.to_thread(stripe.start)
        edge = next((c for c in components if c.is_gateway),
                    next(c for c in components if c.package == "payment"))
        await asyncio.to_thread(stripe.send_webhooks_to,
                                f"{edge.url}/api/v1/payments/webhooks/stripe")
    except Exception as exc:  # payments fail, the rest of the platform still runs
        stripe.stop()
        console.status("stripe", "not started", str(exc), "red")
        return None
    os.environ.update(stripe.env())
    console.status("stripe", "ready", f"localstripe {stripe.url}", "green")
    return stripe


async def start_janus(config: Config, console: Console) -> EmbeddedJanus | None:
    if os.environ.get("TELECONFERENCE_JANUS_URL"):
        return None
    janus = EmbeddedJanus(config.var_dir / "janus", port=_port("HEALTHFLOW_JANUS_PORT", 8088),
                          admin_port=_port("HEALTHFLOW_JANUS_ADMIN_PORT", 7088),
                          log_file=config.log_dir / "janus.log")
    try:
        await asyncio.to_thread(janus.start)
    except Exception as exc:  # video consultations fail, the rest of the platform runs
        janus.stop()
        console.status("janus", "not started", str(exc), "red")
        return None
    os.environ.update(janus.env())
    console.status("janus", "ready", f"WebRTC media server {janus.url}", "green")
    return janus
