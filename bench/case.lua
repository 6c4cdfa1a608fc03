-- case.lua - one measurement: one Lua client, one case, in this process.
--
--   lua5.4 bench/case.lua CLIENT CASE N
--
-- CLIENT is "pgclient" (this project), "luasql" (LuaSQL's libpq-based
-- PostgreSQL driver) or, for the read case only, "luarows" (the same rows
-- made from C without a database: what the Lua values alone cost).  CASE is one of
--   read                N rows of bench_rows as tables keyed by column name
--                       (pg-client: conn:query, the simple protocol)
--   read-execute        the same through conn:execute (pg-client only)
--   roundtrip           N sequential "select $1::int" with a parameter
--                       (pg-client: conn:execute; LuaSQL: the value inlined)
--   roundtrip-prepared  the same through one prepared statement (pg-client)
--   insert-batch        the same in one transaction (pg-client:
--                       stmt:execute_many; LuaSQL: autocommit off)
--   insert              N rows into bench_ins (pg-client: a prepared
--                       statement; LuaSQL: one INSERT string per row)
--
-- The server is PGC_TEST_HOST:PGC_TEST_PORT, database pgtest, user
-- trustuser, without TLS; bench/run.sh made the tables.  Prints one line,
--   seconds=S rss_kb=K base_rss_kb=K heap_kb=K base_heap_kb=K count=N
-- with S the wall time of the measured part (monotonic clock), rss_kb the
-- peak resident size of the process at the end and base_rss_kb before the
-- measured part (VmHWM), heap_kb the Lua heap after a full collection with
-- the results still held.  Any wrong answer raises, and the run fails.

package.path = "./lua/?.lua;./lua/?/init.lua;" .. package.path
package.cpath = "./lua/?.so;./bench/bin/?.so;" .. package.cpath

local clock = require "benchclock"

local tointeger, tonumber, mtype = math.tointeger, tonumber, math.type
local string_format = string.format

local client, case, n = arg[1], arg[2], math.tointeger(tonumber(arg[3] or ""))
if not (client and case and n and n > 0) then
  io.stderr:write("usage: lua5.4 bench/case.lua pgclient|luasql CASE N\n")
  os.exit(2)
end

local HOST = os.getenv("PGC_TEST_HOST") or "127.0.0.1"
local PORT = math.tointeger(tonumber(os.getenv("PGC_TEST_PORT") or ""))
if not PORT then error("PGC_TEST_PORT is not set (source the env.sh of pgtest.sh)") end

local READ_SQL = "select id, name, score from bench_rows limit %d"
local INSERT_SQL = "insert into bench_ins values ($1, $2, $3)"

-- The peak resident size of this process so far, in kB (VmHWM).
local function peak_rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local status = f:read("a")
  f:close()
  return tointeger(tonumber(status:match("VmHWM:%s*(%d+)")))
end

