-- Parameters through the extended query protocol, and the type system.
local pg = require "pg"
local H = require "support.helper"

local has_cjson = pcall(require, "cjson")


local function trust(extra)
  local cfg = H.config({ user = "trustuser" })
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return assert(pg.connect(cfg))
end

describe("conn:execute", function()
  local conn
  before_each(function() conn = trust() end)
  after_each(function() conn:close() end)

  it("runs under Lua 5.4", function()
    assert.equal("Lua 5.4", _VERSION)
  end)

  it("returns one result for a statement with parameters", function()
    local res = assert(conn:execute("select $1::int4 + $2::int4 as sum", 2, 3))
    assert.equal(5, res[1].sum)
    assert.equal("SELECT", res.command)
    assert.equal(1, res.affected)
  end)

  it("never puts parameters into the SQL text", function()
    local evil = "'; drop table nope; --"
    local res = assert(conn:execute("select $1::text as v", evil))
    assert.equal(evil, res[1].v)
  end)

  it("sends integers as int8 and keeps them exact", function()
    local res = assert(conn:execute("select $1 as a, $2 as b, pg_typeof($1)::text as t",
                                    math.mininteger, math.maxinteger))
    assert.equal(math.mininteger, res[1].a)
    assert.equal(math.maxinteger, res[1].b)
    assert.equal("bigint", res[1].t)
  end)

  it("sends floats as float8, NaN and infinities included", function()
    local res = assert(conn:execute("select $1 as a, $2 as b, $3 as c, $4 as d",
                                    1.5, 0 / 0, math.huge, -math.huge))
    assert.equal(1.5, res[1].a)
    assert.is_true(res[1].b ~= res[1].b)
    assert.equal(math.huge, res[1].c)
    assert.equal(-math.huge, res[1].d)
  end)

  it("sends booleans", function()
    local res = assert(conn:execute("select $1 as t, $2 as f", true, false))
    assert.is_true(res[1].t)
    assert.is_false(res[1].f)
  end)

  it("lets the server infer the type of a string", function()
    local res = assert(conn:execute("select $1::int4 + 1 as n, $2::date as d", "41", "2024-02-29"))
    assert.equal(42, res[1].n)
    assert.equal("2024-02-29", res[1].d)
  end)

  it("sends nil and pg.null as SQL NULL, trailing ones included", function()
    local res = assert(conn:execute(
      "select $1::int is null as a, $2::text is null as b, $3::text is null as c",
      1, nil, pg.null))
    assert.is_false(res[1].a)
    assert.is_true(res[1].b)
    assert.is_true(res[1].c)
  end)

  it("reports a parameter count the server does not expect", function()
    local res, err = conn:execute("select $1::int, $2::int", 1)
    assert.is_nil(res)
    assert.equal("server", err.kind)
    assert.equal("08P01", err.code)
    assert.equal(1, assert(conn:execute("select 1 as one"))[1].one)
  end)

  it("raises for a value that cannot be encoded, naming its position", function()
    local ok, err = pcall(conn.execute, conn, "select $1, $2", 1, function() end)
    assert.is_false(ok)
    assert.matches("parameter %$2", tostring(err))
    assert.equal(1, assert(conn:execute("select 1 as one"))[1].one)
  end)

  it("refuses a table that is not a sequence", function()
    local ok, err = pcall(conn.execute, conn, "select $1", { a = 1 })
    assert.is_false(ok)
    assert.matches("parameter %$1", tostring(err))
    assert.matches("pg.json", tostring(err))
  end)

  it("returns a server error with its fields and stays usable", function()
    local res, err = conn:execute("select * from nope where id = $1", 1)
    assert.is_nil(res)
    assert.equal("42P01", err.code)
    assert.equal(1, assert(conn:execute("select $1::int as one", 1))[1].one)
  end)

  it("refuses several statements in one string", function()
    local res, err = conn:execute("select 1; select 2")
    assert.is_nil(res)
    assert.equal("server", err.kind)
  end)

  it("runs statements without a result set", function()
    assert(conn:execute("create temp table t (id int, name text)"))
    local res = assert(conn:execute("insert into t values ($1, $2), ($3, $4)", 1, "a", 2, "b"))
    assert.equal("INSERT", res.command)
    assert.equal(2, res.affected)
    assert.equal(0, #res)
  end)
end)

describe("parameter and result types", function()
  local conn
  before_each(function() conn = trust() end)
  after_each(function() conn:close() end)

  local function roundtrip(sql, ...)
    local res = assert(conn:execute(sql, ...))
    return res[1].v
  end

  it("round-trips int2, int4, int8 and oid edge values", function()
    assert.equal(-32768, roundtrip("select $1::int2 as v", -32768))
    assert.equal(2147483647, roundtrip("select $1::int4 as v", 2147483647))
    assert.equal(math.mininteger, roundtrip("select $1::int8 as v", math.mininteger))
    assert.equal(math.maxinteger, roundtrip("select $1::int8 as v", math.maxinteger))
    assert.equal(4294967295, roundtrip("select $1::oid as v", "4294967295"))
    assert.equal("integer", math.type(roundtrip("select $1::int8 as v", 7)))
  end)

  it("round-trips float4 and float8", function()
    assert.equal(0.5, roundtrip("select $1::float4 as v", 0.5))
    assert.equal(1e308, roundtrip("select $1::float8 as v", 1e308))
    assert.equal("float", math.type(roundtrip("select $1::float8 as v", 1)))
    local nan = roundtrip("select $1::float8 as v", 0 / 0)
    assert.is_true(nan ~= nan)
  end)

  it("gives float4 as the server prints it, the same through a prepared statement", function()
    assert.equal(0.1, roundtrip("select $1::float4 as v", 0.1))
    local stmt = assert(conn:prepare("select $1::float4 as v"))
    assert.equal(0.1, assert(stmt:execute(0.1))[1].v)
    assert.equal(0.1, assert(conn:query("select 0.1::float4 as v"))[1].v)
    stmt:close()
  end)

  it("reads float8 text exactly, as the C library would", function()
    -- Random doubles over the whole range of exponents, sent exactly and
    -- read back from the server's shortest text.
    math.randomseed(7)
    local xs = {}
    for i = 1, 3000 do
      local x = string.unpack("<d", string.pack("<i4i4", math.random(0, 0x7fffffff),
                                                math.random(0, 0x7fefffff)))
      if x ~= x or x == math.huge then x = i + 0.5 end
      if i % 3 == 0 then x = math.random() * 1000 end
      if i % 3 == 1 then x = (math.random() - 0.5) * 10 ^ math.random(-30, 30) end
      xs[i] = x
    end
    local res = assert(conn:execute(
      "select v, v::text as t from unnest($1::float8[]) with ordinality as u(v, i) order by i", xs))
    assert.equal(#xs, #res)
    for i, row in ipairs(res) do
      assert.equal(xs[i], row.v, row.t)
      assert.equal(tonumber(row.t), row.v, row.t)
    end
    -- Texts of up to 19 digits, half-way cases included, against strtod
    -- (Lua's tonumber).
    local core = conn._core
    local texts = {
      "9007199254740993", "9007199254740995", "-9007199254740993", "18014398509481989",
      "9223372036854775807", "1844674407370955161", "0.30000000000000004",
      "2.2250738585072014e-308", "4.9406564584124654e-324", "1.7976931348623157e+308",
      "123456789012345678e-27", "1e27", "1e-27", "0.000000000000000000000000001",
      "-0", "0.0", "5e-324", "7.0e22", "7e23", "8.589973e9", "1.000000000000000055511151231257827",
      -- Rounds to a long double half-way between two doubles, and the
      -- exact value is not half-way.
      "9176693756400106268e-21",
    }
    for _ = 1, 5000 do
      local digits = {}
      for j = 1, math.random(1, 19) do digits[j] = math.random(0, 9) end
      local d = table.concat(digits)
      local at = math.random(0, #d)
      local t = d:sub(1, at) .. "." .. d:sub(at + 1)
      if t == "." then t = "0" end
      if math.random(2) == 1 then t = t .. "e" .. math.random(-30, 30) end
      if math.random(2) == 1 then t = "-" .. t end
      texts[#texts + 1] = t
    end
    for _, t in ipairs(texts) do
      local v = core:decode_text(701, t)
      local want = tonumber(t)
      if math.type(want) == "integer" then want = tonumber(t .. ".0") end
      assert.equal("float", math.type(v), t)
      assert.equal(want, v, t)
      assert.equal(1 / want, 1 / v, t)      -- the sign of zero
    end
  end)

  it("keeps numeric exact as a string", function()
    local v = "12345678901234567890.12345678901234567890"
    assert.equal(v, roundtrip("select $1::numeric as v", v))
  end)

  it("converts numeric to a number on request", function()
    local c = trust({ numeric = "number" })
    local res = assert(c:execute("select 1.5::numeric as a, 42::numeric as b"))
    assert.equal(1.5, res[1].a)
    assert.equal(42, res[1].b)
    c:close()
  end)

  it("round-trips text of every kind", function()
    local text = "héllo wörld ✓ 日本"
    assert.equal(text, roundtrip("select $1::text as v", text))
    assert.equal("", roundtrip("select $1::text as v", ""))
    assert.equal("ab  ", roundtrip("select $1::char(4) as v", "ab"))
    assert.equal("x", roundtrip("select $1::varchar as v", "x"))
    assert.equal("nm", roundtrip("select $1::name as v", "nm"))
  end)

  it("round-trips all 256 byte values through bytea", function()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    local all = table.concat(bytes)
    assert.equal(all, roundtrip("select $1::bytea as v", pg.bytea(all)))
    assert.equal(256, roundtrip("select length($1::bytea) as v", pg.bytea(all)))
  end)

  it("decodes bytea in the escape output format too", function()
    assert(conn:query("set bytea_output = 'escape'"))
    assert.equal("a\0b\\c\255", roundtrip("select $1::bytea as v", pg.bytea("a\0b\\c\255")))
  end)

  it("returns uuids in canonical lower case", function()
    assert.equal("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
      roundtrip("select $1::uuid as v", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"))
  end)

  it("returns dates and times as ISO 8601 strings", function()
    local res = assert(conn:execute([[select '2024-02-29'::date as d, '13:14:15.5'::time as t,
      '2024-02-29 13:14:15'::timestamp as ts,
      '2024-02-29 13:14:15+00'::timestamptz at time zone 'UTC' as tsu,
      '1 day 02:03:04'::interval as i]]))
    assert.equal("2024-02-29", res[1].d)
    assert.equal("13:14:15.5", res[1].t)
    assert.equal("2024-02-29 13:14:15", res[1].ts)
    assert.equal("2024-02-29 13:14:15", res[1].tsu)
    assert.equal("1 day 02:03:04", res[1].i)
    assert.equal("ISO, MDY", conn:parameter("DateStyle"))
  end)

  it("returns enums and unknown types as strings", function()
    assert(conn:query("create type pg_temp.mood as enum ('sad', 'happy')"))
    assert.equal("happy", roundtrip("select 'happy'::pg_temp.mood as v"))
  end)

  it("decodes json and jsonb with nesting", function()
    if not has_cjson then return pending("lua-cjson is not installed") end
    local v = roundtrip([[select '{"a": [1, 2, {"b": null}], "c": "x"}'::jsonb as v]])
    assert.equal(1, v.a[1])
    assert.equal(pg.null, v.a[3].b)
    assert.equal("x", v.c)
    local j = roundtrip("select $1::json as v", pg.json({ list = { 1, 2, 3 }, ok = true }))
    assert.same({ list = { 1, 2, 3 }, ok = true }, j)
  end)

  it("keeps json text on request", function()
    local c = trust({ json = "text" })
    local res = assert(c:execute([[select '{"a":1}'::json as v]]))
    assert.equal('{"a":1}', res[1].v)
    c:close()
  end)

  it("sends a pg.json string as JSON text", function()
    assert.equal(3, roundtrip("select ($1::json->>'n')::int as v", pg.json('{"n": 3}')))
  end)

  it("round-trips arrays of integers, floats, booleans and strings", function()
    assert.same({ 1, 2, 3 }, roundtrip("select $1::int4[] as v", { 1, 2, 3 }))
    assert.same({ 1.5, -2.25 }, roundtrip("select $1::float8[] as v", { 1.5, -2.25 }))
    assert.same({ true, false }, roundtrip("select $1::bool[] as v", { true, false }))
    assert.same({ "a", "b c", 'q"uote', "back\\slash", "", "NULL" },
      roundtrip("select $1::text[] as v", { "a", "b c", 'q"uote', "back\\slash", "", "NULL" }))
  end)

  it("round-trips empty arrays", function()
    assert.same({}, roundtrip("select $1::int[] as v", {}))
    assert.same({}, roundtrip("select '{}'::text[] as v"))
  end)

  it("keeps NULL elements of arrays as pg.null", function()
    local v = roundtrip("select $1::int[] as v", { 1, pg.null, 3 })
    assert.equal(3, #v)
    assert.equal(pg.null, v[2])
    assert.equal(3, v[3])
  end)

  it("round-trips multi-dimensional arrays", function()
    assert.same({ { 1, 2 }, { 3, 4 } }, roundtrip("select $1::int[] as v", { { 1, 2 }, { 3, 4 } }))
    assert.same({ { { "a" } }, { { "b" } } },
      roundtrip("select $1::text[] as v", { { { "a" } }, { { "b" } } }))
  end)

  it("refuses arrays PostgreSQL cannot hold, naming the parameter", function()
    for _, bad in ipairs({ { 1, { 2 } }, { { 1 }, 2 }, { { 1, 2 }, { 3 } }, { {}, {} },
                           { { 1 }, pg.null }, { { { 1 } }, { 2 } } }) do
      local ok, err = pcall(conn.execute, conn, "select $1::text, $2::int[] as v", "x", bad)
      assert.is_false(ok)
      assert.matches("parameter %$2: not a PostgreSQL array", err)
    end
    assert.equal("idle", conn:status())
    assert.same({ { 1, pg.null }, { 3, 4 } },
      assert(conn:execute("select $1::int[] as v", { { 1, pg.null }, { 3, 4 } }))[1].v)
    assert.same({ "[1]", "{}" },
      assert(conn:execute("select $1::text[] as v", { pg.json({ 1 }), pg.json("{}") }))[1].v)
  end)

  it("decodes arrays of enums, the first time and later", function()
    assert(conn:query("create type pg_temp.tone as enum ('low', 'high')"))
    local sql = "select array['low', 'high', null]::pg_temp.tone[] as v"
    for _ = 1, 2 do
      local v = roundtrip(sql)
      assert.equal("table", type(v))
      assert.equal(3, #v)
      assert.equal("high", v[2])
      assert.equal(pg.null, v[3])
    end
    assert.same({ { "low" }, { "high" } },
      assert(conn:query("select array[array['low'], array['high']]::pg_temp.tone[] as v"))[1].v)
  end)

  it("decodes arrays of enums through prepared statements and positional rows", function()
    assert(conn:query("create type pg_temp.size as enum ('s', 'm')"))
    local stmt = assert(conn:prepare("select array['s', 'm']::pg_temp.size[] as v, 1 as n",
                                     { rows = "arrays" }))
    assert.same({ "s", "m" }, assert(stmt:execute())[1][1])
    local q = assert(conn:query("select array['m']::pg_temp.size[] as v", { rows = "arrays" }))
    assert.same({ "m" }, q[1][1])
  end)

  it("returns citext as a string and citext arrays as tables", function()
    local admin = assert(pg.connect(H.config({ user = "postgres" })))
    assert(admin:query("create extension if not exists citext"))
    local res = assert(admin:execute(
      "select 'MiXeD'::citext as v, array['a', 'B']::citext[] as a, 'x'::citext = 'X' as same"))
    assert.equal("MiXeD", res[1].v)
    assert.same({ "a", "B" }, res[1].a)
    assert.is_true(res[1].same)
    admin:close()
  end)

  it("decodes arrays with explicit bounds", function()
    assert.same({ 1, 2 }, roundtrip("select '[0:1]={1,2}'::int[] as v"))
  end)

  it("decodes arrays of uuids, numerics and bytea", function()
    local res = assert(conn:execute([[select
      array['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11']::uuid[] as u,
      array[1.10, 2]::numeric[] as n, array['\x00ff'::bytea] as b]]))
    assert.same({ "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" }, res[1].u)
    assert.same({ "1.10", "2" }, res[1].n)
    assert.same({ "\0\255" }, res[1].b)
  end)

  it("describes each result column with name, type name and OID", function()
    local res = assert(conn:execute("select 1::int4 as a, 'x'::text as b, now() as c"))
    assert.same({ "a", "b", "c" }, res.columns)
    assert.equal("a", res.fields[1].name)
    assert.equal("int4", res.fields[1].type)
    assert.equal(23, res.fields[1].oid)
    assert.equal("text", res.fields[2].type)
    assert.equal("timestamptz", res.fields[3].type)
  end)

  it("names types outside the built-in list from the catalog", function()
    assert(conn:query("create type pg_temp.colour as enum ('red')"))
    local res = assert(conn:execute("select 'red'::pg_temp.colour as c, 'a'::tsquery as q"))
    assert.equal("colour", res.fields[1].type)
    assert.equal("tsquery", res.fields[2].type)
  end)
end)

describe("row shapes", function()
  it("keys rows by column name by default", function()
    local conn = trust()
    local res = assert(conn:execute("select 1 as a, 2 as b"))
    assert.same({ a = 1, b = 2 }, res[1])
    conn:close()
  end)

  it("gives positional rows with rows = 'arrays'", function()
    local conn = trust({ rows = "arrays" })
    local res = assert(conn:execute("select 1 as a, null as b, 3 as c"))
    assert.same({ 1, pg.null, 3 }, res[1])
    local q = assert(conn:query("select 1 as a, 2 as b"))
    assert.same({ 1, 2 }, q[1])
    conn:close()
  end)

  it("takes the row shape per query too", function()
    local conn = trust()
    local q = assert(conn:query("select 1 as a, 2 as b", { rows = "arrays" }))
    assert.same({ 1, 2 }, q[1])
    conn:close()
  end)

  it("keeps duplicate column names apart", function()
    local conn = trust()
    local res = assert(conn:execute("select 1 as a, 2 as a, 3 as b"))
    assert.same({ a = 1, a_2 = 2, b = 3 }, res[1])
    assert.same({ "a", "a_2", "b" }, res.columns)
    assert.equal("a", res.fields[2].name)
    assert.equal("a_2", res.fields[2].key)
    conn:close()
  end)

  it("refuses an unknown rows option", function()
    local conn, err = pg.connect(H.config({ user = "trustuser", rows = "lists" }))
    assert.is_nil(conn)
    assert.equal("config", err.kind)
    assert.matches("rows", err.message)
  end)
end)

describe("the type registry", function()
  after_each(function()
    pg.types.register("hstore", nil)
    pg.types.register("int4", nil)
    pg.types.register("pg_temp.point3", nil)
  end)

  it("decodes a type by name with a registered decoder", function()
    local conn = trust()
    pg.types.register("int4", { decode = function(text) return "int:" .. text end })
    local res = assert(conn:execute("select 7::int4 as v, 8::int8 as w"))
    assert.equal("int:7", res[1].v)
    assert.equal(8, res[1].w)
    conn:close()
  end)

  it("decodes a domain's values as its base type", function()
    local conn = trust()
    assert(conn:query("create domain pg_temp.posint as int4 check (value > 0)"))
    local res = assert(conn:execute("select 5::pg_temp.posint as v"))
    assert.equal(5, res[1].v)
    conn:close()
  end)

  it("encodes parameters of prepared statements with a registered encoder", function()
    local conn = trust()
    assert(conn:query("create type pg_temp.pair as (a int, b int)"))
    pg.types.register("pg_temp.pair", {
      encode = function(v) return "(" .. v[1] .. "," .. v[2] .. ")" end,
      decode = function(text)
        local a, b = text:match("^%((%d+),(%d+)%)$")
        return { tonumber(a), tonumber(b) }
      end,
    })
    local stmt = assert(conn:prepare("select $1::pg_temp.pair as v"))
    local res = assert(stmt:execute({ 3, 4 }))
    assert.same({ 3, 4 }, res[1].v)
    pg.types.register("pg_temp.pair", nil)
    conn:close()
  end)

  it("reports a failing decoder as an error and stays usable", function()
    local conn = trust()
    pg.types.register("int4", function() error("boom") end)
    local res, err = conn:execute("select 1::int4 as v")
    assert.is_nil(res)
    assert.matches("boom", err.message)
    pg.types.register("int4", nil)
    assert.equal(1, assert(conn:execute("select 1::int4 as v"))[1].v)
    conn:close()
  end)

  it("rejects a registration that is not a function table", function()
    assert.has_error(function() pg.types.register("x", { decode = 1 }) end)
    assert.has_error(function() pg.types.register(true, {}) end)
  end)
end)

describe("float decoding", function()
  it("reads every float8 the server prints exactly as strtod does", function()
    local conn = trust()
    local res = assert(conn:query([[select x, x::text as t from (
      select (random() * 10 ^ (floor(random() * 40) - 20))::float8 as x
        from generate_series(1, 20000)
      union all
      select round((random() * 100000)::numeric, (floor(random() * 6))::int)::float8
        from generate_series(1, 20000)
      union all
      select v from unnest(array['0.1', '0.3', '1e22', '1e-22', '123456789012345',
        '5e-324', '1.7976931348623157e308', '9007199254740993']::float8[]) as v) as s]]))
    local bad = {}
    for _, row in ipairs(res) do
      if row.x ~= tonumber(row.t) + 0.0 then bad[#bad + 1] = row.t end
    end
    assert.same({}, bad)
    conn:close()
  end)
end)
