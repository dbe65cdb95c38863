#!/usr/bin/env bash
# Record test fixtures from real Go processes (never hand-written).
#
#   tests/testdata/record.sh              # every section
#   tests/testdata/record.sh profiles     # only the named section(s)
#
# Needs scripts/bootstrap.sh to have run (Go 1.19, a current Go, .venv).
# Each section below is owned by the code it feeds; keep them delimited.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
PY="$REPO/.venv/bin/python"

# Print the path of a Go toolchain by label ("go1.19" or "current"), or nothing.
toolchain() {
  "$PY" -c "import sys; sys.path.insert(0, '$REPO/tests'); import support; \
print(support.go_toolchains().get('$1', ''))"
}

# Build the demo service with toolchain $1 (cached) and print the binary's path.
demo_binary() {
  "$PY" -c "import sys; sys.path.insert(0, '$REPO/tests'); from pathlib import Path; \
import demo_support; print(demo_support.build_demo(Path('$1')))"
}

# ==== section: profiles ======================================================
# Owner: pprof analysis (issue 3). Writes tests/testdata/pprof/<go1.N>/ from the
# demo service (deploy/demo-service), once per Go toolchain:
#   heap-base.pb.gz, heap.pb.gz           two heap snapshots a few seconds apart
#   heap.top.<index>.txt                  go tool pprof -top of heap.pb.gz, all 4 indices
#   heap.base.top.<index>.txt             the same with -base heap-base.pb.gz
#   goroutine.pb.gz / .debug1.txt / .debug2.txt   the three goroutine formats
#   goroutine.top.txt                     go tool pprof -top of goroutine.pb.gz
#   goroutineleak.*                       the same for /debug/pprof/goroutineleak (Go 1.26+)
#   VERSION                               go env GOVERSION
# Leaks run for LEAK_FOR and then stop, so the goroutine formats fetched one
# after another see the same goroutines; recording waits WAIT_SECONDS more so
# the leaked goroutines have been blocked for over a minute ("N minutes").
record_profiles() {
  local leak_for=${LEAK_FOR:-8s} wait_seconds=${WAIT_SECONDS:-75}
  local label go bin ver dir log pid addr
  for label in go1.19 current; do
    go="$(toolchain "$label")"
    if [ -z "$go" ]; then
      echo "record: profiles: no $label toolchain, skipped" >&2
      continue
    fi
    bin="$(demo_binary "$go")"
    ver="$("$go" env GOVERSION)"
    dir="$HERE/pprof/$(echo "$ver" | sed -E 's/^(go[0-9]+\.[0-9]+).*/\1/')"
    rm -rf "$dir" && mkdir -p "$dir"
    echo "$ver" >"$dir/VERSION"
    log="$(mktemp)"
    "$bin" -listen=127.0.0.1:0 -mem-profile-rate=4096 -leak-for="$leak_for" \
      -label-rate=100 -goroutine-rate=25 -cache-rate=100 >"$log" 2>&1 &
    pid=$!
    # shellcheck disable=SC2064
    trap "kill $pid 2>/dev/null || true" EXIT
    for _ in $(seq 100); do
      addr="$(sed -n 's/^listening on //p' "$log")"
      [ -n "$addr" ] && break
      sleep 0.1
    done
    [ -n "$addr" ] || { cat "$log" >&2; exit 1; }
    local url="http://$addr/debug/pprof"
    echo "record: profiles: $ver at $addr -> $dir" >&2
    sleep 2
    curl -fsS "$url/heap" -o "$dir/heap-base.pb.gz"
    sleep 4
    curl -fsS "$url/heap" -o "$dir/heap.pb.gz"
    echo "record: profiles: waiting ${wait_seconds}s for blocked minutes to show" >&2
    sleep "$wait_seconds"
    local leak=0
    if curl -fsS "$url/goroutineleak?debug=1" -o "$dir/goroutineleak.debug1.txt" 2>/dev/null; then
      leak=1
    else
      rm -f "$dir/goroutineleak.debug1.txt"
    fi
    curl -fsS "$url/goroutine?debug=0" -o "$dir/goroutine.pb.gz"
    curl -fsS "$url/goroutine?debug=1" -o "$dir/goroutine.debug1.txt"
    curl -fsS "$url/goroutine?debug=2" -o "$dir/goroutine.debug2.txt"
    if [ "$leak" = 1 ]; then
      curl -fsS "$url/goroutineleak?debug=0" -o "$dir/goroutineleak.pb.gz"
      curl -fsS "$url/goroutineleak?debug=2" -o "$dir/goroutineleak.debug2.txt"
    fi
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    trap - EXIT
    rm -f "$log"

    local top=("$go" tool pprof -top -nodefraction=0 -unit=B)
    for si in alloc_objects alloc_space inuse_objects inuse_space; do
      "${top[@]}" -sample_index="$si" "$dir/heap.pb.gz" >"$dir/heap.top.$si.txt" 2>/dev/null
      "${top[@]}" -sample_index="$si" -base "$dir/heap-base.pb.gz" "$dir/heap.pb.gz" \
        >"$dir/heap.base.top.$si.txt" 2>/dev/null
    done
    # Counts, not bytes: no -unit here.
    "$go" tool pprof -top -nodefraction=0 "$dir/goroutine.pb.gz" >"$dir/goroutine.top.txt" 2>/dev/null
    if [ "$leak" = 1 ]; then
      "$go" tool pprof -top -nodefraction=0 "$dir/goroutineleak.pb.gz" \
        >"$dir/goroutineleak.top.txt" 2>/dev/null
    fi
  done
}
# ==== end section: profiles ==================================================

# ==== section: metrics =======================================================
# Owner: exposition/cardinality (issue 2). Writes tests/testdata/metrics/ from
# real Go processes using client_golang: Debian's prometheus (text, gzip),
# prometheus-alertmanager, prometheus-pushgateway after pushes with a label
# explosion, omserver (tests/testdata/metrics/omserver: OpenMetrics, text, gzip)
# and two scrapes of the leaky demo service. See tests/testdata/record_metrics.py.
record_metrics() {
  "$PY" "$HERE/record_metrics.py"
}
# ==== end section: metrics ===================================================

# ==== section: report ========================================================
# Owner: offenders/report (issue 4). Writes tests/testdata/report/<set>/ with
# `cardguard report URL --save`: the leaky demo on the current Go and on Go 1.19,
# the healthy demo, and Debian's prometheus. See tests/testdata/record_report.py.
record_report() {
  "$PY" "$HERE/record_report.py"
}
# ==== end section: report ====================================================

# ==== section: protobuf ======================================================
# Owner: protobuf exposition (issue 14). Writes tests/testdata/metrics/nhserver.pb,
# nhserver.txt and nhserver-10k.pb.gz from tests/testdata/metrics/nhserver
# (client_golang with native histograms). See tests/testdata/record_protobuf.py.
record_protobuf() {
  "$PY" "$HERE/record_protobuf.py"
}
# ==== end section: protobuf ==================================================

sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(profiles metrics report protobuf)
for s in "${sections[@]}"; do
  "record_$s"
done
