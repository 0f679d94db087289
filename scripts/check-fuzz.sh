#!/usr/bin/env bash
# Builds every cargo-fuzz target of fuzz/ (what CI must do), and with FUZZ_RUNS=N also
# runs each one for N executions on its seed corpus (the 1M-execution runs of issue 4
# are not part of CI; fuzz/README.md has their figures).
#
#   scripts/check-fuzz.sh                      build every target
#   FUZZ_RUNS=1000000 scripts/check-fuzz.sh    build, then run each for 1M executions
#   FUZZ_TARGETS="ws_json roundtrip" ...       only these targets
#   FUZZ_TARGET_DIR=/some/dir ...              cargo's target dir (default fuzz/target)
#   FUZZ_LOG_DIR=/some/dir ...                 keep each run's libFuzzer log there
#
# Works on a fresh Debian 12 with a stable Rust toolchain and g++ (libfuzzer-sys
# compiles libFuzzer's C++): it installs cargo-fuzz (pinned, --locked) into the
# project's .cache/tools when it is missing there, never into ~/.cargo. Stable Rust
# takes the nightly flags cargo-fuzz passes (-Zsanitizer=address, sancov) with
# RUSTC_BOOTSTRAP=1.
#
# Runs are single-process (-jobs=1 -workers=1), one target after the other; each
# writes new inputs into a scratch corpus, never into fuzz/corpus/. A crash leaves its
# input under fuzz/artifacts/<target>/ and the libFuzzer log is printed.
#
# Prints one line per target and, last, `fuzz: N passed, M failed` (targets built, or
# built and run); exits non-zero if any failed.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD
START=$SECONDS

CARGO_FUZZ_VERSION=0.13.2
FUZZ_RUNS=${FUZZ_RUNS:-}
# A separate target dir: the fuzz builds never lock or invalidate the workspace's.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$ROOT/fuzz/target}"
export RUSTC_BOOTSTRAP=1
TOOLS=$ROOT/.cache/tools
export PATH="$TOOLS/bin:$PATH"

if [[ -n "$FUZZ_RUNS" && ! "$FUZZ_RUNS" =~ ^[1-9][0-9]*$ ]]; then
    echo "FUZZ_RUNS must be a positive number of executions, not '$FUZZ_RUNS'" >&2
    exit 2
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

PASSED=0
FAILED=0
# A figure of libFuzzer's -print_final_stats=1 block in log $log.
final_stat() { grep -E "^stat::$1:" "$log" | awk '{print $2}' | tail -n 1; }

finish() {
    echo "elapsed: $((SECONDS - START)) s"
    echo "fuzz: $PASSED passed, $FAILED failed"
    [[ $FAILED -eq 0 ]]
    exit
}

# --- tools -------------------------------------------------------------------------
if ! command -v cargo >/dev/null; then
    echo "FAIL cargo not found: install a Rust toolchain first"
    FAILED=1
    finish
fi

if ! command -v c++ >/dev/null && ! command -v g++ >/dev/null; then
    echo "FAIL no C++ compiler: apt-get install -y g++ (libfuzzer-sys builds libFuzzer from C++)"
    FAILED=1
    finish
fi

if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    T=$SECONDS
    # Its own temporary target dir, not the fuzz one.
    if ! env -u CARGO_TARGET_DIR cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" \
        --locked --force --root "$TOOLS" >"$WORK/install.log" 2>&1; then
        tail -n 30 "$WORK/install.log"
        echo "FAIL cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
        FAILED=1
        finish
    fi
    echo "ok   cargo-fuzz $CARGO_FUZZ_VERSION installed in $((SECONDS - T)) s"
fi

# --- targets -----------------------------------------------------------------------
# cargo fuzz has no --locked: check that fuzz/Cargo.lock needs no change first.
if ! cargo metadata --locked --format-version 1 --manifest-path "$ROOT/fuzz/Cargo.toml" \
    >/dev/null 2>"$WORK/metadata.log"; then
    cat "$WORK/metadata.log"
    echo "FAIL fuzz/Cargo.lock is out of date (cargo metadata --locked)"
    FAILED=1
    finish
fi

if [[ -n "${FUZZ_TARGETS:-}" ]]; then
    read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
    mapfile -t TARGETS < <(cargo fuzz list --fuzz-dir "$ROOT/fuzz" 2>/dev/null)
fi
if [[ ${#TARGETS[@]} -eq 0 ]]; then
    echo "FAIL no fuzz targets found (cargo fuzz list --fuzz-dir fuzz)"
    FAILED=1
    finish
fi

for target in "${TARGETS[@]}"; do
    T=$SECONDS
    # Default cargo-fuzz build: release with debug assertions, AddressSanitizer.
    if ! cargo fuzz build --fuzz-dir "$ROOT/fuzz" "$target" >"$WORK/build-$target.log" 2>&1; then
        tail -n 40 "$WORK/build-$target.log"
        echo "FAIL build $target"
        FAILED=$((FAILED + 1))
        continue
    fi
    echo "ok   build $target ($((SECONDS - T)) s)"
    if [[ -z "$FUZZ_RUNS" ]]; then
        PASSED=$((PASSED + 1))
        continue
    fi

    # -jobs=1 makes libFuzzer write the log to ./fuzz-0.log: run from a scratch dir.
    mkdir -p "$WORK/run-$target/corpus"
    T=$SECONDS
    (
        cd "$WORK/run-$target" &&
            cargo fuzz run --fuzz-dir "$ROOT/fuzz" "$target" \
                "$WORK/run-$target/corpus" "$ROOT/fuzz/corpus/$target" -- \
                -runs="$FUZZ_RUNS" -jobs=1 -workers=1 -max_len=8192 -timeout=10 \
                -rss_limit_mb=2048 -print_final_stats=1
    ) >"$WORK/run-$target.out" 2>&1
    rc=$?
    log="$WORK/run-$target/fuzz-0.log"
    [[ -f "$log" ]] || log="$WORK/run-$target.out"
    if [[ -n "${FUZZ_LOG_DIR:-}" ]]; then
        # With -jobs, cargo-fuzz's output ends with the whole of fuzz-0.log.
        mkdir -p "$FUZZ_LOG_DIR" && cp "$WORK/run-$target.out" "$FUZZ_LOG_DIR/$target.log"
    fi
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
    if [[ $rc -ne 0 || -z "$done_line" ]] ||
        grep -qE '^==[0-9]+==ERROR|^SUMMARY: libFuzzer|deadly signal|panicked at' "$log"; then
        cat "$WORK/run-$target.out"
        [[ "$log" != "$WORK/run-$target.out" ]] && tail -n 80 "$log"
        echo "FAIL run $target (exit $rc; crash inputs, if any, in fuzz/artifacts/$target/)"
        FAILED=$((FAILED + 1))
        continue
    fi
    execs=$(final_stat number_of_executed_units)
    rate=$(final_stat average_exec_per_sec)
    cov=$(sed -nE 's/.* cov: ([0-9]+) .*/\1/p' <<<"$done_line")
    ft=$(sed -nE 's/.* ft: ([0-9]+) .*/\1/p' <<<"$done_line")
    corp=$(sed -nE 's/.* corp: ([^ ]+) .*/\1/p' <<<"$done_line")
    rss=$(final_stat peak_rss_mb)
    echo "ok   run $target: ${execs} execs in $((SECONDS - T)) s, ${rate} exec/s," \
        "cov ${cov}, ft ${ft}, corpus ${corp}, peak rss ${rss} MB, 0 crashes"
    PASSED=$((PASSED + 1))
done

finish
