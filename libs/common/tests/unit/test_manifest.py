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
