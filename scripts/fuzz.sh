#!/usr/bin/env bash
# Runs every libFuzzer target of Fuzz/ for SECONDS each (default 60), with a corpus seeded
# from protocol/vectors/. Needs Linux (libFuzzer ships with the Swift toolchain there).
#   scripts/fuzz.sh [SECONDS] [TARGET...]      targets: FuzzRecordBatch FuzzLZ4Frame FuzzRequests
#   FUZZ_RUNS=1000000 scripts/fuzz.sh          a fixed number of executions per target instead
#   FUZZ_CONFIGURATION=debug scripts/fuzz.sh   -Onone build (default release: ~3x the executions/s;
#                                              ASan and preconditions stay on)
# Exits non-zero if any target finds a crash; the reproducer is left in fuzz-corpus-work/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=60
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then seconds="$1"; shift; fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(FuzzRecordBatch FuzzLZ4Frame FuzzRequests); fi

configuration="${FUZZ_CONFIGURATION:-release}"
swift build -c "$configuration" --package-path Fuzz --scratch-path .build-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
bin="$(swift build -c "$configuration" --package-path Fuzz --scratch-path .build-fuzz --show-bin-path)"
if [ -n "${FUZZ_RUNS:-}" ]; then limit=(-runs="$FUZZ_RUNS"); else limit=(-max_total_time="$seconds"); fi

work=fuzz-corpus-work
mkdir -p "$work"
seed_corpus() {  # $1 target, $2 corpus dir
    local target="$1" corpus="$2"
    mkdir -p "$corpus"
    case "$target" in
        FuzzRecordBatch)
            # Mode byte 0 (bytes as they are) and 1 (harness repairs length + CRC), then the batch.
            for f in protocol/vectors/batches/*.hex; do
                name="$(basename "$f" .hex)"
                [ "$(stat -c %s "$f")" -gt 16384 ] && continue  # big seeds only slow every mutation down
                { printf '\x00'; tr -d ' \n' < "$f" | xxd -r -p; } > "$corpus/$name"
                { printf '\x01'; tr -d ' \n' < "$f" | xxd -r -p; } > "$corpus/$name-repaired"
            done ;;
        FuzzLZ4Frame)
            for f in protocol/vectors/batches/lz4-frames/*.lz4; do
                { printf '\x05'; head -c 4096 "$f"; } > "$corpus/$(basename "$f" .lz4)-head"
            done
            { printf '\x00'; cat protocol/vectors/batches/lz4-frames/empty.lz4; } > "$corpus/empty" ;;
        FuzzRequests)
            # The message vectors (one frame each, no size prefix): as a size-prefixed stream and as a bare frame.
            i=0
            for f in protocol/vectors/messages/*.hex; do
                [ -f "$f" ] || continue
                name="$(basename "$f" .hex)"
                tr -d ' \n' < "$f" | xxd -r -p > "$corpus/.frame"
                size="$(stat -c %s "$corpus/.frame")"
                { printf "\\x$(printf %02x $((i % 256)))"; printf "%08x" "$size" | xxd -r -p; cat "$corpus/.frame"; } > "$corpus/$name-stream"
                { printf "\\x$(printf %02x $((i % 256)))"; cat "$corpus/.frame"; } > "$corpus/$name-frame"
                rm -f "$corpus/.frame"
                i=$((i + 1))
            done ;;
    esac
}

status=0
for target in "${targets[@]}"; do
    corpus="$work/$target"
    seed_corpus "$target" "$corpus"
    echo "== $target: ${limit[*]} (corpus $corpus)"
    log="$work/$target.log"
    if ! "$bin/$target" "$corpus" "${limit[@]}" -max_len=65536 -rss_limit_mb=2048 \
            -artifact_prefix="$work/$target-" -print_final_stats=1 >"$log" 2>&1; then
        echo "!! $target found a crash; see $log and $work/$target-crash-*"
        tail -40 "$log"
        status=1
    fi
    runs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?')"
    echo "   $target: $runs executions"
done
exit $status
