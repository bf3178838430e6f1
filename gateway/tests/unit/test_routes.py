"""The route table and its policies (no I/O)."""

from __future__ import annotations

import pytest

from healthflow.common.permissions import Permission
from healthflow.gateway.routes import POLICIES, ROUTES, RouteTable
from healthflow.gateway.settings import GatewaySettings


@pytest.mark.parametrize(("path", "service", "policy"), [
    ("/api/v1/auth/token", "auth", "token"),
    ("/api/v1/auth/register", "auth", "register"),
    ("/api/v1/auth/refresh", "auth", "refresh"),
    ("/api/v1/auth/me", "auth", "account"),
    ("/api/v1/auth/me/contact", "auth", "account"),
    # e-mailed links, opened without a token: public, the sign-up edge budget
    ("/api/v1/auth/contact/confirm", "auth", "register"),
    ("/api/v1/auth/contact/revert", "auth", "register"),
    ("/api/v1/auth/logout", "auth", "account"),
    ("/api/v1/users", "auth", "account"),
    ("/api/v1/users/42/roles", "auth", "account"),
    ("/.well-known/jwks.json", "auth", "jwks"),
    ("/api/v1/audit/events", "audit", "audit"),
    ("/api/v1/hospitals", "hospital", "default"),
    ("/api/v1/doctors/7/schedule", "doctor", "default"),
    ("/api/v1/patients/me", "patient", "default"),
    ("/api/v1/appointments/1", "appointment", "default"),
    ("/api/v1/slots", "appointment", "default"),
    ("/api/v1/notifications/stream", "notification", "default"),
    ("/api/v1/notifications/phone/verification", "notification", "verification"),
    ("/api/v1/notifications/phone/verify", "notification", "verification"),
])
def test_longest_prefix_wins(path, service, policy):
    route = RouteTable().match(path)
    assert route is not None and (route.service, route.policy) == (service, policy)


@pytest.mark.parametrize("path", ["/api/v1/usersX", "/api/v1/auth-token", "/api/v2/patients",
                                  "/", "/api/v1", "/api/v1/platformz",
                                  "/internal/revocations", "/internal/person-keys/u-1"])
def test_unrouted_paths(path):
    assert RouteTable().match(path) is None


def test_public_groups_and_the_audit_permission():
    table = RouteTable()
    public = {name for name, p in table.policies.items() if not p.auth_required}
    assert public == {"token", "register", "refresh", "jwks", "edge"}
    assert table.policy("audit").permission == Permission.AUDIT_READ
    # login-like groups are far stricter than the default
    assert table.policy("token").ip_limit == "10/minute"
    assert table.policy("register").ip_limit == "5/minute"


def test_overrides_replace_fields_and_refuse_unknown_ones():
    table = RouteTable(overrides={"default": {"timeout": 2.5, "max_body_bytes": 10}})
    assert table.policy("default").timeout == 2.5
    assert table.policy("default").max_body_bytes == 10
    assert POLICIES["default"].timeout == 15.0  # the declared table is untouched
    with pytest.raises(ValueError, match="unknown policy field"):
        RouteTable(overrides={"default": {"timeuot": 1}})
    with pytest.raises(ValueError, match="unknown groups"):
        RouteTable(overrides={"nope": {}})


def test_every_service_of_the_table_has_an_upstream_default():
    settings = GatewaySettings()
    for route in ROUTES:
        assert settings.upstream_url(route.service).startswith("http://127.0.0.1:81")
    assert settings.jwks_url == settings.upstreams["auth"] + "/.well-known/jwks.json"


def test_upstreams_from_the_environment(monkeypatch):
    monkeypatch.setenv("GATEWAY_UPSTREAM_PATIENT", "http://patient.internal:9000/")
    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://cache:6379/1")
    settings = GatewaySettings()
    assert settings.upstream_url("patient") == "http://patient.internal:9000"
    assert settings.upstream_url("auth") == "http://127.0.0.1:8101"
    assert settings.redis_url == "redis://cache:6379/1"
    assert settings.port == 8000 and settings.host == "127.0.0.1"


