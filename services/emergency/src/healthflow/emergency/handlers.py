"""Events the emergency service consumes: none yet."""

from __future__ import annotations

from healthflow.common.events.consumer import Handlers

HANDLERS: Handlers = {}
