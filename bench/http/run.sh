#!/usr/bin/env bash
# HTTP benchmark: CareSync against nginx serving static files of the same body size.
#
#   bench/http/run.sh                      (or: make bench, which builds build-bench/ first)
#
# Environment:
#   CARESYNC_BIN    server binary (default: <repo>/build-bench/caresync, the Release build)
#   BENCH_DURATION  wrk duration per endpoint (default 10s)
#   BENCH_THREADS   wrk threads (default 2)
#   BENCH_CONNS     wrk connections (default 64)
#   BENCH_RECORDS   records created for the benchmark user (default 10)
#
# Exit status: 0 when every run completed with only 2xx responses, 1 otherwise (missing tools,
# a server that fails to start or dies under load, or any non-2xx response). Falling short of
# the goal ratio is reported, not treated as a failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CARESYNC_BIN="${CARESYNC_BIN:-$ROOT/build-bench/caresync}"
DURATION="${BENCH_DURATION:-10s}"
THREADS="${BENCH_THREADS:-2}"
CONNS="${BENCH_CONNS:-64}"
NRECORDS="${BENCH_RECORDS:-10}"
GOAL="0.8"

die() { echo "bench: $*" >&2; exit 1; }

# ---- tools -------------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ((${#missing[@]})); then
  echo "bench: missing ${missing[*]}" >&2
  echo "bench: install with:  sudo apt-get install -y ${missing[*]}   (or: scripts/deps.sh bench)" >&2
  exit 1
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[[ -x "$CARESYNC_BIN" ]] || die "no server binary at $CARESYNC_BIN (build: cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DCARESYNC_TESTS=OFF && cmake --build build-bench)"

# ---- cleanup -----------------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/caresync-bench.XXXXXX")"
CS_PID=""
NGINX_PID=""
cleanup() {
  local rc=$?
  for pid in "$NGINX_PID" "$CS_PID"; do
    [[ -n "$pid" ]] || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- caresync ----------------------------------------------------------------------------------
mkdir -p "$WORK/data"
# wrk's connections all come from 127.0.0.1: lift the per-address limit above them.
"$CARESYNC_BIN" serve --port 0 --data-dir "$WORK/data" --web-dir "$ROOT/web" --threads 2 --log-level warn \
  --max-connections-per-ip $((CONNS + 16)) >"$WORK/caresync.out" 2>"$WORK/caresync.err" &
CS_PID=$!
CS_PORT=""
for _ in $(seq 100); do
  CS_PORT="$(sed -n 's|^caresync listening on http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$WORK/caresync.out" 2>/dev/null | head -n1)"
  [[ -n "$CS_PORT" ]] && break
  kill -0 "$CS_PID" 2>/dev/null || { cat "$WORK/caresync.err" >&2; die "caresync exited during start-up"; }
  sleep 0.1
done
[[ -n "$CS_PORT" ]] || { cat "$WORK/caresync.err" >&2; die "caresync did not report its port"; }
CS="http://127.0.0.1:$CS_PORT"

# Sign up, keep the cookie and the CSRF token, add records.
SIGNUP="$(curl -sS --fail-with-body -c "$WORK/cookies" -H 'Content-Type: application/json' \
  -d '{"username":"bench","password":"bench-password-123"}' "$CS/api/auth/signup")" \
  || die "sign-up failed: $SIGNUP"
