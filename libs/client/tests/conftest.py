"""Fixtures of the client's integration tests: the whole platform as a process."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from healthflow.devkit.testing import RunningPlatform, platform_process, rabbitmq_vhost


@dataclass
class Demoable:
    """A running platform and the URL of its local mailbox view."""

    platform: RunningPlatform
    mailbox_url: str


def mailbox_url(platform: RunningPlatform) -> str:
    """The mailbox view the runner printed (``mailbox   http://127.0.0.1:PORT/mail``)."""
    found = re.search(r"mailbox\s+(http://[\d.]+:\d+)/mail", platform.text())
    assert found, f"the runner printed no mailbox:\n{platform.text()[-2000:]}"
    return found.group(1)


@pytest.fixture(scope="module")
def demoable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demoable]:
    """One platform (its own vhost, free ports, a mailbox) shared by a module's tests."""
    workdir: Path = tmp_path_factory.mktemp("platform")
    with rabbitmq_vhost() as amqp, platform_process(workdir, amqp) as platform:
        yield Demoable(platform, mailbox_url(platform))
