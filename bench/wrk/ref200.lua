-- ref200.lua: the nginx reference. POSTs the same bodies as read.lua to
-- `location = /ref200 { return 200 "ok"; }`: nginx alone, no FastCGI.
-- Every response must be 200 with body "ok".
--
-- Variables: see common.lua.  Example:
--   BENCH_BODIES=bench/out/read.hex \
--     wrk -t2 -c64 -d10s -s bench/wrk/ref200.lua http://127.0.0.1:PORT/ref200
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "common.lua")
common.install{ name = "ref200", validate = common.text_ok("ok") }
