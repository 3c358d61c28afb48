-- write.lua: denokv-fcgi atomic writes. POSTs AtomicWrite bodies (one M_SET
-- of a small VE_BYTES value to ["bench", n], n random over the keyspace) to
-- <data endpoint>/atomic_write. Every response must be 200 with an
-- AtomicWriteOutput of status AW_SUCCESS and a 10-byte versionstamp.
--
-- Variables: see common.lua.  Example:
--   bench/out/kvbody write bench 0 10000 16 w >bench/out/write.hex
--   BENCH_BODIES=bench/out/write.hex DENOKV_TOKEN=... DENOKV_DATABASE_ID=... \
--     wrk -t2 -c32 -d10s -s bench/wrk/write.lua \
--     http://127.0.0.1:PORT/v2/atomic_write
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")
common.install{ name = "write", validate = common.write_ok }
