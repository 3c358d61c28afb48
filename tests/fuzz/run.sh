#!/usr/bin/env bash
# run.sh [SECONDS]: the libFuzzer targets, built with clang (libFuzzer,
# ASan, UBSan) from the server's sources, each run for SECONDS (default
# $FUZZ_SECONDS, else 20) starting from its committed seed corpus in
# tests/fuzz/corpus/TARGET/. TAP on stdout: one test point per target.
#
#   fuzz_codec     the protobuf request decoders and the V8 scalar codec
#   fuzz_metadata  the metadata exchange's JSON request body
#   fuzz_params    the FastCGI parameters the server parses, and routing
#   fuzz_fcgi_mux  the FastCGI record reader of the multiplexed model
#
# make check runs it on a --enable-sanitizers build. By hand:
#   DENOKV_BUILDDIR=build-asan tests/fuzz/run.sh 60
# Environment: DENOKV_SRCDIR (default: two levels up), DENOKV_BUILDDIR (a
# configured build, for the generated protobuf code; default build/),
# CLANG (default clang). New inputs go to a scratch corpus, never into the
# committed one; a crashing input is kept under DENOKV_BUILDDIR/fuzz-out/.
set -u
src=${DENOKV_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${DENOKV_BUILDDIR:-$src/build}
secs=${1:-${FUZZ_SECONDS:-20}}
cc=${CLANG:-clang}
TARGETS="fuzz_codec fuzz_metadata fuzz_params fuzz_fcgi_mux"
out=$build/fuzz-out
n=0

# tap ok|not_ok DESCRIPTION [DIAGNOSTIC...]
tap() {
	local status=$1 desc=$2
	shift 2
	n=$((n + 1))
	if [ "$status" = ok ]; then echo "ok $n - $desc"; else echo "not ok $n - $desc"; fi
	for d in "$@"; do [ -n "$d" ] && printf '%s\n' "$d" | sed 's/^/# /'; done
	return 0
}
fail_all() { # fail_all REASON...: every target fails
	local t
	for t in $TARGETS; do tap not_ok "$t: built and fuzzed for $secs s" "$@"; done
	echo "1..$n"
	exit 1
}

rm -rf "$out"
mkdir -p "$out/obj"
command -v "$cc" >/dev/null 2>&1 || fail_all "no $cc (scripts/setup-deps.sh installs clang and libclang-rt-dev)"
[ -f "$build/proto/datapath.pb-c.c" ] || fail_all "no generated protobuf code in $build/proto: build first"

# Everything but main() is linked into every target (instrumented for
# coverage), so a parser that moves between files stays covered.
cflags=(-g -O1 -std=gnu11 -D_GNU_SOURCE "-fsanitize=fuzzer-no-link,address,undefined"
	-fno-sanitize-recover=undefined -fno-omit-frame-pointer
	-iquote "$src/src" -iquote "$build/proto" -I/usr/include/systemd)
objs=()
for f in "$src"/src/*.c "$build/proto/datapath.pb-c.c"; do
	[ "$(basename "$f")" = main.c ] && continue
	o=$out/obj/$(basename "$f" .c).o
	if ! "$cc" "${cflags[@]}" -c "$f" -o "$o" 2>"$out/build.err"; then
		fail_all "compiling $f failed:" "$(tail -n 20 "$out/build.err")"
	fi
	objs+=("$o")
done
libs=(-lfcgi -lsqlite3 -lprotobuf-c -ljansson -lsystemd -linih -lm -pthread)
for t in $TARGETS; do
	if ! "$cc" "${cflags[@]}" -fsanitize=fuzzer "$src/tests/fuzz/$t.c" "${objs[@]}" "${libs[@]}" \
		-o "$out/$t" 2>"$out/build.err"; then
		fail_all "linking $t failed:" "$(tail -n 20 "$out/build.err")"
	fi
done

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rc_all=0
for t in $TARGETS; do
	seeds=$src/tests/fuzz/corpus/${t#fuzz_}
	work=$out/corpus-${t#fuzz_}
	mkdir -p "$work"
	nseeds=$(find "$seeds" -type f 2>/dev/null | wc -l)
	"$out/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
		-print_final_stats=1 -artifact_prefix="$out/$t-" "$work" "$seeds" >"$out/$t.log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log" | tail -n 1)
	cov=$(grep -o 'cov: [0-9]*' "$out/$t.log" | tail -n 1)
	if [ "$rc" = 0 ] && [ "$nseeds" -gt 0 ] && [ -n "$runs" ]; then
		tap ok "$t: $runs inputs in $secs s from $nseeds seeds ($cov), no crash, leak or sanitizer report"
	else
		rc_all=1
		tap not_ok "$t: fuzzed for $secs s without a crash, leak or sanitizer report" \
			"exit status $rc, $nseeds seeds; crashing input: $(find "$out" -maxdepth 1 -name "$t-*" | head -n 1)" \
			"$(grep -E 'ERROR|SUMMARY|runtime error|Test unit written|^#[0-9]+ .*(crash|deadly)' "$out/$t.log" | head -n 15)"
	fi
done
echo "1..$n"
exit $rc_all
