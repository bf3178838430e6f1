"""A tiny service built with the shared app factory, for testing the conventions."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from healthflow.common.auth import Principal, require
from healthflow.common.errors import Conflict
from healthflow.common.events.envelope import EventPayload, event_type
from healthflow.common.events.outbox import OUTBOX, UnitOfWork
from healthflow.common.http import create_service_app, get_runtime
from healthflow.common.service import ServiceRuntime
from healthflow.common.settings import ServiceSettings


@event_type("widget.created")
class WidgetCreated(EventPayload):
    widget_id: str


class WidgetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=50)
    size: int = Field(ge=1)


def widget_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/widgets")

    @router.post("", status_code=201)
    async def create(body: WidgetIn, request_runtime: ServiceRuntime = get_runtime_dep()):
        async def write(uow: UnitOfWork) -> str:
            if await uow.db.widgets.find_one({"_id": body.name}, session=uow.session):
                raise Conflict(f"a widget named {body.name!r} exists")
            await uow.db.widgets.insert_one({"_id": body.name, "size": body.size},
                                            session=uow.session)
            uow.publish(WidgetCreated(widget_id=body.name), subject=body.name)
            if body.size == 13:
                raise RuntimeError("unlucky size")  # after the writes: must roll back
            return body.name

        return {"id": await request_runtime.transact(write)}

    @router.get("/secret")
    async def secret(principal: Principal = require("audit:read")):
        return {"sub": principal.subject}

    return router


def get_runtime_dep():
    from fastapi import Depends

    return Depends(get_runtime)


@pytest.fixture
def widget_settings(mongodb_url, unique_name):
    return ServiceSettings(
        service_name=unique_name, mongodb_url=mongodb_url, transport="inprocess",
        max_body_bytes=2048, outbox_poll_interval=0.2,
    )


@pytest.fixture
def widget_app(widget_settings, tokens):
    runtime = ServiceRuntime(widget_settings)
    app = create_service_app(runtime, routers=[widget_router()], title="widgets")
    app.state.verifier = tokens.verifier()
    return app


__all__ = ["OUTBOX"]