CSRF="$(printf '%s' "$SIGNUP" | sed -n 's/.*"csrf_token":"\([^"]*\)".*/\1/p')"
[[ -n "$CSRF" ]] || die "no csrf_token in sign-up response: $SIGNUP"
SESSION="$(awk '$6 == "cs_session" { print $7 }' "$WORK/cookies")"
[[ -n "$SESSION" ]] || die "no cs_session cookie after sign-up"

for i in $(seq "$NRECORDS"); do
  curl -sS --fail-with-body -o /dev/null -b "$WORK/cookies" -H 'Content-Type: application/json' \
    -H "X-CSRF-Token: $CSRF" \
    -d "{\"kind\":\"symptom\",\"title\":\"Benchmark symptom $i\",\"onset\":\"2026-11-01\"}" \
    "$CS/api/records" || die "POST /api/records #$i failed"
done

# Body sizes of the two measured responses.
curl -sS --fail-with-body -o "$WORK/health.body" "$CS/api/health" || die "GET /api/health failed"
curl -sS --fail-with-body -o "$WORK/records.body" -H "Cookie: cs_session=$SESSION" "$CS/api/records" \
  || die "GET /api/records failed"
HEALTH_SIZE=$(stat -c %s "$WORK/health.body")
RECORDS_SIZE=$(stat -c %s "$WORK/records.body")
got=$(grep -o '"id":"' "$WORK/records.body" | wc -l)
[[ "$got" -eq "$NRECORDS" ]] || die "GET /api/records returned $got records, expected $NRECORDS"

# ---- nginx -------------------------------------------------------------------------------------
# Own prefix, config, pid, logs and temp paths under $WORK, so it needs no root and touches
# nothing of a system nginx. When run as root the workers drop to nobody: keep the files readable.
NG="$WORK/nginx"
mkdir -p "$NG/html" "$NG/logs" "$NG/tmp"
chmod 755 "$WORK" "$NG" "$NG/html"
head -c "$HEALTH_SIZE" /dev/zero | tr '\0' 'h' >"$NG/html/health.json"
head -c "$RECORDS_SIZE" /dev/zero | tr '\0' 'r' >"$NG/html/records.json"
chmod 644 "$NG/html/"*.json

port_free() {  # 0 when nothing listens on TCP port $1 on loopback
  if command -v ss >/dev/null 2>&1; then
    [[ -z "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 1; fi
  fi
}

start_nginx() {  # start_nginx PORT → 0 when it serves
  local port=$1
  cat >"$NG/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $NG/nginx.pid;
error_log $NG/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type application/json;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path $NG/tmp/body;
    proxy_temp_path $NG/tmp/proxy;
    fastcgi_temp_path $NG/tmp/fastcgi;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    server {
        listen 127.0.0.1:$port;
        root $NG/html;
    }
}
EOF
  "$NGINX" -p "$NG" -c "$NG/nginx.conf" -e "$NG/logs/error.log" >"$NG/logs/stdout" 2>&1 &
  NGINX_PID=$!
  for _ in $(seq 50); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/health.json" 2>/dev/null; then return 0; fi
    kill -0 "$NGINX_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -TERM "$NGINX_PID" 2>/dev/null || true
  wait "$NGINX_PID" 2>/dev/null || true
  NGINX_PID=""
  return 1
}

NG_PORT=""
for _ in $(seq 10); do
  p=$((20000 + RANDOM % 40000))
  port_free "$p" || continue
  if start_nginx "$p"; then NG_PORT=$p; break; fi
done
if [[ -z "$NG_PORT" ]]; then
  cat "$NG/logs/error.log" "$NG/logs/stdout" >&2 2>/dev/null || true
  die "nginx did not start"
fi
NGX="http://127.0.0.1:$NG_PORT"
for f in health records; do
  s=$(curl -fsS "$NGX/$f.json" | wc -c)
  want=$([[ $f == health ]] && echo "$HEALTH_SIZE" || echo "$RECORDS_SIZE")
  [[ "$s" -eq "$want" ]] || die "nginx $f.json is $s bytes, expected $want"
done

# ---- wrk ---------------------------------------------------------------------------------------
to_ms() {  # wrk latency ("812.00us", "1.23ms", "2.01s", "1.5m") → milliseconds
  awk -v v="$1" 'BEGIN {
    n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
    printf "%.2f", n }'
}

FAILED=0
declare -A RPS P99 NON2XX SOCKERR
run_wrk() {  # run_wrk KEY URL [wrk args…]
  local key=$1 url=$2; shift 2
  local out="$WORK/wrk-$key.txt"
  echo "  wrk $key: $url" >&2
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" "$url" >"$out" 2>&1 || {
    cat "$out" >&2; die "wrk failed for $key"; }
  RPS[$key]=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$out")
  local p99
  p99=$(awk '$1 == "99%" { print $2 }' "$out")
  [[ -n "${RPS[$key]}" && -n "$p99" ]] || { cat "$out" >&2; die "could not parse wrk output for $key"; }
  P99[$key]=$(to_ms "$p99")
  NON2XX[$key]=$(awk -F': *' '/Non-2xx or 3xx responses/ { print $2 }' "$out")
  NON2XX[$key]=${NON2XX[$key]:-0}
  SOCKERR[$key]=$(sed -n 's/^ *Socket errors: *//p' "$out")
  if [[ "${NON2XX[$key]}" -gt 0 ]]; then FAILED=1; fi
  if [[ $key == cs-* ]] && ! kill -0 "$CS_PID" 2>/dev/null; then
    cat "$out" "$WORK/caresync.err" >&2
    die "caresync died during $key"
  fi
  if [[ $key == ng-* ]] && ! kill -0 "$NGINX_PID" 2>/dev/null; then
    die "nginx died during $key"
  fi
}

NPROC=$(nproc)
echo "CareSync HTTP benchmark — $(date -u '+%Y-%m-%d %H:%M:%S UTC')" >&2
echo "running wrk -t$THREADS -c$CONNS -d$DURATION --latency (4 runs, one after another)…" >&2
run_wrk cs-health  "$CS/api/health"
run_wrk ng-health  "$NGX/health.json"
run_wrk cs-records "$CS/api/records" -H "Cookie: cs_session=$SESSION"
run_wrk ng-records "$NGX/records.json"

# ---- report ------------------------------------------------------------------------------------
echo
echo "CareSync HTTP benchmark — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: nproc=$NPROC, $(uname -sm); caresync: $CARESYNC_BIN (--threads 2); nginx: $("$NGINX" -v 2>&1 | sed 's|.*/||') (worker_processes 2)"
echo "load: wrk -t$THREADS -c$CONNS -d$DURATION --latency, keep-alive, loopback"
echo "note: caresync, nginx and wrk share the same $NPROC core(s); absolute numbers are"
echo "      machine-bound, the ratio is what counts. nginx serves static files whose size"
echo "      equals each CareSync response body."
echo "goal: caresync req/s >= ${GOAL}x nginx req/s on every row"
echo
fmt='%-24s | %14s | %14s | %11s | %11s | %17s\n'
# shellcheck disable=SC2059
printf "$fmt" "endpoint (body bytes)" "caresync req/s" "caresync p99" "nginx req/s" "nginx p99" "ratio (cs/nginx)"
# shellcheck disable=SC2059
printf "$fmt" "------------------------" "--------------" "--------------" "-----------" "-----------" "-----------------"
verdict=0
for row in "health:GET /api/health:$HEALTH_SIZE" "records:GET /api/records:$RECORDS_SIZE"; do
  IFS=: read -r k label size <<<"$row"
  ratio=$(awk -v a="${RPS[cs-$k]}" -v b="${RPS[ng-$k]}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  mark=$(awk -v r="$ratio" -v g="$GOAL" 'BEGIN { print (r + 0 >= g + 0 ? "ok" : "BELOW") }')
  [[ $mark == ok ]] || verdict=1
  # shellcheck disable=SC2059
  printf "$fmt" "$label ($size)" "${RPS[cs-$k]}" "${P99[cs-$k]} ms" "${RPS[ng-$k]}" "${P99[ng-$k]} ms" "${ratio}x $mark"
done
echo
for key in cs-health ng-health cs-records ng-records; do
  if [[ "${NON2XX[$key]}" -gt 0 ]]; then echo "ERROR: $key: ${NON2XX[$key]} non-2xx/3xx responses"; fi
  if [[ -n "${SOCKERR[$key]}" ]]; then echo "warning: $key: socket errors: ${SOCKERR[$key]}"; fi
done
if [[ -s "$WORK/caresync.err" ]] && grep -qv 'no --tls-cert' "$WORK/caresync.err"; then
  echo "caresync stderr (warn and above):"
  grep -v 'no --tls-cert' "$WORK/caresync.err" | head -n 20 | sed 's/^/  /'
fi
if ((FAILED)); then
  echo "FAIL: non-2xx responses under load — the numbers above measure errors, not the service."
  exit 1
fi
if ((verdict)); then
  echo "result: below the goal (${GOAL}x nginx) on at least one endpoint"
else
  echo "result: goal met (>= ${GOAL}x nginx) on every endpoint"
fi
