-- read.lua: denokv-fcgi point reads. POSTs SnapshotRead bodies (one
-- ReadRange: start = key, end = key .. "\0", limit 1, key ["bench", n] with
-- n random over the keyspace) to <data endpoint>/snapshot_read. Every
-- response must be 200 with a SnapshotReadOutput holding exactly one entry,
-- so the keys must have been written first (bench/run.sh seeds them).
--
-- Variables: see common.lua.  Example:
--   bench/out/kvbody read bench 0 10000 >bench/out/read.hex
--   BENCH_BODIES=bench/out/read.hex DENOKV_TOKEN=... DENOKV_DATABASE_ID=... \
--     wrk -t2 -c64 -d10s -s bench/wrk/read.lua \
--     http://127.0.0.1:PORT/v2/snapshot_read
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")
common.install{ name = "read", validate = common.read_ok }
