"""RFC 9457 errors, request ids, body limits, health and metrics — via the shared factory."""

from healthflow.common.errors import PROBLEM_JSON
from healthflow.common.events.outbox import OUTBOX
from healthflow.devkit.testing import running_app


def assert_problem(response, status: int, *, detail_contains: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert body["title"]
    assert detail_contains in body["detail"]
    assert "Traceback" not in response.text
    return body


async def count(app, collection: str) -> int:
    return await app.state.runtime.db[collection].count_documents({})


async def test_valid_write_commits_document_and_outbox_record(widget_app):
    async with running_app(widget_app) as client:
        response = await client.post("/api/v1/widgets", json={"name": "w1", "size": 3})
        assert response.status_code == 201
        assert await count(widget_app, "widgets") == 1
        record = await widget_app.state.runtime.db[OUTBOX].find_one({"type": "widget.created"})
        assert record["envelope"]["subject"] == "w1"


async def test_malformed_json_is_a_problem_and_writes_nothing(widget_app):
    async with running_app(widget_app) as client:
        response = await client.post(
            "/api/v1/widgets", content=b'{"name": "x", "size": ',
            headers={"content-type": "application/json"},
        )
        assert_problem(response, 422, detail_contains="JSON")
        assert await count(widget_app, "widgets") == 0
        assert await count(widget_app, OUTBOX) == 0


async def test_wrong_types_and_unknown_fields_are_named(widget_app):
    async with running_app(widget_app) as client:
        response = await client.post("/api/v1/widgets", json={"name": "x", "size": "big"})
        body = assert_problem(response, 422, detail_contains="body.size")
        assert body["errors"][0]["location"] == "body.size"
        response = await client.post("/api/v1/widgets",
                                     json={"name": "x", "size": 1, "colour": "red"})
        assert_problem(response, 422, detail_contains="body.colour")
        assert await count(widget_app, "widgets") == 0


async def test_oversized_body_is_refused_before_handling(widget_app):
    async with running_app(widget_app) as client:
        response = await client.post("/api/v1/widgets",
                                     json={"name": "x" * 5000, "size": 1})
        assert_problem(response, 413, detail_contains="2048 bytes")
        assert await count(widget_app, "widgets") == 0


async def test_failure_after_writes_rolls_back_document_and_event(widget_app):
    async with running_app(widget_app) as client:
        response = await client.post("/api/v1/widgets", json={"name": "w13", "size": 13})
        body = assert_problem(response, 500)
        assert "unlucky" not in body["detail"]
        assert await count(widget_app, "widgets") == 0
        assert await count(widget_app, OUTBOX) == 0


async def test_domain_conflict_is_409(widget_app):
    async with running_app(widget_app) as client:
        first = await client.post("/api/v1/widgets", json={"name": "a", "size": 1})
        assert first.status_code == 201
        response = await client.post("/api/v1/widgets", json={"name": "a", "size": 2})
        assert_problem(response, 409, detail_contains="exists")


async def test_unknown_route_and_wrong_method_are_problems(widget_app):
    async with running_app(widget_app) as client:
        assert_problem(await client.get("/api/v1/nothing-here"), 404,
                       detail_contains="/api/v1/nothing-here")
        assert_problem(await client.delete("/api/v1/widgets"), 405)


async def test_permission_checks(widget_app, tokens):
    async with running_app(widget_app) as client:
        assert_problem(await client.get("/api/v1/widgets/secret"), 401)
        response = await client.get("/api/v1/widgets/secret",
                                    headers=tokens.headers("p1", roles=["patient"]))
        assert_problem(response, 403, detail_contains="audit:read")
        response = await client.get("/api/v1/widgets/secret",
                                    headers=tokens.headers("c1", roles=["compliance_officer"]))
        assert response.status_code == 200 and response.json() == {"sub": "c1"}


async def test_request_id_is_echoed_or_generated(widget_app):
    async with running_app(widget_app) as client:
        response = await client.get("/livez", headers={"X-Request-ID": "abc-123"})
        assert response.headers["x-request-id"] == "abc-123"
        generated = (await client.get("/livez")).headers["x-request-id"]
        assert len(generated) == 36
        bad = (await client.get("/livez", headers={"X-Request-ID": "x" * 500})).headers
        assert bad["x-request-id"] != "x" * 500


async def test_readyz_reports_each_check_and_metrics_expose_outbox(widget_app):
    async with running_app(widget_app) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        checks = ready.json()["checks"]
        assert checks["mongodb"] == "ok" and checks["broker"] == "ok"
        assert checks["outbox"]["pending"] == 0
        metrics = (await client.get("/metrics")).text
        assert "healthflow_outbox_pending" in metrics
        assert "healthflow_outbox_oldest_pending_age_seconds" in metrics


async def test_readyz_is_503_when_the_database_is_gone(widget_settings, tokens):
    from healthflow.common.http import create_service_app
    from healthflow.common.service import ServiceRuntime

    from .conftest import widget_router

    runtime = ServiceRuntime(widget_settings)
    app = create_service_app(runtime, routers=[widget_router()], title="w")
    async with running_app(app) as client:
        runtime.client = __import__("healthflow.common.mongo", fromlist=["get_client"]).get_client(
            "mongodb://127.0.0.1:1/?directConnection=true&serverSelectionTimeoutMS=300"
        )
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["mongodb"].startswith("unavailable")


async def test_a_transaction_past_its_budget_is_a_503_with_retry_after(mongodb_url, unique_name):
    """A stalled database must end a request as 503 + Retry-After from the service, not
    as a 504 from the gateway (the fault drill's finding: a 10 s SIGSTOP of SecantusDB)."""
    import asyncio

    from fastapi import FastAPI

    from healthflow.common import mongo
    from healthflow.common.errors import install_problem_handlers

    app = FastAPI()
    install_problem_handlers(app)
    client = mongo.get_client(mongodb_url)

    @app.post("/slow")
    async def slow() -> dict:
        async def fn(session):
            await asyncio.sleep(0.2)  # the database "stalls" past the 0.05 s budget
            await client[unique_name]["things"].insert_one({"x": 1}, session=session)

        await mongo.run_transaction(client, fn, budget=0.05)
        return {}

    async with running_app(app) as http:
        response = await http.post("/slow")
        assert_problem(response, 503, detail_contains="database")
        assert response.headers["retry-after"] == "2"
    assert await client[unique_name]["things"].count_documents({}) == 0
