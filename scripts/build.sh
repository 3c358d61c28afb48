#!/usr/bin/env bash
# build.sh [DIR [configure options]]: configures and builds in DIR
# (default: build/ in the source tree) with autotools, out of tree.

set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$src/build}
shift || true
[ -x "$src/configure" ] || (cd "$src" && ./autogen.sh >/dev/null 2>&1)
mkdir -p "$dir"
cd "$dir"
if [ ! -f Makefile ] || [ "$src/configure" -nt Makefile ] || [ $# -gt 0 ]; then
	"$src/configure" -q "$@"
fi
# Quiet (silent rules: one line per file), but nothing dropped: compiler
# warnings and errors reach the terminal.
make -s --no-print-directory -j"$(nproc)"
