#!/usr/bin/env bash
# The API contract under schemathesis (#21, test 9): the real `flowd serve` on an ephemeral port
# with a temporary SQLite database and an API key, and schemathesis (from PyPI, pinned) against
# the OpenAPI document it serves, with every check, in both directions: no 5xx, every answer as
# documented, every schema-valid request accepted and every schema-violating one refused.
#
# Usage: bash .ci/schemathesis.sh [path/to/flowd]   (default: target/debug/flowd, built if missing)
# Environment: SCHEMATHESIS_MAX_EXAMPLES (default 40), SCHEMATHESIS_TIME_LIMIT seconds (180).
# Exits non-zero on any failure; the report (JUnit) is left in target/schemathesis/.
set -euo pipefail

cd "$(dirname "$0")/.."
SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-40}
TIME_LIMIT=${SCHEMATHESIS_TIME_LIMIT:-180}
FLOWD=${1:-target/debug/flowd}

# The version and every dependency are pinned in .ci/schemathesis-requirements.txt (a newer
# hypothesis once broke an older schemathesis). To upgrade: install the new schemathesis in a
# fresh virtual environment and write `pip freeze` of it there.
if ! schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "Installing schemathesis $SCHEMATHESIS_VERSION from PyPI."
  python3 -m pip install --quiet --disable-pip-version-check -r .ci/schemathesis-requirements.txt
fi
if [ ! -x "$FLOWD" ]; then
  cargo build --locked --bin flowd
fi

work=$(mktemp -d)
flowd_pid=
cleanup() {
  if [ -n "$flowd_pid" ]; then
    kill "$flowd_pid" 2>/dev/null || true
    wait "$flowd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# One flow that every trigger kind reaches, so operations on a known id get past the lookup.
mkdir -p "$work/flows"
cat > "$work/flows/contract.yaml" <<'YAML'
id: contract
triggers:
  - manual: {label: Contract}
  - webhook: {path: contract}
  - entity: guest
    on: create
steps:
  - id: shape
    map: {x: 1}
YAML

key="contract-$(date +%s%N)"
FLOWD_DATABASE_URL="sqlite://$work/flowd.db" FLOWD_FLOWS_DIR="$work/flows" FLOWD_API_KEYS="$key" \
  FLOWD_LISTEN=127.0.0.1:0 FLOWD_LOG_FORMAT=json \
  "$FLOWD" serve >"$work/flowd.out" 2>"$work/flowd.err" &
flowd_pid=$!

# `flowd serve` prints its address once it accepts connections.
base=
for _ in $(seq 1 600); do
  base=$(grep -o 'flowd listening on http://[0-9.:]*' "$work/flowd.err" | head -1 | sed 's/.* on //') || true
  [ -n "$base" ] && break
  kill -0 "$flowd_pid" 2>/dev/null || { cat "$work/flowd.err"; echo "flowd did not start"; exit 1; }
  sleep 0.1
done
[ -n "$base" ] || { cat "$work/flowd.err"; echo "flowd did not say where it listens"; exit 1; }
echo "flowd serves on $base; schemathesis $SCHEMATHESIS_VERSION, $MAX_EXAMPLES examples per operation, at most ${TIME_LIMIT}s."

# The document needs the key too, and schemathesis sends its headers only with the tests.
mkdir -p target/schemathesis
python3 - "$base/api/v1/openapi.json" "$key" "$work/openapi.json" <<'PY'
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]})
with urllib.request.urlopen(request, timeout=30) as answer, open(sys.argv[3], "wb") as out:
    out.write(answer.read())
PY
status=0
timeout --kill-after=10 "$TIME_LIMIT" schemathesis --config-file .ci/schemathesis.toml \
  run "$work/openapi.json" --url "$base" \
  --checks all \
  --header "Authorization: Bearer $key" \
  --max-examples "$MAX_EXAMPLES" \
  --seed 21 \
  --request-timeout 30 \
  --generation-database none \
  --no-color \
  --report junit --report-junit-path target/schemathesis/junit.xml \
  || status=$?
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  echo "schemathesis did not finish within ${TIME_LIMIT}s"
fi
if grep -q '"level":"ERROR"\|panicked' "$work/flowd.err"; then
  echo "flowd logged errors:"; grep '"level":"ERROR"\|panicked' "$work/flowd.err" | head -20
  status=1
fi
kill -0 "$flowd_pid" 2>/dev/null || { echo "flowd died during the run"; status=1; }
exit "$status"
