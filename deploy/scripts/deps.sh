#!/usr/bin/env bash
# Install and start what HealthFlow needs on a Debian machine: uv (from PyPI),
# RabbitMQ and Redis (from Debian's packages). Idempotent; says what it does.
set -euo pipefail

say() { printf '[deps] %s\n' "$*"; }
apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    say "apt-get is not available: install $* yourself"; return 1
  fi
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ "$apt_updated" -eq 0 ]; then $sudo apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# uv
if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
  say "installing uv from PyPI"
  python3 -m pip install --quiet uv
fi

# RabbitMQ (tests and the production-shape run need it; `make run` falls back to
# the in-process transport when it is absent)
if [ -z "${AMQP_URL:-}" ]; then
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    say "installing rabbitmq-server"
    apt_install rabbitmq-server || say "RabbitMQ could not be installed"
  fi
  if command -v rabbitmq-server >/dev/null 2>&1 && ! port_open 5672; then
    say "starting RabbitMQ"
    rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do port_open 5672 && break; sleep 1; done
    port_open 5672 && sleep 2
  fi
  if port_open 5672; then say "RabbitMQ answers on 127.0.0.1:5672"; else say "RabbitMQ is NOT running"; fi
fi

# Redis (shared rate-limit budgets)
if [ -z "${REDIS_URL:-}" ]; then
  if ! command -v redis-server >/dev/null 2>&1; then
    say "installing redis-server"
    apt_install redis-server || say "Redis could not be installed"
  fi
  if command -v redis-server >/dev/null 2>&1 && ! port_open 6379; then
    say "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 1 20); do port_open 6379 && break; sleep 0.5; done
  fi
  if port_open 6379; then say "Redis answers on 127.0.0.1:6379"; else say "Redis is NOT running"; fi
fi

# The local S3-compatible server (s3rver, from the npm registry; it keeps objects
# in a directory, so `make run` keeps them under ./var/s3 across restarts)
if [ -z "${S3_ENDPOINT_URL:-}" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    say "installing nodejs and npm"
    apt_install nodejs npm || say "Node.js could not be installed"
  fi
  s3rver_dir="$(dirname "$0")/../s3rver"
  if command -v npm >/dev/null 2>&1 && [ ! -x "$s3rver_dir/node_modules/.bin/s3rver" ]; then
    say "installing s3rver (npm ci, locked)"
    npm ci --prefix "$s3rver_dir" --no-audit --no-fund --silent
  fi
  if [ -x "$s3rver_dir/node_modules/.bin/s3rver" ]; then say "s3rver is installed"; else say "s3rver is NOT installed"; fi
fi

# Janus, the WebRTC media server of video consultations (Debian's packages; janus-tools
# brings janus-pp-rec, which turns its recordings into media files)
if [ -z "${TELECONFERENCE_JANUS_URL:-}" ]; then
  if ! command -v janus >/dev/null 2>&1 || ! command -v janus-pp-rec >/dev/null 2>&1; then
    say "installing janus and janus-tools"
    apt_install janus janus-tools || say "Janus could not be installed"
  fi
  if command -v janus >/dev/null 2>&1; then say "Janus is installed"; else say "Janus is NOT installed"; fi
fi

# Debian's Chromium for the browser test of video consultations (driven by Playwright's
# Python package with executable_path; Playwright's own browser download is never used)
if ! command -v chromium >/dev/null 2>&1; then
  say "installing chromium"
  apt_install chromium || say "Chromium could not be installed"
fi
if command -v chromium >/dev/null 2>&1; then say "Chromium is installed"; else say "Chromium is NOT installed"; fi
