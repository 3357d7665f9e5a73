#!/usr/bin/env bash
# Run the operator in the background for `make demo` (pid and log under .cluster/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIDFILE="$ROOT/.cluster/operator.pid"
LOG="$ROOT/.cluster/operator.log"
mkdir -p "$ROOT/.cluster"
case "${1:-start}" in
  start)
    if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      echo "operator already running (pid $(cat "$PIDFILE"), log $LOG)"; exit 0
    fi
    nohup "$ROOT/.venv/bin/python" -m agentops_operator --health-port "${AGENTOPS_HEALTH_PORT:-18080}" \
      --metrics-port "${AGENTOPS_METRICS_PORT:-19090}" >"$LOG" 2>&1 &
    echo $! > "$PIDFILE"
    for _ in $(seq 1 60); do
      if curl -fsS "http://127.0.0.1:${AGENTOPS_HEALTH_PORT:-18080}/healthz" >/dev/null 2>&1; then
        echo "operator running (pid $(cat "$PIDFILE"), log $LOG)"; exit 0
      fi
      kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { echo "operator exited; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
      sleep 1
    done
    echo "operator did not become healthy; see $LOG" >&2; exit 1 ;;
  stop)
    if [[ -f "$PIDFILE" ]]; then kill "$(cat "$PIDFILE")" 2>/dev/null || true; rm -f "$PIDFILE"; fi ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