def test_replicas_are_taken_in_turn(monkeypatch):
    from healthflow.gateway.settings import GatewaySettings

    monkeypatch.setenv("GATEWAY_UPSTREAM_APPOINTMENT", "http://a:1, http://b:2/")
    settings = GatewaySettings()
    assert settings.upstream_urls("appointment") == ["http://a:1", "http://b:2"]
    assert [settings.upstream_url("appointment") for _ in range(4)] == [
        "http://a:1", "http://b:2", "http://a:1", "http://b:2"]
    assert settings.upstream_url("auth") == settings.upstream_url("auth")


def test_public_methods_are_declared_per_route():
    from healthflow.gateway.routes import RouteTable

    table = RouteTable()
    doctors = table.match("/api/v1/doctors/abc")
    assert doctors is not None and doctors.is_public("GET") and not doctors.is_public("POST")
    callback = table.match("/api/v1/notifications/twilio/status")
    assert callback is not None and callback.is_public("POST")
    feed = table.match("/api/v1/notifications/feed")
    assert feed is not None and not feed.is_public("GET")
    patients = table.match("/api/v1/patients/me")
    assert patients is not None and not patients.is_public("GET")


def test_audit_checkpoints_are_public_reads_and_signing_stays_audit():
    """The checkpoint key and signed checkpoints are read without a token; ``POST
    /api/v1/audit/checkpoints`` (sign now) keeps the ``audit`` group; the entries too."""
    table = RouteTable()
    route = table.match("/api/v1/audit/checkpoints/key")
    assert route is not None and route.service == "audit" and route.is_public("GET")
    assert route.policy_for("GET", "/api/v1/audit/checkpoints/key") == "edge"
    assert not route.is_public("POST")
    assert route.policy_for("POST", "/api/v1/audit/checkpoints") == "audit"
    events = table.match("/api/v1/audit/events")
    assert events is not None and events.policy == "audit" and not events.is_public("GET")


def test_the_upload_policy_is_for_posting_an_image_alone():
    """Routes match by prefix: the upload group (512 MiB bodies, 300 s) is for ``POST
    /api/v1/imaging/studies`` only, not for reading studies or signing a report."""
    route = RouteTable().match("/api/v1/imaging/studies")
    assert route is not None and route.service == "xray"
    studies = "/api/v1/imaging/studies"
    assert route.policy_for("post", studies) == "upload"
    assert route.policy_for("GET", studies) == "default"
    for method, path in (("POST", f"{studies}/s-1/report/sign"), ("PUT", f"{studies}/s-1/report"),
                         ("GET", f"{studies}/s-1/instances/i-1/file")):
        assert route.policy_for(method, path) == "default"


def test_a_method_policy_must_name_a_known_group():
    from healthflow.gateway.routes import Route

    with pytest.raises(ValueError, match="unknown policy nope"):
        RouteTable([Route("/api/v1/x", "x", methods={"POST": "nope"})])


def policy_of(table: RouteTable, method: str, path: str) -> str:
    route = table.match(path)
    assert route is not None
    return route.policy_for(method, path)


@pytest.mark.parametrize("kind", ["expenses", "incomes"])
def test_only_putting_a_receipt_gets_the_document_group(kind):
    """The payment manifest's sub-path policy: ``PUT …/{id}/receipt`` alone is
    ``document`` (25 MiB, 60 s); reading it, the entry itself, the collection and
    anything deeper stay ``default`` (1 MiB)."""
    table = RouteTable()
    base = f"/api/v1/{kind}"
    route = table.match(f"{base}/abc/receipt")
    assert route is not None and (route.service, route.prefix) == ("payment", base)
    assert policy_of(table, "PUT", f"{base}/abc/receipt") == "document"
    assert policy_of(table, "put", f"{base}/abc/receipt") == "document"
    for method, path in (("GET", f"{base}/abc/receipt"), ("PUT", f"{base}/abc"),
                         ("PATCH", f"{base}/abc"), ("PUT", base), ("POST", base),
                         ("PUT", f"{base}/abc/receipt/x"), ("PUT", f"{base}/abc/receiptx"),
                         ("PUT", f"{base}/abc/void"), ("PUT", f"{base}//receipt")):
        assert policy_of(table, method, path) == "default", (method, path)
    document = table.policy("document")
    assert (document.auth_required, document.subject_limit, document.timeout,
            document.max_body_bytes) == (True, "120/minute", 60.0, 25 * 1024 * 1024)


