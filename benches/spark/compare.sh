#!/usr/bin/env bash
# Spark Streaming vs Brooklet on the same socket word count (not run in CI).
#
#   benches/spark/compare.sh [RATE ...]     # lines per second, default:
#                                           # 1000 2000 5000 10000 20000 50000 100000 200000 400000 800000
#
# (The low rates are for Spark: on 2 cores, with another job running, each
# PySpark batch of this job took 0.8-2.5 s at 2 000 lines/s.)
#
# The job, in both engines: split each line into words on spaces, count per
# word over a 10 s window sliding every 1 s, with 1 s batches. Spark runs
# wordcount.py (PySpark DStreams, local[2]) twice, with and without the
# inverse function of reduceByKeyAndWindow (in PySpark the inverse form,
# the one the programming guide shows, costs more per batch: a join and
# extra shuffles); Brooklet runs wordcount.sql with the release binary.
# For each engine and rate, linegen.py listens on a free local port, the
# engine connects to it, and lines are sent for DURATION seconds; the
# first WARMUP seconds are ignored. A rate "keeps up"
# when, after warm-up, every batch's scheduling delay is under the batch
# interval (1000 ms), the engine processed >= 99% of the lines sent, and
# the generator managed to send >= 99% of its target (see analyze.py).
# The script reports, per engine, the highest rate that keeps up and the
# CPU seconds (user + sys of the engine's whole process tree) per million
# lines at that rate, as Markdown in benches/spark/results.md.
#
# Environment (all optional):
#   ENGINES="spark spark-plain brooklet"   engines to run, in this order:
#                             spark        reduceByKeyAndWindow(add, sub, 10, 1), checkpointed
#                             spark-plain  reduceByKeyAndWindow(add, None, 10, 1) (no inverse)
#                             brooklet     wordcount.sql
#   DURATION=45               seconds of sending per rate
#   WARMUP=15                 seconds after the engine connects that are ignored (the
#                             10 s window fills, and Spark's first, JIT-slow batches drain)
#   DRAIN=5                   seconds the engine keeps running after sending ends
#   KEEP_GOING=0              1: run every rate even after an engine fell behind at a lower one
#   BROOKLET_BIN=path         use this brooklet binary instead of `cargo build --release -p brooklet-cli`
#   RESULTS_DIR=dir           raw logs (default benches/spark/results/<date-time>, gitignored)
#   JAVA_HOME                 a Java 17 (or 11) for Spark 3.5; found under /usr/lib/jvm otherwise
#
# First run: creates benches/spark/.venv and installs pyspark 3.5 from PyPI
# into it (about 320 MB), and builds Brooklet in release mode (honouring
# CARGO_TARGET_DIR). Each run's logs stay in RESULTS_DIR/<engine>-<rate>/:
# linegen.log, batches.log, engine.out/engine.err, meta.txt, summary.txt.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$here/.venv"

