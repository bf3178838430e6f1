#!/usr/bin/env bash
# `make bench`: every package's benchmarks/bench_*.py, one after the other.
# Benchmarks print figures; they are not tests and assert nothing about speed.
set -euo pipefail
cd "$(dirname "$0")/../.."
UV=${UV:-$(command -v uv || echo "python3 -m uv")}
echo "HealthFlow benchmarks on $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
status=0
for script in libs/common/benchmarks/bench_*.py services/*/benchmarks/bench_*.py gateway/benchmarks/bench_*.py; do
  [ -f "$script" ] || continue
  echo
  echo "## $script"
  $UV run --frozen python "$script" || { echo "!! $script failed"; status=1; }
done
exit $status
