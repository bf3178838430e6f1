"""What auth's account events tell the account's owner (each by e-mail, queued in the
consumer's :class:`UnitOfWork` like every message: :mod:`healthflow.notification.messages`).

* ``auth.password_reset_requested``: the reset link ``<app_base_url>/reset-password?token=…``;
  the token is :func:`~healthflow.common.links.account_link_token` of the request id under
  the secret shared with auth (``ACCOUNT_LINK_SECRET``), so it never travels in an event;
  not sent after the link expires.
* ``auth.password_changed``: the owner is told (e-mail and feed), so a change they did not
  make is noticed.
* ``auth.registration_attempted``: someone tried to sign up with the owner's address.
"""

from __future__ import annotations

from typing import Any

from healthflow.common.events.outbox import UnitOfWork
from healthflow.common.links import account_link_token
from healthflow.contracts.auth import PASSWORD_RESET_PURPOSE
from healthflow.notification import domain
from healthflow.notification.messages import plan_message
from healthflow.notification.service import Context


async def apply_account_event(uow: UnitOfWork, event_type: str, raw: dict[str, Any],
                              event_id: str, ctx: Context) -> None:
    """Queue the owner's message for one of the account events above (others: nothing)."""
    if event_type == "auth.password_reset_requested":
        await _password_reset(uow, raw, event_id, ctx)
    elif event_type == "auth.password_changed":
        await plan_message(uow, ctx, user_id=raw["user_id"], kind=domain.PASSWORD_CHANGED,
                           source_id=event_id, trigger=event_type,
                           context={"by_reset": raw.get("method") == "reset"})
    elif event_type == "auth.registration_attempted":
        await plan_message(uow, ctx, user_id=raw["user_id"],
                           kind=domain.REGISTRATION_ATTEMPTED, source_id=event_id,
                           trigger=event_type, context={})


async def _password_reset(uow: UnitOfWork, raw: dict[str, Any], event_id: str,
                          ctx: Context) -> None:
    expires_at = domain.parse_time(raw["expires_at"])
    token = account_link_token(ctx.settings.account_link_secret.get_secret_value().encode(),
                               PASSWORD_RESET_PURPOSE, raw["reset_id"])
    minutes = max(1, int((expires_at - ctx.clock.now()).total_seconds() // 60))
    link = f"{ctx.settings.app_base_url.rstrip('/')}/reset-password?token={token}"
    await plan_message(uow, ctx, user_id=raw["user_id"], kind=domain.PASSWORD_RESET,
                       source_id=event_id, trigger="auth.password_reset_requested",
                       context={"reset_link": link, "valid_minutes": minutes},
                       expires_at=expires_at)
