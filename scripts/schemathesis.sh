#!/usr/bin/env bash
# API-wide property tests (issue 14): schemathesis (PyPI, pinned below)
# generates requests for every operation of /v1/openapi.json and sends them
# to a fresh `accelhub serve`, as a user, a vendor and the operator. It fails on
# any 5xx, any status, content type or body the document does not declare,
# and (scripts/schemathesis_hooks.py) any error that is not
# application/problem+json.
#
# Usage: scripts/schemathesis.sh [EXTRA schemathesis run ARGS...]
#   ACCELHUB_BIN    the binary (default: $CARGO_TARGET_DIR/debug/accelhub,
#                   built with `cargo build -p accelhub` if missing)
#   ST_EXAMPLES     examples per operation and phase (default 30)
#   ST_SEED         the seed (default 14; fixed, so a run is reproducible)
#   ST_VENV         where schemathesis is installed (a virtualenv)
# One worker: hypothesis's lambda descriptions parse source with `ast`,
# which CPython 3.11 does not do safely from two threads at once.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
st_version=4.32.5
examples=${ST_EXAMPLES:-30}
seed=${ST_SEED:-14}
venv=${ST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/accelhub-schemathesis-$st_version}

if [[ ! -x $venv/bin/schemathesis ]] || [[ $("$venv/bin/schemathesis" --version) != *"$st_version"* ]]; then
  echo "installing schemathesis $st_version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$st_version"
fi

bin=${ACCELHUB_BIN:-${CARGO_TARGET_DIR:-$root/target}/debug/accelhub}
[[ -x $bin ]] || cargo build -p accelhub

work=$(mktemp -d "${TMPDIR:-/tmp}/accelhub-schemathesis.XXXXXX")
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A fresh server on a free port (port 0; it prints where it listens).
RUST_LOG=${RUST_LOG:-warn} "$bin" serve --data "$work/data" --listen 127.0.0.1:0 \
  2> "$work/server.log" &
server_pid=$!
url=""
for _ in $(seq 300); do
  url=$(sed -n 's/^accelhub listening on //p' "$work/server.log" | head -n1)
  [[ -n $url ]] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "the server exited" >&2; exit 1; }
  sleep 0.1
done
[[ -n $url ]] || { cat "$work/server.log" >&2; echo "the server did not start" >&2; exit 1; }
operator=$(tr -d '[:space:]' < "$work/data/admin.token")

cli() { # TOKEN ARGS...
  local token=$1; shift
  ACCELHUB_URL=$url ACCELHUB_TOKEN=$token "$bin" "$@"
}
# Something to call: a vendor publishes the echo IP, a user deploys it.
vendor=$(cli "$operator" account create acme --role vendor)
user=$(cli "$operator" account create prop-user --role user)
bash scripts/build-ips.sh
cli "$vendor" ip publish ips/echo --wait > /dev/null
cli "$user" deploy acme/echo > /dev/null
printf 'ping' > "$work/ping"
cli "$user" object put "$work/ping" --key ping > /dev/null

export SCHEMATHESIS_HOOKS=schemathesis_hooks
export PYTHONPATH=$root/scripts${PYTHONPATH:+:$PYTHONPATH}
status=0
for who in user vendor operator; do
  case $who in user) token=$user ;; vendor) token=$vendor ;; *) token=$operator ;; esac
  echo "== schemathesis as the $who ($examples examples per operation, seed $seed)"
  # From the scratch directory: schemathesis keeps its state in ./.schemathesis.
  (cd "$work" && "$venv/bin/schemathesis" run "$url/v1/openapi.json" \
    --url "$url" \
    -H "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,errors_are_problem_json \
    --max-examples "$examples" \
    --seed "$seed" \
    --generation-database none \
    --workers 1 \
    --request-timeout 30 \
    --no-color \
    --report junit --report-dir "${ST_REPORT_DIR:-$work/report-$who}" \
    "$@") || status=1
done
# What reached the IP (the examples name acme/echo and the object `ping`).
python3 - "$url" "$user" <<'PY' || status=1
import json, sys, urllib.request
url, token = sys.argv[1], sys.argv[2]
req = urllib.request.Request(f"{url}/v1/usage", headers={"Authorization": f"Bearer {token}"})
totals = json.load(urllib.request.urlopen(req)).get("totals")
print(f"the user's usage after the runs: {json.dumps(totals)}")
PY
if [[ $status != 0 ]]; then
  echo "schemathesis found failures (server log: below)" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit $status
