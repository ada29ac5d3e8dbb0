#!/usr/bin/env bash
# Fuzzes the SQL front end (parse with Brooklet's dialect, then plan) for
# a while: `fuzz/run.sh [seconds]` (default 60). Not part of CI: the
# instrumented release build of DataFusion takes a long while on 2 cores.
#
# Builds with cargo-fuzz on the stable toolchain (RUSTC_BOOTSTRAP=1 lets it
# pass its -Z flags), seeds the corpus with the statements of the spec
# files, and prints libFuzzer's summary (execs/s, corpus, crashes). Every
# crash found is to become a regression test.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p corpus/sql
# Seeds: each spec file's statements (the part before the first batch), in
# subfolders too, named by the path (`windows/tumble.spec`: `windows-tumble.sql`).
while IFS= read -r spec; do
    name=${spec#../tests/specs/}
    sed '/^== batch/,$d; /^#/d' "$spec" > "corpus/sql/$(printf '%s' "${name%.spec}" | tr / -).sql"
done < <(find ../tests/specs -name '*.spec')
# Deep chains below and past the front end's nesting limit (1 000 levels, issue 14;
# seeds just under it plan for minutes, DataFusion being quadratic in depth):
# operator chains, nested CASE, nested calls, prefix NOTs, parentheses.
repeat() { local out=""; for ((i = 0; i < $2; i++)); do out+="$1"; done; printf '%s' "$out"; }
for n in 200 1001; do
    for op in '+' ' AND ' ' OR ' '||' '*'; do
        name=$(printf '%s' "$op" | tr -d ' ' | tr '+*|' 'pmc')
        printf 'SELECT v%s FROM events;' "$(repeat "$op"'v' "$n")" > "corpus/sql/chain-$name-$n.sql"
    done
    printf 'SELECT %sv%s FROM events;' "$(repeat 'CASE WHEN v>0 THEN ' "$n")" \
        "$(repeat ' END' "$n")" > "corpus/sql/case-$n.sql"
    printf 'SELECT %sv%s FROM events;' "$(repeat 'abs(' "$n")" "$(repeat ')' "$n")" \
        > "corpus/sql/calls-$n.sql"
    printf 'SELECT %s(v>0) FROM events;' "$(repeat 'NOT ' "$n")" > "corpus/sql/not-$n.sql"
    printf 'SELECT %sv%s FROM events;' "$(repeat '(' "$n")" "$(repeat ')' "$n")" \
        > "corpus/sql/parens-$n.sql"
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/brooklet/fuzz-target}"
RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none sql corpus/sql -- \
    -max_total_time="$seconds" -max_len=16384 -print_final_stats=1
