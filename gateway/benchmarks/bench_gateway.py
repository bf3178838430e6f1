"""Benchmark: an authenticated GET through the gateway vs straight to the service.

Not a test: prints figures, asserts nothing about speed. Same concurrency, same
run, same request for both paths; the service verifies the token itself in both
cases (as every HealthFlow service does), so the difference is the gateway's
own cost: edge token check, two rate-limit checks, header rewriting, one more
HTTP hop.

    uv run python gateway/benchmarks/bench_gateway.py [--concurrency 16] [--requests 3000]

By default it starts its own upstream (a tiny FastAPI service with the shared
token dependency) and a gateway (``python -m healthflow.gateway``, in-memory
rate limits raised so they never refuse), each its own process. To measure a
running platform instead, pass ``--gateway-url``, ``--direct-url``, ``--path``
and ``--token`` (the gateway's limits then apply: raise them with
``GATEWAY_POLICY_OVERRIDES``). Callable from code as :func:`run`.

Goal from issue 3: gateway p50 ≤ 1.5 × direct, throughput ≥ 60 % of direct.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from healthflow.common.auth import Authenticated, TokenVerifier

REPO = Path(__file__).resolve().parents[2]
BENCH_PATH = "/api/v1/patients/bench"


@dataclass
class Result:
    """Throughput (requests/s) and latency percentiles (ms) of one run."""

    label: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (f"{self.label:8s} {self.throughput:9.0f} req/s   p50 {self.p50_ms:7.2f} ms   "
                f"p99 {self.p99_ms:7.2f} ms   errors {self.errors}")


async def _load(url: str, headers: dict[str, str], concurrency: int, total: int,
                label: str) -> Result:
    latencies: list[float] = []
    errors = 0
    remaining = total
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        for _ in range(min(200, total)):  # warm-up: connections, caches
            await client.get(url, headers=headers)

        async def worker() -> None:
            nonlocal remaining, errors
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                response = await client.get(url, headers=headers)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return Result(label, len(latencies), errors, seconds, quantiles[49] * 1000,
                  quantiles[98] * 1000)


def _wait(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with code {process.returncode}")
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    from healthflow.devkit.embedded import free_port

    return free_port()


def _serve_upstream(port: int, jwks_file: str) -> None:
    """The benchmark's service: one authenticated GET, plus JWKS and health."""


    jwks = json.loads(Path(jwks_file).read_text())
    app = FastAPI()
    app.state.verifier = TokenVerifier(issuer="healthflow-auth", audience="healthflow",
                                       jwks=jwks)

    @app.get(BENCH_PATH)
    async def bench(principal: Authenticated) -> dict[str, str]:
        return {"patient": principal.subject, "status": "ok"}

    @app.get("/.well-known/jwks.json")
    async def keys() -> dict[str, object]:
        return jwks

    @app.get("/livez")
    @app.get("/readyz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def run(concurrency: int = 16, requests: int = 3000, *, gateway_url: str | None = None,
        direct_url: str | None = None, path: str = BENCH_PATH,
        token: str | None = None) -> tuple[Result, Result]:
    """Run both measurements and print them with their ratios; returns (direct, gateway)."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        if gateway_url is None or direct_url is None or token is None:
            from healthflow.devkit.testing import TokenFactory

            factory = TokenFactory()
            token = factory.mint("bench-patient", ["patient"], ttl=3600)
            jwks_file = Path(tempfile.mkdtemp()) / "jwks.json"
            jwks_file.write_text(json.dumps(factory.jwks))
            upstream_port, gateway_port = _free_port(), _free_port()
            direct_url = f"http://127.0.0.1:{upstream_port}"
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            processes.append(subprocess.Popen(
                [sys.executable, __file__, "--serve-upstream", str(upstream_port),
                 str(jwks_file)], cwd=REPO))
            _wait(direct_url + "/livez", processes[-1])
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith("GATEWAY_") and k != "REDIS_URL"}
            env |= {f"GATEWAY_UPSTREAM_{name}": direct_url for name in ("AUTH", "PATIENT")}
            env |= {
                "GATEWAY_PORT": str(gateway_port), "GATEWAY_LOG_LEVEL": "WARNING",
                "GATEWAY_POLICY_OVERRIDES": json.dumps({"default": {
                    "subject_limit": "10000000/minute", "ip_limit": "10000000/minute"}}),
            }
            processes.append(subprocess.Popen([sys.executable, "-m", "healthflow.gateway"],
                                              env=env, cwd=REPO))
            _wait(gateway_url + "/livez", processes[-1])
        headers = {"Authorization": f"Bearer {token}"}
        direct = asyncio.run(_load(direct_url + path, headers, concurrency, requests, "direct"))
        cpu_before = [_cpu_seconds(p.pid) for p in processes]
        through = asyncio.run(_load(gateway_url + path, headers, concurrency, requests,
                                    "gateway"))
        cpu_after = [_cpu_seconds(p.pid) for p in processes]
        if processes:
            upstream_cpu, gateway_cpu = (
                (after - before) * 1000 / (requests + 200)
                for before, after in zip(cpu_before, cpu_after, strict=True))
            print(f"CPU per request through the gateway: gateway {gateway_cpu:.2f} ms, "
                  f"service {upstream_cpu:.2f} ms")
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
    print(f"authenticated GET {path}, concurrency {concurrency}, {requests} requests each, "
          f"{os.cpu_count()} cores")
    print(direct.line())
    print(through.line())
    p50_ratio = through.p50_ms / direct.p50_ms if direct.p50_ms else float("nan")
    p99_ratio = through.p99_ms / direct.p99_ms if direct.p99_ms else float("nan")
    share = through.throughput / direct.throughput if direct.throughput else float("nan")
    print(f"gateway/direct: p50 × {p50_ratio:.2f} (goal ≤ 1.5), p99 × {p99_ratio:.2f}, "
          f"throughput {share:.0%} of direct (goal ≥ 60 %)")
    return direct, through


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--gateway-url")
    parser.add_argument("--direct-url")
    parser.add_argument("--path", default=BENCH_PATH)
    parser.add_argument("--token")
    parser.add_argument("--serve-upstream", nargs=2, metavar=("PORT", "JWKS_FILE"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        _serve_upstream(int(args.serve_upstream[0]), args.serve_upstream[1])
        return
    run(args.concurrency, args.requests, gateway_url=args.gateway_url,
        direct_url=args.direct_url, path=args.path, token=args.token)


if __name__ == "__main__":
    main()
