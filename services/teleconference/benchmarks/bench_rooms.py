"""Video rooms on one Janus: rooms of two aiortc peers each (a doctor and a patient, each
sending 320×240 video at 15 frames/s and Opus audio, each receiving the other) are
added one at a time until the video frames received fall below 90 % of those sent.

The teleconference app runs in this process (its HTTP API in-process over ASGI) on
SecantusDB and a real Janus (child processes), S3 from s3rver. Rooms come from
``appointment.changed`` applied by the service's own handler. Prints, per step: rooms,
frames received / sent over a ``BENCH_TELE_WINDOW`` second window, Janus's CPU (% of
one core, from ``/proc/<pid>/stat``) and this process's (the peers: VP8 encoding and
decoding in aiortc, the load generator); then join time (token to first remote video
frame) p50/p99. On a 2-core machine the peers, not Janus, run out of CPU first: both
figures are printed so the reader can tell which limit was met.

    BENCH_TELE_MAX_ROOMS=12 BENCH_TELE_WINDOW=5 make bench
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from healthflow.contracts.appointment import AppointmentBooked
from healthflow.devkit.benchmarking import eventually, percentile, report
from healthflow.devkit.embedded import EmbeddedMongo, EmbeddedS3
from healthflow.devkit.janus import EmbeddedJanus
from healthflow.devkit.testing import TokenFactory, running_app
from healthflow.devkit.webrtc import API, Peer
from healthflow.teleconference import service
from healthflow.teleconference.app import create_app
from healthflow.teleconference.settings import Settings

MAX_ROOMS = int(os.environ.get("BENCH_TELE_MAX_ROOMS", "12"))
WINDOW = float(os.environ.get("BENCH_TELE_WINDOW", "5"))
FLOOR = 0.90
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (``/proc/<pid>/stat`` fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def open_room(http: Any, app: Any, tokens: TokenFactory) -> tuple[Peer, Peer, float]:
    """A room with its doctor and patient exchanging media; the patient's join time
    (token to the first video frame from the doctor), seconds."""
    start = datetime.now(UTC) + timedelta(minutes=1)
    tag = uuid.uuid4().hex[:8]
    event = AppointmentBooked(
        appointment_id=str(uuid.uuid4()), patient_id=f"patient-{tag}", doctor_id="doc",
        doctor_user_id=f"doctor-{tag}", location_id=None, start=start,
        end=start + timedelta(minutes=30), timezone="UTC", mode="online", status="confirmed",
        booked_by=f"patient-{tag}", booked_by_role="patient")
    await app.state.runtime.transact(
        lambda uow: service.appointment_changed(uow, event, datetime.now(UTC)))
    doctor = Peer(http, tokens.headers(f"doctor-{tag}", ("doctor",)), event.appointment_id)
    patient = Peer(http, tokens.headers(f"patient-{tag}", ("patient",)), event.appointment_id)
    began = time.monotonic()
    await doctor.join()
    waiting = (await patient.join())["participant"]["id"]
    await http.post(f"{API}/{event.appointment_id}/participants/{waiting}/admit",
                    headers=doctor.headers)
    await doctor.publish()
    await patient.publish()

    async def live() -> bool:
        return bool(await doctor.feeds()) and bool(await patient.feeds())

    await eventually(live, within=30, interval=0.1, message="no feeds")
    assert doctor.feed and patient.feed
    await doctor.watch(patient.feed)
    seen = await patient.watch(doctor.feed)
    await eventually(lambda: seen.first_at is not None, within=30, interval=0.02,
                     message="no remote frame")
    assert seen.first_at is not None
    return doctor, patient, seen.first_at - began


def totals(peers: list[Peer]) -> tuple[int, int]:
    sent = sum(p.camera.sent for p in peers)
    received = sum(r.counts["video"] for p in peers for r in p.received.values())
    return sent, received


async def run(root: Path) -> None:
    mongo = EmbeddedMongo().start()
    s3 = EmbeddedS3(root / "s3").start()
    janus = EmbeddedJanus(root / "janus", log_file=root / "janus.log").start()
    tokens = TokenFactory()
    env = janus.env()
    settings = Settings(
        mongodb_url=mongo.url, mongodb_database="bench_teleconference", transport="inprocess",
        janus_url=env["TELECONFERENCE_JANUS_URL"],
        janus_admin_url=env["TELECONFERENCE_JANUS_ADMIN_URL"],
        janus_api_secret=env["TELECONFERENCE_JANUS_API_SECRET"],
        janus_admin_secret=env["TELECONFERENCE_JANUS_ADMIN_SECRET"],
        janus_room_admin_key=env["TELECONFERENCE_JANUS_ROOM_ADMIN_KEY"],
        janus_recordings_dir=str(janus.recordings), s3_endpoint_url=s3.url,
        s3_access_key=s3.access_key, s3_secret_key=s3.secret_key, s3_region=s3.region)
    app = create_app(settings)
    app.state.verifier = tokens.verifier()
    peers: list[Peer] = []
    joins: list[float] = []
    rows: list[tuple[str, str]] = []
    sustained = 0
    try:
        async with running_app(app) as http:
            assert janus.process is not None
            for rooms in range(1, MAX_ROOMS + 1):
                doctor, patient, joined = await open_room(http, app, tokens)
                peers += [doctor, patient]
                joins.append(joined)
                await asyncio.sleep(2)  # let the new room settle
                sent0, received0 = totals(peers)
                janus0, me0, t0 = cpu_seconds(janus.process.pid), cpu_seconds(os.getpid()), \
                    time.monotonic()
                await asyncio.sleep(WINDOW)
                sent1, received1 = totals(peers)
                elapsed = time.monotonic() - t0
                janus_cpu = (cpu_seconds(janus.process.pid) - janus0) / elapsed
                peers_cpu = (cpu_seconds(os.getpid()) - me0) / elapsed
                ratio = (received1 - received0) / max(1, sent1 - sent0)
                rows.append((f"{rooms} room(s)",
                             f"received/sent {ratio:.0%}, Janus CPU {janus_cpu:.0%}, "
                             f"peers' CPU {peers_cpu:.0%}, join {joined * 1000:.0f} ms"))
                print(f"   {rows[-1][0]}: {rows[-1][1]}", flush=True)
                if ratio < FLOOR:
                    break
                sustained = rooms
    finally:
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
        janus.stop()
        s3.stop()
        mongo.stop()
    report("Video rooms on one Janus (2 aiortc peers each, 320×240 at 15 fps + Opus)", [
        *rows,
        ("rooms sustained (≥ 90 % of frames)", str(sustained)),
        ("join time p50 / p99", f"{percentile(joins, 50) * 1000:.0f} ms / "
                                f"{percentile(joins, 99) * 1000:.0f} ms ({len(joins)} joins)"),
    ])


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-tele-") as tmp:
        asyncio.run(run(Path(tmp)))


if __name__ == "__main__":
    main()
