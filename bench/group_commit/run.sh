#!/usr/bin/env bash
# bench/group_commit/run.sh: builds group_commit.c against a build tree
# (default build/, from scripts/build.sh) and runs it on a temporary
# directory on the disk TMPDIR names (the disk is what is measured). By
# hand, not in CI. Arguments go to the program:
#
#   bench/group_commit/run.sh                 # batches of 1 4 16 32, 5 s each
#   bench/group_commit/run.sh -d 10 1 8 64
#   BUILD=build-asan bench/group_commit/run.sh -s normal
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD:-$REPO/build}
OUT=$HERE/out
[ -f "$BUILD/src/libdenokv.a" ] || { echo "build first: scripts/build.sh $BUILD" >&2; exit 1; }
mkdir -p "$OUT"
# The build's own flags and libraries (pkg-config names as configure.ac).
# shellcheck disable=SC2046
${CC:-cc} -O2 -I"$REPO/src" -I"$BUILD" -o "$OUT/group_commit" \
	"$HERE/group_commit.c" "$BUILD/src/libdenokv.a" \
	$(pkg-config --libs sqlite3 libprotobuf-c jansson 2>/dev/null || echo -lsqlite3) -lm
TMP=$(mktemp -d "${TMPDIR:-/tmp}/denokv-group-commit.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
"$OUT/group_commit" -f "$TMP" "$@"