-- Checks that rows are the n rows asked for, with typed values.
local function check_rows(rows, count)
  assert(#rows == count, "expected " .. count .. " rows, got " .. #rows)
  for _, i in ipairs({ 1, count // 2, count }) do
    local row = rows[i]
    assert(mtype(row.id) == "integer", "id is not an integer")
    assert(type(row.name) == "string", "name is not a string")
    assert(mtype(row.score) == "float", "score is not a float")
  end
end

---------------------------------------------------------------------------
-- pg-client
---------------------------------------------------------------------------

local pgclient = {}

function pgclient.connect()
  local pg = require "pg"
  return assert(pg.connect { host = HOST, port = PORT, user = "trustuser",
                             database = "pgtest" })
end

function pgclient.read(conn, count)
  return assert(conn:query(string_format(READ_SQL, count)))
end

function pgclient.read_execute(conn, count)
  return assert(conn:execute(string_format(READ_SQL, count)))
end

function pgclient.roundtrip(conn, count)
  for i = 1, count do
    local res = conn:execute("select $1::int", i)
    if not res or res[1].int4 ~= i then error("wrong answer at " .. i) end
  end
end

function pgclient.prepare_roundtrip(conn)
  return assert(conn:prepare("select $1::int"))
end

function pgclient.roundtrip_prepared(stmt, count)
  for i = 1, count do
    local res = stmt:execute(i)
    if not res or res[1].int4 ~= i then error("wrong answer at " .. i) end
  end
end

function pgclient.prepare_insert(conn)
  assert(conn:query("truncate bench_ins"))
  return assert(conn:prepare(INSERT_SQL))
end

function pgclient.insert(stmt, count)
  for i = 1, count do
    local res, err = stmt:execute(i, "name" .. i, i * 0.5)
    if not res then error(tostring(err)) end
  end
end

-- The same rows through stmt:execute_many: many executions per round
-- trip, all in one transaction.
function pgclient.insert_batch(stmt, count)
  local list = {}
  for i = 1, count do list[i] = { i, "name" .. i, i * 0.5 } end
  local res, err = stmt:execute_many(list)
  if not res then error(tostring(err)) end
end

function pgclient.inserted(conn)
  return assert(conn:query("select count(*)::int as n from bench_ins"))[1].n
end

---------------------------------------------------------------------------
-- LuaSQL
---------------------------------------------------------------------------

local luasql = {}

function luasql.connect()
  local driver = require "luasql.postgres"
  local env = assert(driver.postgres())
  return assert(env:connect(string_format(
    "dbname=pgtest user=trustuser host=%s port=%d sslmode=disable", HOST, PORT)))
end

-- LuaSQL gives every value as a string; the conversions give the same
-- types pg-client gives (the + 0.0 keeps a score such as "3" a float).
function luasql.read(con, count)
  local cur = assert(con:execute(string_format(READ_SQL, count)))
  local rows, i = {}, 0
  local row = cur:fetch({}, "a")
  while row do
    row.id = tointeger(tonumber(row.id))
    row.score = tonumber(row.score) + 0.0
    i = i + 1
    rows[i] = row
    row = cur:fetch({}, "a")
  end
  cur:close()
  return rows
end

function luasql.roundtrip(con, count)
  for i = 1, count do
    local cur = assert(con:execute("select " .. i .. "::int"))
    local row = cur:fetch({}, "a")
    cur:close()
    if tointeger(tonumber(row.int4)) ~= i then error("wrong answer at " .. i) end
  end
end

function luasql.prepare_insert(con)
  assert(con:execute("truncate bench_ins"))
  return con
end

function luasql.insert(con, count)
  for i = 1, count do
    local sql = string_format("insert into bench_ins values (%d, '%s', %.17g)",
                              i, con:escape("name" .. i), i * 0.5)
    if con:execute(sql) ~= 1 then error("insert failed at " .. i) end
  end
end

-- The same inserts in one transaction (LuaSQL sends each on its own).
function luasql.insert_batch(con, count)
  assert(con:setautocommit(false))
  luasql.insert(con, count)
  assert(con:commit())
  assert(con:setautocommit(true))
end

function luasql.inserted(con)
  local cur = assert(con:execute("select count(*) as n from bench_ins"))
  local n = tointeger(tonumber(cur:fetch({}, "a").n))
  cur:close()
  return n
end

---------------------------------------------------------------------------
-- The rows alone: the same rows made from C with no database (luarows.c)
---------------------------------------------------------------------------

local luarows = {}

function luarows.connect() return require "luarows" end

function luarows.read(module, count) return module.build(count) end

---------------------------------------------------------------------------
-- the measurement
---------------------------------------------------------------------------

local impl = ({ pgclient = pgclient, luasql = luasql, luarows = luarows })[client]
if not impl then error("unknown client " .. client) end

local conn = impl.connect()
local run, target, check
if case == "read" or case == "read-execute" then
  run = case == "read" and impl.read or impl.read_execute
  target = conn
  check = function(rows) check_rows(rows, n) end
elseif case == "roundtrip" then
  run, target = impl.roundtrip, conn
elseif case == "roundtrip-prepared" then
  run = impl.roundtrip_prepared
  target = impl.prepare_roundtrip and impl.prepare_roundtrip(conn)
elseif case == "insert" or case == "insert-batch" then
  run = case == "insert" and impl.insert or impl.insert_batch
  target = impl.prepare_insert(conn)
  check = function() assert(impl.inserted(conn) == n, "rows missing in bench_ins") end
end
if not (run and target) then error(client .. " has no case " .. case) end

collectgarbage("collect")
local base_heap = collectgarbage("count")
local base_rss = peak_rss_kb()

local start = clock.now()
local result = run(target, n)
local seconds = clock.now() - start

local rss = peak_rss_kb()
collectgarbage("collect")
local heap = collectgarbage("count")
if check then check(result) end

io.write(string_format("seconds=%.6f rss_kb=%d base_rss_kb=%d heap_kb=%.0f "
                         .. "base_heap_kb=%.0f count=%d\n",
                       seconds, rss, base_rss, heap, base_heap, n))