def test_only_posting_an_emergency_photo_gets_the_document_group():
    """The emergency manifest: ``POST …/{id}/photos`` is streamed as a ``document``
    (25 MiB); reading a photo, raising and the rest stay ``default`` (1 MiB)."""
    table = RouteTable()
    base = "/api/v1/emergencies"
    route = table.match(f"{base}/e1/photos")
    assert route is not None and route.service == "emergency"
    assert policy_of(table, "POST", f"{base}/e1/photos") == "document"
    for method, path in (("GET", f"{base}/e1/photos/p1"), ("POST", base),
                         ("GET", f"{base}/e1/photos"), ("POST", f"{base}/e1/status")):
        assert policy_of(table, method, path) == "default", (method, path)


def test_sub_path_patterns_match_segment_by_segment_and_a_longer_prefix_still_wins():
    from healthflow.gateway.routes import Route

    table = RouteTable([
        Route("/api/v1/x", "x", paths={"/*/a/{b}": {"POST": "upload"},
                                       "/{id}/a/fixed": {"POST": "document", "GET": "audit"},
                                       "/{id}": {"DELETE": "account"}}),
        Route("/api/v1/x/7/a", "y"),
    ])
    assert policy_of(table, "POST", "/api/v1/x/1/a/2") == "upload"
    assert policy_of(table, "POST", "/api/v1/x/1/a/fixed") == "upload"  # declared first
    assert policy_of(table, "GET", "/api/v1/x/1/a/fixed") == "audit"
    assert policy_of(table, "DELETE", "/api/v1/x/1") == "account"
    assert policy_of(table, "DELETE", "/api/v1/x") == "default"
    assert policy_of(table, "POST", "/api/v1/x/1/b/2") == "default"
    # the pattern never picks the route: /api/v1/x/7/a is y's, under y's policy
    route = table.match("/api/v1/x/7/a/2")
    assert route is not None and route.service == "y"
    assert route.policy_for("POST", "/api/v1/x/7/a/2") == "default"


@pytest.mark.parametrize(("paths", "error"), [
    ({"/{id}/receipt": {"PUT": "nope"}}, "unknown policy nope"),
    ({"{id}/receipt": {"PUT": "document"}}, "path pattern"),
    ({"/{id}/receipt/": {"PUT": "document"}}, "path pattern"),
    ({"/{id}//receipt": {"PUT": "document"}}, "path pattern"),
    ({"/": {"PUT": "document"}}, "path pattern"),
    ({"/{id}x/receipt": {"PUT": "document"}}, "whole wildcard"),
    ({"/rec*": {"PUT": "document"}}, "whole wildcard"),
    ({"/{}/receipt": {"PUT": "document"}}, "whole wildcard"),
    ({"/.*/receipt": {"PUT": "document"}}, "whole wildcard"),
    ({"/{id}/receipt": {}}, "names no method"),
    ({"/{id}/receipt": {"put": "document"}}, "is not a method"),
    ({"/{id}/receipt": {"PUT /x": "document"}}, "is not a method"),
])
def test_bad_sub_path_declarations_are_refused(paths, error):
    from healthflow.gateway.routes import Route

    with pytest.raises(ValueError, match=error):
        RouteTable([Route("/api/v1/x", "x", paths=paths)])


def test_the_edge_takes_every_receipt_the_payment_service_takes():
    """The service's largest receipt (any configuration) fits the ``document`` group."""
    payment = pytest.importorskip("healthflow.payment.settings")
    edge = RouteTable().policy("document").max_body_bytes
    assert edge >= payment.RECEIPT_CEILING
    assert payment.Settings().receipt_max_bytes <= payment.RECEIPT_CEILING
