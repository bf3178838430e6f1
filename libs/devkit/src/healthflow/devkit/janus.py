"""Janus (the WebRTC server of Meetecho, Debian packages ``janus``) as a child process.

:class:`EmbeddedJanus` writes a configuration of its own into a directory (nothing of
``/etc/janus`` is read): only the VideoRoom plugin (the SFU the teleconference service
drives) and the HTTP transport are loaded, from a folder of symbolic links to the
installed modules; the client API listens on ``127.0.0.1:<port>/janus`` behind an
``api_secret`` and the admin/monitor API on ``127.0.0.1:<admin_port>/admin`` behind an
``admin_secret``; VideoRoom rooms can only be created with the ``admin_key``. The
configuration is ``deploy/janus``'s templates, rendered as the compose container does. Only the
teleconference service knows the three secrets; clients never reach Janus's API.

Used by ``make run`` (data and recordings under ``./var/janus``) and by the tests.
Compose and Kubernetes run the same Janus from an image with the same settings.
"""

from __future__ import annotations

import secrets
import shutil
import string
import subprocess
from pathlib import Path

from healthflow.devkit.embedded import free_ports, spawn_listening, stop_child

MODULES = Path("/usr/lib/x86_64-linux-gnu/janus")
PLUGINS = ("libjanus_videoroom.so",)
TRANSPORTS = ("libjanus_http.so",)


TEMPLATES = ("janus.jcfg.in", "janus.transport.http.jcfg.in", "janus.plugin.videoroom.jcfg.in")
"""``deploy/janus``'s configuration templates (``${NAME}`` placeholders), the same ones the
compose container renders with ``envsubst``."""


def find_templates() -> Path:
    """``deploy/janus`` of the checkout this package or the working directory is in.

    Raises:
        RuntimeError: no checkout with ``deploy/janus`` is found.
    """
    for base in [Path.cwd(), *Path(__file__).resolve().parents]:
        candidate = base / "deploy" / "janus"
        if (candidate / TEMPLATES[0]).is_file():
            return candidate
    raise RuntimeError("deploy/janus (Janus's configuration templates) is not found: run "
                       "from a HealthFlow checkout")


def find_janus() -> Path:
    """The installed ``janus`` binary.

    Raises:
        RuntimeError: Janus is not installed (``make deps`` installs it from Debian).
    """
    exe = shutil.which("janus")
    if exe is None:
        raise RuntimeError("Janus is not installed: run `make deps` "
                           "(apt-get install janus janus-tools)")
    return Path(exe)


def modules_dir() -> Path:
    """Where Debian installs Janus's plugins and transports (by the machine's triplet)."""
    for candidate in sorted(Path("/usr/lib").glob("*/janus")):
        if (candidate / "plugins" / PLUGINS[0]).exists():
            return candidate
    return MODULES


class EmbeddedJanus:
    """A Janus child process on loopback with generated secrets and free ports.

    ``rtp_ports`` is the UDP range of media (``(low, high)``, inclusive).
    """

    def __init__(self, workdir: str | Path, port: int | None = None,
                 admin_port: int | None = None, rtp_ports: tuple[int, int] = (20000, 40000),
                 log_file: Path | None = None, secret: str | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        chosen = free_ports(2)
        self.port = port or chosen[0]
        self.admin_port = admin_port or chosen[1]
        self.rtp_ports = rtp_ports
        self.log_file = log_file
        self.api_secret = secret or secrets.token_urlsafe(24)
        self.admin_secret = secrets.token_urlsafe(24)
        self.room_admin_key = secrets.token_urlsafe(24)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client API (``POST`` to create a session, long-poll ``GET`` for events)."""
        return f"http://127.0.0.1:{self.port}/janus"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}/admin"

    @property
    def recordings(self) -> Path:
        return self.workdir / "recordings"

    def env(self) -> dict[str, str]:
        """The variables that point the teleconference service here."""
        return {"TELECONFERENCE_JANUS_URL": self.url,
                "TELECONFERENCE_JANUS_ADMIN_URL": self.admin_url,
                "TELECONFERENCE_JANUS_API_SECRET": self.api_secret,
                "TELECONFERENCE_JANUS_ADMIN_SECRET": self.admin_secret,
                "TELECONFERENCE_JANUS_ROOM_ADMIN_KEY": self.room_admin_key,
                "TELECONFERENCE_JANUS_RECORDINGS_DIR": str(self.recordings)}

    def write_config(self) -> Path:
        """The configuration folder (``janus.jcfg`` and the two modules' files)."""
        conf = self.workdir / "conf"
        source = modules_dir()
        for kind, names in (("plugins", PLUGINS), ("transports", TRANSPORTS)):
            folder = self.workdir / kind
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                link = folder / name
                if not link.exists():
                    link.symlink_to(source / kind / name)
        for empty in ("events", "loggers"):
            (self.workdir / empty).mkdir(parents=True, exist_ok=True)
        conf.mkdir(parents=True, exist_ok=True)
        self.recordings.mkdir(parents=True, exist_ok=True)
        low, high = self.rtp_ports
        values = {"JANUS_CONFIGS": str(conf), "JANUS_BIND": "127.0.0.1",
                  "JANUS_API_SECRET": self.api_secret, "JANUS_ADMIN_SECRET": self.admin_secret,
                  "JANUS_ROOM_ADMIN_KEY": self.room_admin_key, "JANUS_PORT": str(self.port),
                  "JANUS_ADMIN_PORT": str(self.admin_port), "JANUS_RTP_PORTS": f"{low}-{high}",
                  **{f"JANUS_{kind.upper()}": str(self.workdir / kind)
                     for kind in ("plugins", "transports", "events", "loggers")}}
        templates = find_templates()
        for name in TEMPLATES:
            text = string.Template((templates / name).read_text()).substitute(values)
            (conf / name.removesuffix(".in")).write_text(text)
        return conf

    def start(self, timeout: float = 30.0) -> EmbeddedJanus:
        conf = self.write_config()
        command = [str(find_janus()), "--config", str(conf / "janus.jcfg"),
                   "--configs-folder", str(conf)]
        self.process = spawn_listening("janus", command, self.port, self.log_file, timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        stop_child(self.process, timeout)
