-- trivial.lua: the FastCGI ceiling. POSTs the same bodies as read.lua to
-- bench/fcgi_trivial behind nginx (location /trivial/). Every response must
-- be 200 with its fixed AtomicWriteOutput body (status AW_SUCCESS).
--
-- Variables: see common.lua.  Example:
--   BENCH_BODIES=bench/out/read.hex \
--     wrk -t2 -c64 -d10s -s bench/wrk/trivial.lua \
--     http://127.0.0.1:PORT/trivial/snapshot_read
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")
common.install{ name = "trivial", validate = common.write_ok }
