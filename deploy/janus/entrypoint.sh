#!/bin/sh
# Render the configuration from the environment, then run Janus in the foreground.
# Each secret from the file <NAME>_FILE names (a Compose secret) or from <NAME>.
set -eu
for name in JANUS_API_SECRET JANUS_ADMIN_SECRET JANUS_ROOM_ADMIN_KEY; do
  eval "file=\${${name}_FILE:-}"
  if [ -n "$file" ]; then
    value="$(cat "$file")"
    export "$name=$value"
  fi
done
: "${JANUS_API_SECRET:?set JANUS_API_SECRET or JANUS_API_SECRET_FILE}"
: "${JANUS_ADMIN_SECRET:?set JANUS_ADMIN_SECRET or JANUS_ADMIN_SECRET_FILE}"
: "${JANUS_ROOM_ADMIN_KEY:?set JANUS_ROOM_ADMIN_KEY or JANUS_ROOM_ADMIN_KEY_FILE}"
export JANUS_CONFIGS=/etc/healthflow-janus JANUS_PORT="${JANUS_PORT:-8088}"
export JANUS_ADMIN_PORT="${JANUS_ADMIN_PORT:-7088}" JANUS_BIND="${JANUS_BIND:-0.0.0.0}"
export JANUS_RTP_PORTS="${JANUS_RTP_PORTS:-20000-20100}"
export JANUS_PLUGINS=/opt/janus/plugins JANUS_TRANSPORTS=/opt/janus/transports
export JANUS_EVENTS=/opt/janus/events JANUS_LOGGERS=/opt/janus/loggers
mkdir -p "$JANUS_CONFIGS"
for template in /opt/janus/templates/*.jcfg.in; do
  envsubst < "$template" > "$JANUS_CONFIGS/$(basename "$template" .in)"
done
# the secrets are in the rendered configuration now, not in Janus's environment
unset JANUS_API_SECRET JANUS_ADMIN_SECRET JANUS_ROOM_ADMIN_KEY
exec janus --config "$JANUS_CONFIGS/janus.jcfg" --configs-folder "$JANUS_CONFIGS"
