#!/usr/bin/env bash
# Runs fuzz targets, one at a time, each for SECONDS, and prints a summary table of
# executions and coverage (libFuzzer's `cov:` / `ft:`).
#
#   fuzz/run.sh TARGET|all SECONDS
#
# Environment: FUZZ_SANITIZER (address, the default, or none), FUZZ_NICE (nice level, 10),
# FUZZ_BUILD=0 to skip the build. New corpus entries go to fuzz/corpus/TARGET (not
# committed); the committed seeds in fuzz/seeds/TARGET are read too. Crashes land in
# fuzz/artifacts/TARGET; logs in fuzz/logs/TARGET.log. Exit status 1 when a target crashed.
set -uo pipefail
cd "$(dirname "$0")"

if [ $# -ne 2 ]; then
    echo "usage: $0 TARGET|all SECONDS" >&2
    exit 2
fi
which="$1"
seconds="$2"
sanitizer="${FUZZ_SANITIZER:-address}"
nice_level="${FUZZ_NICE:-10}"
# cargo-fuzz passes -Zsanitizer and friends: the stable toolchain accepts them for this
# build only with RUSTC_BOOTSTRAP (see fuzz/README.md).
export RUSTC_BOOTSTRAP=1

if [ "$which" = all ]; then
    mapfile -t targets < <(cargo fuzz list | grep -vx seeds)
else
    targets=("$which")
fi

if [ "${FUZZ_BUILD:-1}" != 0 ]; then
    # Target by target: `cargo fuzz build` alone builds every bin, the `seeds` generator too,
    # which does not link libFuzzer and so, without a sanitizer's runtime, misses the coverage
    # callbacks (`-s none`). The dependencies are built once.
    for t in "${targets[@]}"; do
        nice -n "$nice_level" cargo fuzz build -s "$sanitizer" "$t" || exit 1
    done
fi

mkdir -p logs
status=0
rows=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    log="logs/$t.log"
    echo "== $t: ${seconds}s" >&2
    # One process, one job, one worker (libFuzzer's default; the machine has 2 cores).
    nice -n "$nice_level" cargo fuzz run -s "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1
    rc=$?
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
    cov=$(echo "$last" | grep -oE 'cov: [0-9]+' | grep -oE '[0-9]+')
    ft=$(echo "$last" | grep -oE 'ft: [0-9]+' | grep -oE '[0-9]+')
    corp=$(echo "$last" | grep -oE 'corp: [0-9]+/[0-9a-zA-Z]+' | cut -d' ' -f2)
    if [ -z "$execs" ]; then
        execs=$(echo "$last" | grep -oE '^#[0-9]+' | tr -d '#')
    fi
    result=ok
    if [ $rc -ne 0 ]; then
        result="CRASH (rc $rc, see $log, artifacts/$t)"
        status=1
    fi
    rows+=("$(printf '%-16s %12s %8s %7s %7s %12s  %s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")")
done

printf '\n%-16s %12s %8s %7s %7s %12s  %s\n' target executions exec/s cov ft corpus result
for row in "${rows[@]}"; do
    echo "$row"
done
exit $status
