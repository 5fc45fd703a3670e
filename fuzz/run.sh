#!/usr/bin/env bash
# Fuzz every target (or the ones named) for a fixed time, two at a time by default.
#
#   fuzz/run.sh [seconds per target] [target ...]      # default: 600 s, every target
#   JOBS=1 fuzz/run.sh 60 jwt form
#   RUNS=10000000 fuzz/run.sh 86400                    # stop each target at 10 M inputs
#   SANITIZER=none fuzz/run.sh 600 config              # without AddressSanitizer: about 2x
#                                                      # the inputs/s; panics still caught
#
# Needs the nightly toolchain and cargo-fuzz (installed here when missing). The working
# corpus grows in fuzz/corpus/<target> (not committed); fuzz/seeds/<target> is the small
# seed corpus kept in the repository. A crash leaves its input in fuzz/artifacts/<target>:
# fix the bug and add the input to the target's unit tests. Logs: fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")"

secs="${1:-600}"
shift || true
jobs="${JOBS:-2}"
# With RUNS set, a target stops after that many inputs (or the time, whichever comes first).
runs=()
if [ -n "${RUNS:-}" ]; then runs=("-runs=$RUNS"); fi
san=(-s "${SANITIZER:-address}")

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build "${san[@]}" 2>&1 | tail -n 3
mkdir -p logs

run_one() {
    local t="$1"
    mkdir -p "corpus/$t" "seeds/$t"
    local dict=()
    if [ -f "dicts/$t.dict" ]; then dict=("-dict=dicts/$t.dict"); fi
    # -rss_limit_mb: argon2 and the YAML parser are the big allocations; 2 GiB is far above
    # either, so a hit is a real leak or blow-up.
    if cargo +nightly fuzz run "${san[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        "${runs[@]}" "${dict[@]}" >"logs/$t.log" 2>&1; then
        echo "ok"
    else
        echo "FAILED"
    fi
}

status=0
pids=()
names=()
results=()
for t in "${targets[@]}"; do
    run_one "$t" >"logs/$t.status" &
    pids+=("$!")
    names+=("$t")
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        wait -n || true
    done
done
for pid in "${pids[@]}"; do wait "$pid" || true; done

printf '%-14s %-7s %12s %10s %8s\n' target result executions exec/s corpus
for t in "${names[@]}"; do
    r="$(cat "logs/$t.status")"
    [ "$r" = ok ] || status=1
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')"
    speed="$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')"
    corpus="$(find "corpus/$t" -type f | wc -l)"
    printf '%-14s %-7s %12s %10s %8s\n' "$t" "$r" "$execs" "$speed" "$corpus"
done
exit "$status"