if [[ $# -gt 0 ]]; then
    rates=("$@")
else
    rates=(1000 2000 5000 10000 20000 50000 100000 200000 400000 800000)
fi
for r in "${rates[@]}"; do
    [[ "$r" =~ ^[1-9][0-9]*$ ]] || { echo "compare: a rate is a positive number of lines per second, not '$r'" >&2; exit 2; }
done
mapfile -t rates < <(printf '%s\n' "${rates[@]}" | sort -n -u)
read -r -a engines <<< "${ENGINES:-spark spark-plain brooklet}"
duration="${DURATION:-45}"
warmup="${WARMUP:-15}"
drain="${DRAIN:-5}"
keep_going="${KEEP_GOING:-0}"
results="${RESULTS_DIR:-$here/results/$(date +%Y%m%d-%H%M%S)}"
for v in "$duration" "$warmup" "$drain"; do
    [[ "$v" =~ ^[0-9]+$ ]] || { echo "compare: DURATION, WARMUP and DRAIN are whole seconds, not '$v'" >&2; exit 2; }
done
(( warmup < duration )) || { echo "compare: WARMUP ($warmup) must be less than DURATION ($duration)" >&2; exit 2; }

say() { echo "compare: $*" >&2; }
die() { say "error: $*"; exit 1; }
now_ms() { date +%s%3N; }
# Sleeps in the background so that a signal's trap runs at once.
nap() { sleep "$1" & wait $! || true; }
sleep_until_ms() {
    local left=$(( $1 - $(now_ms) ))
    if (( left > 0 )); then nap "$(( left / 1000 )).$(printf %03d $(( left % 1000 )))"; fi
}
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- cleanup: the processes of the run in progress -------------------------
# Engines run under setsid (their own session, so a Ctrl-C in the terminal
# reaches only this script, whose trap stops them). Spark's tree is the
# python driver, the JVM, and PySpark's worker daemon, which moves to a
# process group of its own: kill_tree signals every descendant by pid.
gen_pid=""
engine_pid=""
kill_tree() {  # SIGNAL PID
    local pids
    pids="$(python3 "$here/cputree.py" --pids "$2" 2>/dev/null || true)"
    if [[ -n "$pids" ]]; then
        # shellcheck disable=SC2086  # one pid per word
        kill "-$1" $pids 2>/dev/null || true
    fi
}
cleanup() {
    if [[ -n "$gen_pid" ]]; then kill "$gen_pid" 2>/dev/null || true; fi
    if [[ -n "$engine_pid" ]]; then
        kill_tree TERM "$engine_pid"
        sleep 2
        kill_tree KILL "$engine_pid"
    fi
    gen_pid=""
    engine_pid=""
}
# Cleanup comes first in each trap: a closed stderr (`| head`) must not
# stop it from running.
trap cleanup EXIT
trap 'cleanup; say "interrupted"; exit 130' INT TERM
trap 'cleanup; exit 141' PIPE

# Stops the engine: SIGTERM to its main process (Brooklet finishes the
# current batch; wordcount.py stops the StreamingContext, which stops the
# JVM and its Python workers), then kills what is left of the tree after 30 s.
stop_engine() {
    local pid="$1" waited=0 left
    kill -TERM "$pid" 2>/dev/null || true
    while (( waited < 300 )); do
        left="$(python3 "$here/cputree.py" --pids "$pid" 2>/dev/null || true)"
        [[ -n "$left" ]] || break
        sleep 0.1
        waited=$(( waited + 1 ))
    done
    if (( waited >= 300 )); then
        say "the engine did not stop within 30 s; killing it"
        kill_tree KILL "$pid"
    fi
    wait "$pid" 2>/dev/null || true
}

# --- Spark: Java and a venv with pyspark 3.5 -------------------------------
java_major() {  # prints 8, 11, 17, ... for a Java home
    local v
    v="$("$1/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9.]*\).*/\1/p' | head -n 1)"
    if [[ "$v" == 1.* ]]; then v="${v#1.}"; fi
    echo "${v%%.*}"
}
setup_spark() {
    local candidate major=""
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        major="$(java_major "$JAVA_HOME")"
        if [[ "$major" != 17 && "$major" != 11 ]]; then
            say "JAVA_HOME=$JAVA_HOME is Java $major; Spark 3.5 needs 17 (or 11): looking for a Java 17"
            major=""
        fi
    fi
    if [[ -z "$major" ]]; then
        JAVA_HOME=""
        for candidate in /usr/lib/jvm/*17* "$(dirname "$(dirname "$(readlink -f "$(command -v java || echo /nonexistent)")")")"; do
            if [[ -x "$candidate/bin/java" && "$(java_major "$candidate")" == 17 ]]; then
                JAVA_HOME="$candidate"
                break
            fi
        done
        [[ -n "$JAVA_HOME" ]] || die "no Java 17 found (looked in /usr/lib/jvm and PATH): install openjdk-17-jdk-headless or set JAVA_HOME"
    fi
    export JAVA_HOME
    export PATH="$JAVA_HOME/bin:$PATH"
    say "Java: $JAVA_HOME (Java $(java_major "$JAVA_HOME"))"
    if ! "$venv/bin/python" -c 'import pyspark, sys; sys.exit(not pyspark.__version__.startswith("3.5."))' 2>/dev/null; then
        say "creating $venv and installing pyspark 3.5 (once; about 320 MB)"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet 'pyspark==3.5.*'
    fi
    spark_version="$("$venv/bin/python" -c 'import pyspark; print(pyspark.__version__)')"
    say "PySpark $spark_version in $venv"
    # The driver and the workers use the venv's python.
    export PYSPARK_PYTHON="$venv/bin/python" PYSPARK_DRIVER_PYTHON="$venv/bin/python"
    # Everything is local: keep Spark off the network interfaces.
    export SPARK_LOCAL_IP=127.0.0.1
}

# --- Brooklet: the release binary ------------------------------------------
setup_brooklet() {
    if [[ -n "${BROOKLET_BIN:-}" ]]; then
        brooklet="$BROOKLET_BIN"
        say "Brooklet: $brooklet (BROOKLET_BIN, not rebuilt)"
    else
        say "building Brooklet: cargo build --release -p brooklet-cli"
        (cd "$repo" && cargo build --release -p brooklet-cli) >&2
        local target
        # The target directory cargo used (CARGO_TARGET_DIR, .cargo/config or target/).
        target="$(cd "$repo" && cargo metadata --format-version 1 --no-deps \
            | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
        brooklet="$target/release/brooklet"
    fi
    [[ -x "$brooklet" ]] || die "no brooklet binary at $brooklet"
    brooklet_version="$("$brooklet" --version 2>/dev/null || echo unknown)"
}

# --- one engine at one rate ------------------------------------------------
# Runs the job, writes the run directory's meta.txt and summary.txt.
# Returns 0 if the engine kept up, 1 otherwise.
run_one() {
    local engine="$1" rate="$2"
    local dir="$results/$engine-$rate" port
    mkdir -p "$dir"
    port="$(free_port)"
    say "$engine at $rate lines/s for $duration s (port $port, logs in $dir)"
    {
        echo "engine=$engine"
        echo "rate=$rate"
        echo "duration_s=$duration"
        echo "warmup_s=$warmup"
        echo "port=$port"
    } > "$dir/meta.txt"

    python3 "$here/linegen.py" --port "$port" --rate "$rate" --duration "$duration" \
        > "$dir/linegen.log" 2> "$dir/linegen.err" &
    gen_pid=$!
    # Until it listens (it first builds its pool of lines).
    local waited=0
    until grep -q '^listening' "$dir/linegen.log" 2>/dev/null; do
        kill -0 "$gen_pid" 2>/dev/null || die "linegen.py exited: $(cat "$dir/linegen.err")"
        sleep 0.1
        waited=$(( waited + 1 ))
        (( waited < 600 )) || die "linegen.py did not start listening within 60 s"
    done

    case "$engine" in
        spark|spark-plain)
            local window=inverse
            if [[ "$engine" == spark-plain ]]; then window=plain; fi
            rm -rf "$dir/checkpoint"
            setsid "$venv/bin/python" "$here/wordcount.py" --port "$port" \
                --batch-log "$dir/batches.log" --checkpoint-dir "$dir/checkpoint" --window "$window" \
                --max-seconds $(( duration + drain + 300 )) \
                > "$dir/engine.out" 2> "$dir/engine.err" &
            ;;
        brooklet)
            sed "s/port = 9999,/port = $port,/" "$here/wordcount.sql" > "$dir/wordcount.sql"
            grep -q "port = $port," "$dir/wordcount.sql" || die "could not set the port in $dir/wordcount.sql"
            # Query output is discarded; --progress lines go to stderr.
            setsid "$brooklet" run "$dir/wordcount.sql" --progress \
                > /dev/null 2> "$dir/engine.err" &
            ;;
        *) die "unknown engine '$engine' (ENGINES may name spark, spark-plain and brooklet)" ;;
    esac
    engine_pid=$!

    # The clock starts when the engine's receiver connects (Spark takes a
    # few seconds to start its JVM).
    local ok=1 connect_ms=""
    waited=0
    until connect_ms="$(sed -n 's/^connected t_ms=//p' "$dir/linegen.log")" && [[ -n "$connect_ms" ]]; do
        if ! kill -0 "$engine_pid" 2>/dev/null; then say "$engine exited before connecting; see $dir/engine.err"; ok=0; break; fi
        if ! kill -0 "$gen_pid" 2>/dev/null; then say "linegen.py ended before a client connected; see $dir/linegen.err"; ok=0; break; fi
        sleep 0.2
        waited=$(( waited + 1 ))
        if (( waited >= 900 )); then say "$engine did not connect within 180 s"; ok=0; break; fi
    done

    if (( ok )); then
        echo "connect_ms=$connect_ms" >> "$dir/meta.txt"
        # CPU readings of the engine's process tree: at the end of warm-up
        # and at the end of sending; their difference is the steady-state
        # CPU (startup and JIT warm-up excluded). See cputree.py.
        local cpu t gen_rc=0
        sleep_until_ms $(( connect_ms + warmup * 1000 ))
        if cpu="$(python3 "$here/cputree.py" "$engine_pid")"; then
            t="$(now_ms)"
            echo "t1_ms=$t" >> "$dir/meta.txt"
            echo "cpu1_s=${cpu%% *}" >> "$dir/meta.txt"
        else
            say "$engine died during warm-up; see $dir/engine.err"; ok=0
        fi
        wait "$gen_pid" || gen_rc=$?
        gen_pid=""
        (( gen_rc == 0 )) || say "linegen.py exited with $gen_rc: $(cat "$dir/linegen.err")"
        if (( ok )) && cpu="$(python3 "$here/cputree.py" "$engine_pid")"; then
            t="$(now_ms)"
            echo "t2_ms=$t" >> "$dir/meta.txt"
            echo "cpu2_s=${cpu%% *}" >> "$dir/meta.txt"
        elif (( ok )); then
            say "$engine died while lines were sent; see $dir/engine.err"; ok=0
        fi
        # Let the last batches run, then read the total (startup included).
        nap "$drain"
        if (( ok )) && cpu="$(python3 "$here/cputree.py" "$engine_pid")"; then
            echo "cpu_end_s=${cpu%% *}" >> "$dir/meta.txt"
        fi
    fi
    if [[ -s "$dir/linegen.err" ]]; then say "linegen: $(cat "$dir/linegen.err")"; fi

    stop_engine "$engine_pid"
    engine_pid=""
    if [[ -n "$gen_pid" ]]; then kill "$gen_pid" 2>/dev/null || true; wait "$gen_pid" 2>/dev/null || true; gen_pid=""; fi
    if [[ "$engine" == brooklet ]]; then
        grep '^progress: ' "$dir/engine.err" > "$dir/batches.log" || true
    fi
    rm -rf "$dir/checkpoint"

    local summary
    summary="$(python3 "$here/analyze.py" run "$dir")"
    say "  $summary"
    grep -qx 'verdict=keeps up' "$dir/summary.txt"
}

# --- main ------------------------------------------------------------------
mkdir -p "$results"
spark_version="-"
brooklet_version="-"
spark_ready=0
for engine in "${engines[@]}"; do
    case "$engine" in
        spark|spark-plain) if (( ! spark_ready )); then setup_spark; spark_ready=1; fi ;;
        brooklet) setup_brooklet ;;
        *) die "unknown engine '$engine' (ENGINES may name spark, spark-plain and brooklet)" ;;
    esac
done
{
    echo "rates=${rates[*]}"
    echo "engines=${engines[*]}"
    echo "duration=$duration"
    echo "warmup=$warmup"
    echo "drain=$drain"
    echo "words=10"
    echo "vocab=1000"
    echo "cores=$(nproc)"
    echo "spark=$spark_version"
    echo "java=$( (( spark_ready )) && java_major "$JAVA_HOME" || echo -)"
    echo "brooklet=$brooklet_version"
    echo "commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
} > "$results/settings.txt"
say "results in $results"

skipped=()
for engine in "${engines[@]}"; do
    behind=0
    for rate in "${rates[@]}"; do
        if (( behind && ! keep_going )); then
            skipped+=("$engine:$rate")
            continue
        fi
        if ! run_one "$engine" "$rate"; then
            behind=1
        fi
    done
done
echo "skipped=${skipped[*]}" >> "$results/settings.txt"

python3 "$here/analyze.py" table "$results" > "$results/results.md"
cp "$results/results.md" "$here/results.md"
say "table written to $here/results.md (and $results/results.md)"
cat "$here/results.md"
