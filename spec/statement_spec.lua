-- Prepared statements.
local pg = require "pg"
local H = require "support.helper"

local function trust(extra)
  local cfg = H.config({ user = "trustuser" })
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return assert(pg.connect(cfg))
end

-- Whether the server knows a prepared statement of that name.
local function server_has(conn, name)
  local res = assert(conn:execute(
    "select count(*) as n from pg_prepared_statements where name = $1", name))
  return res[1].n == 1
end

describe("conn:prepare", function()
  local conn
  before_each(function() conn = trust() end)
  after_each(function() conn:close() end)

  it("describes parameter and column types", function()
    local stmt = assert(conn:prepare("select $1::int4 as n, $2::text as s"))
    assert.same({ 23, 25 }, stmt.param_oids)
    assert.same({ "int4", "text" }, stmt.param_types)
    assert.same({ "n", "s" }, stmt.columns)
    assert.equal("int4", stmt.fields[1].type)
    assert.same({ 23, 25 }, stmt.column_oids)
    assert.same({ "int4", "text" }, stmt.column_types)
    assert.equal("text", stmt.params[2].type)
    stmt:close()
  end)

  it("runs many times with different parameters", function()
    local stmt = assert(conn:prepare("select $1::int8 * 2 as v"))
    for i = 1, 500 do
      assert.equal(i * 2, assert(stmt:execute(i))[1].v)
    end
    stmt:close()
  end)

  it("takes a name and closes the statement on the server", function()
    local stmt = assert(conn:prepare("select 1 as one", "my_stmt"))
    assert.equal("my_stmt", stmt.name)
    assert.is_true(server_has(conn, "my_stmt"))
    stmt:close()
    assert.is_false(server_has(conn, "my_stmt"))
    stmt:close()
  end)

  it("closes a collected statement with the next operation", function()
    do
      local stmt = assert(conn:prepare("select 2 as two", "collected_stmt"))
      stmt = nil
    end
    collectgarbage()
    collectgarbage()
    assert.is_false(server_has(conn, "collected_stmt"))
  end)

  it("refuses to run a closed statement", function()
    local stmt = assert(conn:prepare("select 1"))
    stmt:close()
    assert.has_error(function() stmt:execute() end)
  end)

  it("sends a plain string to a bytea parameter as raw bytes", function()
    local stmt = assert(conn:prepare("select $1::bytea as b, length($1::bytea) as n"))
    local raw = "a\0b\255\1"
    local res = assert(stmt:execute(raw))
    assert.equal(raw, res[1].b)
    assert.equal(5, res[1].n)
  end)

  it("receives known types in binary and decodes them the same", function()
    local stmt = assert(conn:prepare([[select $1::int2 as a, $2::int4 as b, $3::int8 as c,
      $4::float4 as d, $5::float8 as e, $6::bool as f, $7::uuid as g, $8::oid as h]]))
    local res = assert(stmt:execute(-5, 70000, math.mininteger, 0.25, -1e300, true,
                                    "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", 4000000000))
    local row = res[1]
    assert.equal(-5, row.a)
    assert.equal(70000, row.b)
    assert.equal(math.mininteger, row.c)
    assert.equal(0.25, row.d)
    assert.equal(-1e300, row.e)
    assert.is_true(row.f)
    assert.equal("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", row.g)
    assert.equal(4000000000, row.h)
    assert.equal("binary", res.fields[1].format)
  end)

  it("checks integer ranges for described parameter types", function()
    local stmt = assert(conn:prepare("select $1::int2 as v"))
    local ok, err = pcall(stmt.execute, stmt, 70000)
    assert.is_false(ok)
    assert.matches("parameter %$1", tostring(err))
    assert.matches("out of range", tostring(err))
    assert.equal(1, assert(stmt:execute(1))[1].v)
  end)

  it("reports a parameter count mismatch and stays usable", function()
    local stmt = assert(conn:prepare("select $1::int as a, $2::int as b"))
    local res, err = stmt:execute(1)
    assert.is_nil(res)
    assert.equal("config", err.kind)
    assert.matches("expects 2 parameters, got 1", err.message)
    assert.equal(3, assert(stmt:execute(1, 2)).affected and 3 or 0)
  end)

  it("fails with the server's error after ALTER TABLE changed the result shape", function()
    assert(conn:query("create temp table shape (a int)"))
    assert(conn:query("insert into shape values (1)"))
    local stmt = assert(conn:prepare("select * from shape"))
    assert.equal(1, assert(stmt:execute())[1].a)
    assert(conn:query("alter table shape add column b text"))
    local res, err = stmt:execute()
    assert.is_nil(res)
    assert.equal("server", err.kind)
    assert.equal("0A000", err.code)
    assert.equal(1, assert(conn:query("select 1 as one"))[1].one)
  end)

  it("reports a syntax error from prepare", function()
    local stmt, err = conn:prepare("selec 1")
    assert.is_nil(stmt)
    assert.equal("42601", err.code)
  end)

  it("takes the row shape per statement", function()
    local stmt = assert(conn:prepare("select 1 as a, 2 as b", { rows = "arrays" }))
    assert.same({ 1, 2 }, assert(stmt:execute())[1])
  end)

  it("inserts many rows through one statement", function()
    assert(conn:query("create temp table many (id int, name text, score float8)"))
    local stmt = assert(conn:prepare("insert into many values ($1, $2, $3)"))
    for i = 1, 1000 do
      assert(stmt:execute(i, "n" .. i, i / 4))
    end
    local res = assert(conn:query("select count(*) as n, sum(score) as s from many"))
    assert.equal(1000, res[1].n)
    assert.equal(1000 * 1001 / 8, res[1].s)
  end)
end)

