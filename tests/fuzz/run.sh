#!/bin/sh
# run.sh - run the libFuzzer targets built by `make fuzz-build`.
#
#   FUZZ_SECONDS=600 sh tests/fuzz/run.sh records config
#
# For each target T: build-fuzz/fuzz_T runs for FUZZ_SECONDS with a working
# corpus in build-fuzz/corpus-T (new inputs land there) plus the read-only
# seeds in tests/fuzz/seeds/T, and crash files in build-fuzz/artifacts-T/.
# Prints execs, exec/s and coverage per target and every crash file; exits
# non-zero if any target crashed, leaked, timed out or ran out of memory.
# Run from the repository root. FUZZ_B overrides build-fuzz, FUZZ_ARGS adds
# libFuzzer flags (e.g. FUZZ_ARGS=-jobs=4).
set -u

B=${FUZZ_B:-build-fuzz}
SECONDS_PER=${FUZZ_SECONDS:-600}
SEEDS=tests/fuzz/seeds
[ $# -gt 0 ] || set -- records config

# Dictionaries: the tokens each input format is made of.
write_dicts() {
    cat > "$B/records.dict" <<'EOF'
"{"
"}"
"["
"]"
":"
","
"\""
"\\\""
"\\\\"
"\\/"
"\\u00e9"
"\\ud83d\\ude00"
"true"
"false"
"null"
"-0"
"1e400"
"-1.5E-7"
"9007199254740993"
"9223372036854775808"
"\"result\""
"\"result\":["
"\"wait_time\":"
"\"_id\":"
"\"timestamp\":"
"\"_insertion_epoch_timestamp\":"
"{\"result\":[{}]}"
EOF
    cat > "$B/config.dict" <<'EOF'
"="
":"
";"
","
"{"
"}"
"("
")"
"["
"]"
"\""
"#"
"//"
"/*"
"*/"
"L"
"0x"
"true"
"false"
"@include \""
"4294967296"
"99999999999999999999"
"-2147483649"
"database"
"key_file"
"output_dir"
"log"
"level"
"format"
"workers"
"fetch"
"upload"
"tenant_defaults"
"interval"
"lookback"
"overlap"
"page_size"
"max_records"
"window"
"slice"
"batch_max_bytes"
"retry_wait_max"
"prune_margin"
"http"
"connect_timeout"
"low_speed_time"
"total_timeout"
"max_body"
"ca_bundle"
"proxy"
"gcs"
"endpoint"
"credentials"
"gzip"
"outbox"
"limit_bytes"
EOF
}

max_len() {
    case $1 in
    records) echo 65536 ;;
    config) echo 16384 ;;
    *) echo 4096 ;;
    esac
}

# Summarize one run from its log: execs, exec/s, coverage, peak RSS.
summary() {
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$1" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$1" | tail -n 1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$1" | tail -n 1)
    cov=$(grep -E '^#[0-9]+' "$1" | tail -n 1 | sed -n 's/.*\(cov: [0-9]* ft: [0-9]* corp: [^ ]*\).*/\1/p')
    echo "fuzz $2: execs=${execs:-?} exec/s=${rate:-?} ${cov:-cov: ?} rss_mb=${rss:-?}"
}

run_one() {
    t=$1
    bin=$B/fuzz_$t corpus=$B/corpus-$t art=$B/artifacts-$t log=$B/fuzz-$t.log
    if [ ! -x "$bin" ]; then
        echo "fuzz $t: $bin not built (make fuzz-build)" >&2
        return 1
    fi
    mkdir -p "$corpus" "$art"
    # Every crash ever found stays fixed: replay the reproducers first.
    if [ -d "tests/fuzz/regress/$t" ] &&
       ! "$bin" tests/fuzz/regress/"$t"/* > "$B/regress-$t.log" 2>&1; then
        echo "fuzz $t: a regression reproducer fails again; see $B/regress-$t.log" >&2
        return 1
    fi
    touch "$B/.fuzz-start-$t"
    dict=""
    [ -f "$B/$t.dict" ] && dict="-dict=$B/$t.dict"
    echo "== fuzz $t: ${SECONDS_PER}s, corpus $corpus, log $log"
    # shellcheck disable=SC2086
    "$bin" -max_total_time="$SECONDS_PER" -max_len="$(max_len "$t")" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$art/" $dict ${FUZZ_ARGS:-} \
        "$corpus" "$SEEDS/$t" > "$log" 2>&1
    rc=$?
    summary "$log" "$t"
    found=$(find "$art" -type f -newer "$B/.fuzz-start-$t" \( -name 'crash-*' -o \
            -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) 2>/dev/null)
    if [ $rc -ne 0 ] || [ -n "$found" ]; then
        echo "fuzz $t: FAILED (exit $rc); see $log" >&2
        for f in $found; do echo "  artifact: $f" >&2; done
        grep -E '^(==[0-9]+==ERROR|SUMMARY|    #[0-5] )' "$log" | head -n 12 >&2
        return 1
    fi
    return 0
}

mkdir -p "$B/tmp" || exit 1
# fuzz_config's private directory; one left by a crashed run goes with the build.
TMPDIR=$(cd "$B/tmp" && pwd)
export TMPDIR
write_dicts
status=0
for t in "$@"; do
    run_one "$t" || status=1
done
exit $status
