"""Events the hospital service consumes: none yet (it is a source of truth, not a follower)."""

from __future__ import annotations

from healthflow.common.events.consumer import Handlers

HANDLERS: Handlers = {}
