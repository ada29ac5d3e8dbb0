#!/usr/bin/env bash
# Soak test (not in CI): runs a windowed, checkpointed query against a
# socket fed at a steady rate, with a burst every 5 minutes, for MINUTES
# minutes (default 30), and prints the process's resident memory and open
# file descriptors every minute. Both must stay flat.
#
#   scripts/soak.sh [MINUTES] [LINES_PER_SECOND]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-30}"
rate="${2:-20000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brooklet/target}"
cargo build -p brooklet-cli >&2
binary="$CARGO_TARGET_DIR/debug/brooklet"
work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# The feeder: RATE lines per second in 10 ticks, ten times that for 10 s every 5 min.
python3 - "$port" "$rate" <<'PY' &
import socket, sys, time
port, rate = int(sys.argv[1]), int(sys.argv[2])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(1)
peer, _ = server.accept()
n, start = 0, time.time()
while True:
    tick = time.time()
    burst = (tick - start) % 300 < 10
    per_tick = rate // 10 * (10 if burst else 1)
    lines = "".join(f"{n + i},level{(n + i) % 7}\n" for i in range(per_tick))
    n += per_tick
    try:
        peer.sendall(lines.encode())
    except OSError:
        break
    time.sleep(max(0.0, 0.1 - (time.time() - tick)))
PY
sleep 1
cat > "$work/job.sql" <<SQL
SET batch.interval = '1 second';
CREATE SOURCE s (n BIGINT, level TEXT) WITH (connector = 'socket', host = '127.0.0.1', port = $port, format = 'csv');
CREATE SINK counts WITH (connector = 'files', path = '$work/out', format = 'csv');
INSERT INTO counts SELECT level, count(*) AS n, max(n) AS last FROM s GROUP BY hop(INTERVAL '5' SECOND, INTERVAL '60' SECOND), level;
SQL
"$binary" run "$work/job.sql" --checkpoint "$work/checkpoint" > /dev/null 2> "$work/stderr" &
pid=$!
echo "minute,rss_mib,open_fds,output_files"
for minute in $(seq 1 "$minutes"); do
    sleep 60
    rss=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$pid/status")
    fds=$(ls "/proc/$pid/fd" | wc -l)
    # Output files pile up by design (one per window); the soak removes them
    # as a downstream consumer would.
    files=$(ls "$work/out" | wc -l)
    find "$work/out" -name '*.csv' -mmin +1 -delete
    echo "$minute,$rss,$fds,$files"
done
kill -INT "$pid"
wait "$pid"