describe("stmt:execute_many", function()
  local conn
  before_each(function()
    conn = trust()
    assert(conn:query("create temp table batch (id int primary key, name text)"))
  end)
  after_each(function() conn:close() end)

  it("runs the statement for every parameter list and sums the rows affected", function()
    local stmt = assert(conn:prepare("insert into batch values ($1, $2)"))
    local list = {}
    for i = 1, 1234 do list[i] = { i, "n" .. i } end
    local res = assert(stmt:execute_many(list))
    assert.equal(1234, res.affected)
    assert.equal("INSERT", res.command)
    assert.equal(1234, assert(conn:query("select count(*) as n from batch"))[1].n)
    assert.equal("idle", conn:status())
  end)

  it("returns the rows of every execution for RETURNING", function()
    local stmt = assert(conn:prepare("insert into batch values ($1, $2) returning id * 10 as x"))
    local res = assert(stmt:execute_many({ { 1, "a" }, { 2, "b" }, { 3, pg.null } }))
    assert.equal(3, #res)
    assert.equal(30, res[3].x)
    assert.same({ "x" }, res.columns)
  end)

  it("rolls all of it back when one execution fails", function()
    local stmt = assert(conn:prepare("insert into batch values ($1, $2)"))
    local list = {}
    for i = 1, 700 do list[i] = { i, "n" } end
    list[650] = { 1, "duplicate" }
    local res, err = stmt:execute_many(list)
    assert.is_nil(res)
    assert.equal("23505", err.code)
    assert.equal(0, assert(conn:query("select count(*) as n from batch"))[1].n)
    assert.equal("idle", conn:status())
  end)

  it("joins the caller's transaction", function()
    local stmt = assert(conn:prepare("insert into batch values ($1, $2)"))
    local tx = assert(conn:begin())
    assert(stmt:execute_many({ { 1, "a" }, { 2, "b" } }))
    assert.equal("transaction", conn:status())
    tx:rollback()
    assert.equal(0, assert(conn:query("select count(*) as n from batch"))[1].n)
  end)

  it("refuses a parameter list of the wrong length and sends nothing", function()
    local stmt = assert(conn:prepare("insert into batch values ($1, $2)"))
    local res, err = stmt:execute_many({ { 1, "a" }, { 2 } })
    assert.is_nil(res)
    assert.equal("config", err.kind)
    assert.matches("entry 2 has 1", err.message)
    assert.equal(0, assert(conn:query("select count(*) as n from batch"))[1].n)
  end)

  it("raises for a value that cannot be encoded and leaves the connection usable", function()
    local stmt = assert(conn:prepare("insert into batch values ($1, $2)"))
    assert.has_error(function() stmt:execute_many({ { 1, "a" }, { 2, function() end } }) end)
    assert.equal("idle", conn:status())
    assert.equal(1, assert(conn:query("select 1 as one"))[1].one)
  end)
end)

describe("executing a statement again", function()
  local conn
  before_each(function() conn = trust() end)
  after_each(function()
    pg.types.register("int4", nil)
    pg.types.register("text", nil)
    conn:close()
  end)

  it("follows decoders registered after the statement was prepared", function()
    local stmt = assert(conn:prepare("select $1::int4 as v"))
    assert.equal(7, assert(stmt:execute(7))[1].v)
    pg.types.register("int4", function(text) return "int:" .. text end)
    assert.equal("int:7", assert(stmt:execute(7))[1].v)
    assert.equal("int:8", assert(conn:execute("select 8::int4 as v"))[1].v)
    pg.types.register("int4", nil)
    assert.equal(7, assert(stmt:execute(7))[1].v)
    assert.equal(8, assert(conn:execute("select 8::int4 as v"))[1].v)
  end)

  it("follows encoders registered after the statement was prepared", function()
    local stmt = assert(conn:prepare("select $1::text as v"))
    assert.equal("a", assert(stmt:execute("a"))[1].v)
    pg.types.register("text", { encode = function(v) return "<" .. tostring(v) .. ">" end })
    assert.equal("<a>", assert(stmt:execute("a"))[1].v)
    pg.types.register("text", nil)
    assert.equal("a", assert(stmt:execute("a"))[1].v)
  end)

  it("closes collected statements first", function()
    local stmt = assert(conn:prepare("select $1::int4 as v"))
    do
      local gone = assert(conn:prepare("select 2 as two", "collected_again"))
      assert.equal(2, assert(gone:execute())[1].two)
      gone = nil
    end
    collectgarbage()
    collectgarbage()
    assert.equal(3, assert(stmt:execute(3))[1].v)
    local res = assert(conn:query("select count(*)::int4 as n from pg_prepared_statements "
                                  .. "where name = 'collected_again'"))
    assert.equal(0, res[1].n)
  end)

  it("reports errors and keeps the transaction's cause", function()
    local stmt = assert(conn:prepare("select 1 / $1::int4 as v"))
    local res, err = stmt:execute(0)
    assert.is_nil(res)
    assert.equal("22012", err.code)
    local _, err2 = conn:transaction(function()
      stmt:execute(0)
      return true
    end)
    assert.equal("25P02", err2.code)
    assert.equal("22012", err2.cause.code)
    assert.equal(1, assert(stmt:execute(1))[1].v)
  end)

  it("looks up type names the first time a result lacks them", function()
    assert(conn:query("create type pg_temp.mood as enum ('ok', 'meh')"))
    local stmt = assert(conn:prepare("select $1::text::pg_temp.mood as m"))
    for _ = 1, 3 do
      local res = assert(stmt:execute("ok"))
      assert.equal("ok", res[1].m)
      assert.equal("mood", res.fields[1].type)
    end
  end)

  it("runs on the object it is called on", function()
    local a = assert(conn:prepare("select 'a' as v"))
    local b = assert(conn:prepare("select 'b' as v"))
    assert.equal("b", assert(a.execute(b))[1].v)
    local other = trust()
    local pid = assert(conn.execute(other, "select pg_backend_pid() as p"))[1].p
    assert.equal(other:backend_pid(), pid)
    other:close()
  end)

  it("refuses to run after the connection closed", function()
    local stmt = assert(conn:prepare("select 1 as one"))
    conn:close()
    assert.has_error(function() stmt:execute() end)
    assert.has_error(function() conn:execute("select 1") end)
  end)
end)
