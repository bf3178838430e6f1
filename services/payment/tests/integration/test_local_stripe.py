"""The local Stripe the tests and ``make run`` start (EmbeddedStripe, through
healthflow.devkit.localstripe_launcher) answers on 127.0.0.1 only."""

from __future__ import annotations

import socket

import pytest

from healthflow.devkit.embedded import EmbeddedStripe


def outward_address() -> str | None:
    """This host's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("198.51.100.1", 9))  # TEST-NET-2 (RFC 5737)
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_localstripe_listens_on_loopback_only(stripe_server: EmbeddedStripe) -> None:
    with socket.create_connection(("127.0.0.1", stripe_server.port), timeout=2):
        pass
    address = outward_address()
    if address is None:
        pytest.skip("this host has no address besides loopback")
    with pytest.raises(OSError), socket.create_connection((address, stripe_server.port),
                                                          timeout=2):
        pass
