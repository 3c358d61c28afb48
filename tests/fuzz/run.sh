#!/usr/bin/env bash
# run.sh [SECONDS]: builds the codec fuzz target with clang (libFuzzer,
# ASan, UBSan) against the sources and fuzzes it for SECONDS (default 60).
# Run by hand; needs clang and an already configured build (for the
# generated protobuf code): set BUILD=path/to/build (default: build/).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-$src/build}
secs=${1:-60}
out=$(mktemp -d)
[ -f "$build/proto/datapath.pb-c.c" ] || { echo "no generated protobuf code in $build/proto: build first" >&2; exit 1; }
clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
	-iquote "$src/src" -iquote "$build/proto" \
	"$src/tests/fuzz/fuzz_codec.c" "$src/src/codec.c" "$src/src/arena.c" \
	"$src/src/v8scalar.c" "$build/proto/datapath.pb-c.c" \
	-lprotobuf-c -o "$out/fuzz_codec"
echo "fuzzing for $secs s (corpus in $out/corpus)" >&2
mkdir -p "$out/corpus"
"$out/fuzz_codec" -max_total_time="$secs" -max_len=65536 -print_final_stats=1 "$out/corpus"
