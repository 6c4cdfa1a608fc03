-- Memory: no leaks and no invalid accesses in the C core, on success and
-- error paths alike, as valgrind sees them.
local H = require "support.helper"

local SCRIPT = [==[
local pg = require "pg"
local E = os.getenv
local certs = E("PGC_TEST_CERTS")
local base = { host = E("PGC_TEST_HOST"), port = tonumber(E("PGC_TEST_PORT")),
               database = E("PGC_TEST_DB") }
local function cfg(t)
  local c = {}
  for k, v in pairs(base) do c[k] = v end
  for k, v in pairs(t) do c[k] = v end
  return c
end
local ctx = pg.ssl.context { key_file = certs .. "/certuser.key",
  cert_file = certs .. "/certuser.crt", ca_cert_file = certs .. "/ca.crt" }
for _ = 1, 2 do
  local conn = assert(pg.connect(cfg { user = "certuser", ssl_context = ctx }))
  assert(conn:query("select generate_series(1, 500) as i, 'x' as s, 1.5::float8 as f, null as n"))
  assert(conn:execute("select $1::int[] as a, $2::text as t, $3 as b, $4::json as j",
                      { { 1 }, { 2 } }, "x", pg.bytea("\0\1"), pg.json({ a = 1 })))
  local st = assert(conn:prepare("select $1::int4 as a, $2::uuid as u, $3::bytea as b"))
  for i = 1, 5 do assert(st:execute(i, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "\0x")) end
  local div = assert(conn:prepare("select 1 / $1::int4 as v"))
  assert(not div:execute(0))
  assert(not pcall(conn.execute, conn, "select $1::int[]", { 1, { 2 } }))
  st:close()
  local ins = assert(conn:prepare("select $1::int as v"))
  assert(ins:execute_many({ { 1 }, { 2 }, { 3 } }))
  assert(not pcall(ins.execute_many, ins, { { function() end } }))
  assert(not conn:query("select * from nope"))
  assert(not pcall(conn.execute, conn, "select $1", function() end))
  conn:transaction(function(c) assert(c:execute("select 1")) end)
  pcall(conn.transaction, conn, function() error("stop") end)
  pg.types.register("int4", function() error("boom") end)
  assert(not conn:execute("select 1::int4"))
  pg.types.register("int4", nil)
  conn:close()
  assert(not pg.connect(cfg { user = "scramuser", password = "wrong" }))
  assert(not pg.connect(cfg { user = "certuser", ssl_context = pg.ssl.context {
    ca_cert_file = certs .. "/other-ca.crt" } }))
  assert(not pg.connect(cfg { user = "trustuser", port = tonumber(E("PGC_TEST_PLAIN_PORT")),
                              ssl = true }))
  local c3 = assert(pg.connect(cfg { user = "scramuser", password = "scram-pass",
    ssl_context = pg.ssl.context { ca_cert_file = certs .. "/ca.crt" } }))
  assert(c3:query("select 1"))
  c3 = nil
  collectgarbage()
  pcall(pg.ssl.context, { cert_file = certs .. "/certuser.crt",
                          key_file = certs .. "/certuser-mismatch.key" })
  pcall(pg.ssl.context, { cert_file = "/nonexistent", key_file = "/nonexistent" })
end
print("done")
]==]

local function have_valgrind()
  local ok = os.execute("command -v valgrind > /dev/null 2>&1")
  return ok == true or ok == 0
end

describe("the C core under valgrind", function()
  it("leaks nothing and touches no invalid memory on success and error paths", function()
    if not have_valgrind() then return pending("valgrind is not installed") end
    local dir = H.tmpdir()
    local script = H.write_file(dir, "leaks.lua", SCRIPT)
    local log = dir .. "/valgrind.log"
    local p = io.popen("valgrind --leak-check=full --show-leak-kinds=definite,indirect "
                       .. "--errors-for-leak-kinds=definite,indirect --error-exitcode=99 "
                       .. "--log-file=" .. log .. " lua5.4 " .. script .. " 2>&1")
    local out = p:read("a")
    local ok, _, code = p:close()
    local f = io.open(log)
    local report = f and f:read("a") or ""
    if f then f:close() end
    H.rmdir(dir)
    assert.matches("done", out)
    assert.is_true(ok and code == 0, report)
    assert.is_truthy(report:find("definitely lost: 0 bytes", 1, true)
                     or report:find("no leaks are possible", 1, true), report)
    assert.matches("ERROR SUMMARY: 0 errors", report)
  end)
end)
