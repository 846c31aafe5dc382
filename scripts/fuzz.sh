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
seconds="${1:-60}"
shift || true
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
            # Request frames from the framing vectors, when present (hex files, size prefix included).
            if [ -d protocol/vectors/requests ]; then
                i=0
                for f in $(find protocol/vectors/requests -name '*.hex' | sort); do
                    { printf "\\x$(printf %02x $((i % 256)))"; tr -d ' \n' < "$f" | xxd -r -p; } > "$corpus/req-$i"
                    i=$((i + 1))
                done
            fi
            printf '\x00\x00\x00\x00\x0c\x00\x12\x00\x03\x00\x00\x00\x01\xff\xff\x00' > "$corpus/apiversions" ;;
    esac
}

status=0
for target in "${targets[@]}"; do
    corpus="$work/$target"
    seed_corpus "$target" "$corpus"
    echo "== $target for ${seconds}s (corpus $corpus)"
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
