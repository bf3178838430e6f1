"""Service manifests: listener ports (beside the HTTP port) are named for the runner and
may not clash with any other port."""

from __future__ import annotations

import pytest

from healthflow.common.manifest import ServiceManifest, check
from healthflow.common.topology import SERVICES


def test_a_listener_is_handed_over_as_an_environment_variable() -> None:
    manifest = ServiceManifest("scan", 8201, "x", listeners={"dicom": 11113})
    assert manifest.listener_env() == {"SCAN_DICOM_PORT": 11113}
    assert SERVICES["xray"].listener_env() == {"XRAY_DICOM_PORT": 11112}


def test_a_listener_port_may_not_be_another_service_s_port() -> None:
    with pytest.raises(ValueError, match="both use port 8202"):
        check([ServiceManifest("a", 8201, "x", listeners={"dicom": 8202}),
               ServiceManifest("b", 8202, "y")])
    with pytest.raises(ValueError, match="both use port 11113"):
        check([ServiceManifest("a", 8201, "x", listeners={"dicom": 11113}),
               ServiceManifest("b", 8202, "y", listeners={"dicom": 11113})])


def test_a_service_body_limit_takes_the_route_declarations_sub_path_patterns() -> None:
    """The service side of a sub-path policy: ``{name}`` or ``*`` is one segment, exact
    keys first; a pattern the gateway would refuse is refused here too."""
    from healthflow.common.http import BodyLimitMiddleware

    limits = BodyLimitMiddleware(None, 10, {  # type: ignore[arg-type]
        ("PUT", "/api/v1/expenses/{id}/receipt"): 30, ("PUT", "/api/v1/x/*"): 20,
        ("PUT", "/api/v1/x/exact"): 40})
    assert limits.limit_of("PUT", "/api/v1/expenses/abc/receipt") == 30
    assert limits.limit_of("PUT", "/api/v1/expenses/abc/receipt/") == 30
    assert limits.limit_of("PUT", "/api/v1/x/exact") == 40
    assert limits.limit_of("PUT", "/api/v1/x/other") == 20
    for method, path in (("GET", "/api/v1/expenses/abc/receipt"),
                         ("PUT", "/api/v1/expenses/abc"),
                         ("PUT", "/api/v1/expenses/abc/receipt/x"),
                         ("PUT", "/api/v1/expenses//receipt")):
        assert limits.limit_of(method, path) == 10, (method, path)
    with pytest.raises(ValueError, match="whole wildcard"):
        BodyLimitMiddleware(None, 10, {("PUT", "/api/v1/x/{id}.pdf/*"): 20})  # type: ignore[arg-type]
