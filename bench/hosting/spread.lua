-- spread.lua: point reads or writes spread uniformly at random over the
-- first HOSTING_SPREAD databases of HOSTING_DBS, each request to its own
-- database's data path with that database's token and id. Every response
-- is checked as in bench/wrk/common.lua (read: 200 and exactly one entry;
-- write: AW_SUCCESS and a 10-byte versionstamp), and the same RESULT line
-- is printed.
--
-- Environment, besides common.lua's BENCH_BODIES and BENCH_NAME:
--   HOSTING_DBS     lines "DATAPATH TOKEN DATABASE_ID" (prepare.mjs writes them)
--   HOSTING_SPREAD  how many of them to use (the first N)
--   HOSTING_OP      read or write
-- The URL given to wrk only names the host and port.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local common = dofile(here .. "../wrk/common.lua")
local op = os.getenv("HOSTING_OP") or "read"
if op ~= "read" and op ~= "write" then error("HOSTING_OP must be read or write") end

common.install{
  name = "spread-" .. op,
  validate = op == "write" and common.write_ok or common.read_ok,
}

local base_init = init
function init(args)
  base_init(args)
  requests_pre = nil -- common.lua's single-database requests: not used
  local spread = tonumber(os.getenv("HOSTING_SPREAD") or "")
  local file = os.getenv("HOSTING_DBS")
  if not spread or spread < 1 or not file then
    error("HOSTING_SPREAD and HOSTING_DBS are required")
  end
  local suffix = op == "write" and "/atomic_write" or "/snapshot_read"
  dbs = {}
  for line in io.lines(file) do
    if #dbs >= spread then break end
    local path, token, id = line:match("^(%S+) (%S+) (%S+)$")
    if path then
      dbs[#dbs + 1] = {
        path = path .. suffix,
        headers = {
          ["Authorization"] = "Bearer " .. token,
          ["x-denokv-version"] = "3",
          ["x-denokv-database-id"] = id,
          ["Content-Type"] = "application/x-protobuf",
        },
      }
    end
  end
  if #dbs < spread then error("HOSTING_DBS has fewer than " .. spread .. " databases") end
  n_dbs = #dbs
  bodies = common.load_bodies()
  n_bodies = #bodies
end

function request()
  local db = dbs[math.random(n_dbs)]
  return wrk.format("POST", db.path, db.headers, bodies[math.random(n_bodies)])
end
