-- Specs for conn:query: how values of each type arrive in Lua, the
-- results of several statements in one string, command tags, server
-- errors and the fields they carry, notices, and results too large for
-- one read.

local pg = require "pg"
local H = require "support.helper"

-- Opens a trust connection on the TLS server without TLS.
local function connect(overrides)
  local config = H.config { user = "trustuser" }
  for k, v in pairs(overrides or {}) do
    config[k] = v
  end
  return H.connect(config)
end

-- Returns the error of a query that is expected to fail; raises if it
-- succeeds.
local function query_error(conn, sql)
  local res, err = conn:query(sql)
  if res then
    error("the query succeeded", 2)
  end
  return err
end

describe("conn:query", function()
  local conn

  lazy_setup(function()
    conn = connect()
  end)

  lazy_teardown(function()
    if conn then
      conn:close()
    end
  end)

  describe("decodes", function()
    -- Each case: a description, an SQL expression, the Lua value
    -- expected and the math.type (or type) it must have.
    local cases = {
      { "int2", "12::int2", 12, "integer" },
      { "int4", "(-2147483648)::int4", -2147483648, "integer" },
      { "the smallest int8 exactly", "(-9223372036854775808)::int8",
        math.mininteger, "integer" },
      { "the largest int8 exactly", "9223372036854775807::int8", math.maxinteger, "integer" },
      { "an int8 beyond 2^53 exactly", "9007199254740993::int8", 9007199254740993, "integer" },
      { "oid", "4294967295::oid", 4294967295, "integer" },
      { "float4", "1.5::float4", 1.5, "float" },
      { "float8", "1.5::float8", 1.5, "float" },
      { "a whole float8 as a float", "2::float8", 2.0, "float" },
      { "float8 Infinity", "'Infinity'::float8", math.huge, "float" },
      { "float8 -Infinity", "'-Infinity'::float8", -math.huge, "float" },
      { "float4 Infinity", "'Infinity'::float4", math.huge, "float" },
      { "bool true", "true", true, "boolean" },
      { "bool false", "false", false, "boolean" },
      { "numeric as a string", "12345678901234567890.123::numeric",
        "12345678901234567890.123", "string" },
      { "text with non-ASCII UTF-8", "'grüße, 世界 ✓'::text", "grüße, 世界 ✓",
        "string" },
      { "an empty string", "''::text", "", "string" },
      { "a date as a string", "'2024-02-29'::date", "2024-02-29", "string" },
    }

    for _, case in ipairs(cases) do
      local what, sql, expected, kind = case[1], case[2], case[3], case[4]
      it(what, function()
        local value = H.value(conn, "select " .. sql .. " as v")
        assert.are.equal(expected, value)
        assert.are.equal(kind, math.type(value) or type(value))
      end)
    end

    it("float8 NaN as a NaN float", function()
      local value = H.value(conn, "select 'NaN'::float8")
      assert.are.equal("float", math.type(value))
      assert.is_true(value ~= value)
    end)

    it("float4 NaN as a NaN float", function()
      local value = H.value(conn, "select 'NaN'::float4")
      assert.is_true(value ~= value)
    end)

    it("float8 negative zero with its sign", function()
      local value = H.value(conn, "select '-0'::float8")
      assert.are.equal(-math.huge, 1 / value)
    end)

    it("NULL as pg.null", function()
      assert.are.equal(pg.null, H.value(conn, "select null::int4"))
    end)

    it("NULL as a key that is present in the row", function()
      local res = assert(conn:query "select 1 as a, null as b, 3 as c")
      local keys = {}
      for k in pairs(res[1]) do
        keys[#keys + 1] = k
      end
      table.sort(keys)
      assert.are.same({ "a", "b", "c" }, keys)
    end)
  end)

  describe("results", function()
    it("list the column names in order", function()
      local res = assert(conn:query "select 1 as zeta, 2 as alpha, 3 as mid")
      assert.are.same({ "zeta", "alpha", "mid" }, res.columns)
    end)

    it("hold one table per row, in order", function()
      local res = assert(conn:query "select g from generate_series(1, 3) g")
      assert.are.same({ { g = 1 }, { g = 2 }, { g = 3 } }, { res[1], res[2], res[3] })
      assert.are.equal(3, #res)
    end)

    it("are empty for a query without rows, with the columns still listed", function()
      local res = assert(conn:query "select 1 as x where false")
      assert.are.equal(0, #res)
      assert.are.same({ "x" }, res.columns)
    end)

    it("come one per statement", function()
      local c <close> = connect()
      local n = select("#", assert(c:query(
        "select 1; select 2; create temp table several (x int); insert into several values (1)")))
      assert.are.equal(4, n)
    end)

    it("come in the order of the statements", function()
      local first, second = conn:query "select 1 as v; select 2 as v"
      assert.are.equal(1, first[1].v)
      assert.are.equal(2, second[1].v)
    end)

    it("carry the type names of every statement's columns", function()
      local c <close> = connect()
      assert(c:query("create type pg_temp.hue as enum ('red', 'blue')"))
      for _ = 1, 2 do
        local a, b, d = c:query("select 1 as n; select 'red'::pg_temp.hue as h; select 2 as m")
        assert.are.equal("int4", a.fields[1].type)
        assert.are.equal("hue", b.fields[1].type)
        assert.are.equal("red", b[1].h)
        assert.are.equal(2, d[1].m)
      end
    end)

    it("take the row shape per call", function()
      local res = assert(conn:query("select 1 as a, 2 as b", { rows = "arrays" }))
      assert.are.same({ 1, 2 }, res[1])
      assert.are.equal(1, assert(conn:query("select 1 as a"))[1].a)
    end)
  end)

  describe("command tags", function()
    local c

    lazy_setup(function()
      c = connect()
      assert(c:query "create temp table tags (id int primary key, name text)")
    end)

    lazy_teardown(function()
      if c then
        c:close()
      end
    end)

    before_each(function()
      assert(c:query "delete from tags; insert into tags values (1, 'a'), (2, 'b'), (3, 'c')")
    end)

    it("stay right for results without columns that come in turn", function()
      for i = 1, 70 do
        local b = assert(c:query "begin")
        local ins = assert(c:execute("insert into tags values ($1::int, 'x')", 100 + i))
        local upd = assert(c:execute("update tags set name = 'y' where id <= $1::int", i % 3))
        local e = assert(c:query "commit")
        assert.are.equal("BEGIN", b.command)
        assert.is_nil(b.affected)
        assert.are.equal("INSERT 0 1", ins.tag)
        assert.are.equal(1, ins.affected)
        assert.are.equal("UPDATE " .. (i % 3), upd.tag)
        assert.are.equal(i % 3, upd.affected)
        assert.are.equal("COMMIT", e.tag)
        assert.are.same({}, e.columns)
      end
    end)

    it("name SELECT with the number of rows", function()
      local res = assert(c:query "select * from tags")
      assert.are.equal("SELECT", res.command)
      assert.are.equal("SELECT 3", res.tag)
      assert.are.equal(3, res.affected)
    end)

    it("name INSERT with the number of rows inserted", function()
      local res = assert(c:query "insert into tags values (4, 'd'), (5, 'e')")
      assert.are.equal("INSERT", res.command)
      assert.are.equal("INSERT 0 2", res.tag)
      assert.are.equal(2, res.affected)
    end)

    it("name UPDATE with the number of rows updated", function()
      local res = assert(c:query "update tags set name = 'z' where id < 3")
      assert.are.equal("UPDATE", res.command)
      assert.are.equal(2, res.affected)
    end)

    it("name DELETE with the number of rows deleted", function()
      local res = assert(c:query "delete from tags where id = 1")
      assert.are.equal("DELETE", res.command)
      assert.are.equal(1, res.affected)
    end)

    it("name CREATE TABLE without a count", function()
      local res = assert(c:query "create temp table tags_created (x int)")
      assert.are.equal("CREATE", res.command)
      assert.are.equal("CREATE TABLE", res.tag)
      assert.is_nil(res.affected)
    end)

    it("give a statement without rows an empty result", function()
      local res = assert(c:query "update tags set name = 'y'")
      assert.are.equal(0, #res)
    end)
  end)

  describe("an empty query string", function()
    it("gives a result marked empty", function()
      local res = assert(conn:query "")
      assert.is_true(res.empty)
    end)

    it("gives the same for a string of only a semicolon", function()
      local res = assert(conn:query ";")
      assert.is_true(res.empty)
    end)
  end)

  describe("a server error", function()
    it("returns nil and a server error", function()
      local res, err = conn:query "select * from nope"
      assert.is_nil(res)
      assert.are.equal("server", err.kind)
    end)

    it("carries the SQLSTATE", function()
      assert.are.equal("42P01", query_error(conn, "select * from nope").code)
    end)

    it("carries the severity", function()
      assert.are.equal("ERROR", query_error(conn, "select * from nope").severity)
    end)

    it("carries the message", function()
      assert.are.equal('relation "nope" does not exist',
        query_error(conn, "select * from nope").message)
    end)

    it("carries the position as an integer", function()
      local position = query_error(conn, "select * from nope").position
      assert.are.equal(15, position)
      assert.are.equal("integer", math.type(position))
    end)

    it("carries a hint when the server gives one", function()
      local err = query_error(conn, "select nope()")
      assert.are.equal("string", type(err.hint))
    end)

    it("reports division by zero as 22012", function()
      assert.are.equal("22012", query_error(conn, "select 1/0").code)
    end)

    it("formats as severity, SQLSTATE and message", function()
      assert.are.equal('ERROR 42P01: relation "nope" does not exist',
        tostring(query_error(conn, "select * from nope")))
    end)

    it("leaves the connection usable", function()
      query_error(conn, "select 1/0")
      assert.are.equal(1, H.value(conn, "select 1"))
    end)

    it("in a string of several statements returns nil, err", function()
      local res, err = conn:query "select 1; select 1/0; select 3"
      assert.is_nil(res)
      assert.are.equal("22012", err.code)
    end)

    it("in a string of several statements leaves the connection usable", function()
      query_error(conn, "select 1; select 1/0; select 3")
      assert.are.equal(1, H.value(conn, "select 1"))
    end)
  end)

  describe("a constraint violation", function()
    local c, err

    lazy_setup(function()
      c = connect()
      assert(c:query "create temp table uniq (id int constraint uniq_id primary key)")
      assert(c:query "insert into uniq values (1)")
      err = select(2, c:query "insert into uniq values (1)")
    end)

    lazy_teardown(function()
      if c then
        c:close()
      end
    end)

    it("carries SQLSTATE 23505", function()
      assert.are.equal("23505", err.code)
    end)

    it("names the constraint", function()
      assert.are.equal("uniq_id", err.constraint)
    end)

    it("names the table", function()
      assert.are.equal("uniq", err.table)
    end)

    it("names the schema", function()
      assert.matches("^pg_temp", err.schema)
    end)

    it("carries the detail", function()
      assert.are.equal("Key (id)=(1) already exists.", err.detail)
    end)

    it("leaves the connection usable", function()
      assert.are.equal(1, H.value(c, "select 1"))
    end)
  end)

  describe("a not-null violation", function()
    it("names the column", function()
      local c <close> = connect()
      assert(c:query "create temp table needy (id int, name text not null)")
      assert.are.equal("name", query_error(c, "insert into needy values (1, null)").column)
    end)
  end)

  describe("COPY", function()
    it("TO STDOUT returns nil, err", function()
      local res, err = conn:query "copy (select 1) to stdout"
      assert.is_nil(res)
      assert.is_table(err)
    end)

    it("TO STDOUT leaves the connection usable", function()
      conn:query "copy (select g from generate_series(1, 100) g) to stdout"
      assert.are.equal(1, H.value(conn, "select 1"))
    end)

    it("FROM STDIN returns nil, err and leaves the connection idle", function()
      local c <close> = connect()
      assert(c:query "create temp table copied (x int)")
      assert.is_nil(c:query "copy copied from stdin")
      assert.are.equal("idle", c:status())
    end)
  end)

  describe("notices", function()
    local raise_notice = "do $$ begin raise notice 'hello'; end $$"

    it("reach on_notice with their message", function()
      local seen = {}
      local c <close> = connect { on_notice = function(n) seen[#seen + 1] = n end }
      assert(c:query(raise_notice))
      assert.are.equal("hello", seen[1].message)
    end)

    it("reach on_notice with severity NOTICE", function()
      local seen = {}
      local c <close> = connect { on_notice = function(n) seen[#seen + 1] = n end }
      assert(c:query(raise_notice))
      assert.are.equal("NOTICE", seen[1].severity)
    end)

    it("reach on_notice once each", function()
      local count = 0
      local c <close> = connect { on_notice = function() count = count + 1 end }
      assert(c:query "do $$ begin raise notice 'a'; raise notice 'b'; end $$")
      assert.are.equal(2, count)
    end)

    it("are dropped when there is no on_notice", function()
      local res = assert(conn:query(raise_notice))
      assert.are.equal("DO", res.command)
    end)

    it("do not break the query when on_notice raises", function()
      local c <close> = connect { on_notice = function() error("callback failed") end }
      local _, res = c:query(raise_notice .. "; select 7 as v")
      assert.are.equal(7, res[1].v)
    end)

    it("leave the connection usable when on_notice raises", function()
      local c <close> = connect { on_notice = function() error("callback failed") end }
      c:query(raise_notice)
      assert.are.equal(1, H.value(c, "select 1"))
    end)
  end)

  describe("large results", function()
    it("arrive complete for 100000 rows", function()
      local res = assert(conn:query "select g from generate_series(1, 100000) g")
      assert.are.equal(100000, #res)
      assert.are.equal(100000, res[100000].g)
    end)

    it("go out intact for 10 MB of SQL text", function()
      local sql = "select length('" .. string.rep("q", 10000000) .. "')"
      assert.are.equal(10000000, H.value(conn, sql))
    end)

    it("arrive intact for a 10 MB value", function()
      local value = H.value(conn, "select repeat('x', 10000000)")
      assert.are.equal(10000000, #value)
      assert.is_true(value == string.rep("x", 10000000))
    end)
  end)

  describe("misuse", function()
    it("raises for SQL text with a NUL byte", function()
      assert.has_error(function() conn:query "select 1\0; select 2" end)
    end)

    it("says why SQL text with a NUL byte is refused", function()
      local ok, err = pcall(conn.query, conn, "select '\0'")
      assert.is_false(ok)
      assert.matches("NUL", tostring(err), 1, true)
    end)

    it("leaves the connection usable after refusing SQL text with a NUL byte", function()
      pcall(conn.query, conn, "select '\0'")
      assert.are.equal(1, H.value(conn, "select 1"))
    end)
  end)
end)
