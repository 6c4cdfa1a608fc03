-- Random and mutated server bytes never crash the client: every attempt
-- ends in a connection or a clear error.
local pg = require "pg"

-- Big-endian Int32 and a backend message.
local function i32(n) return string.pack(">i4", n) end
local function msg(t, body) return t .. i32(#body + 4) .. body end

-- A well-formed startup: AuthenticationOk, a ParameterStatus,
-- BackendKeyData, ReadyForQuery.
local GOOD_STARTUP = msg("R", i32(0)) .. msg("S", "server_version\0" .. "15.0\0")
  .. msg("K", i32(42) .. i32(7)) .. msg("Z", "I")

-- A well-formed answer to a query: RowDescription of (int4 a, text b),
-- two DataRows, CommandComplete, ReadyForQuery.
local function field(name, oid)
  return name .. "\0" .. i32(0) .. string.pack(">i2", 0) .. i32(oid)
    .. string.pack(">i2", -1) .. i32(-1) .. string.pack(">i2", 0)
end
local GOOD_ANSWER = msg("T", string.pack(">i2", 2) .. field("a", 23) .. field("b", 25))
  .. msg("D", string.pack(">i2", 2) .. i32(1) .. "7" .. i32(2) .. "hi")
  .. msg("D", string.pack(">i2", 2) .. i32(-1) .. i32(0))
  .. msg("C", "SELECT 2\0") .. msg("Z", "I")

-- A transport that plays back a script of server bytes, handing out at
-- most what is asked for, and reports "closed" at the end.
local function playback(bytes)
  local pos = 1
  return {
    send = function(_, data, i) return #data end,
    receive = function(_, n)
      if pos > #bytes then return nil, "closed", "" end
      local chunk = bytes:sub(pos, pos + n - 1)
      pos = pos + #chunk
      if #chunk < n then return nil, "closed", chunk end
      return chunk
    end,
    close = function() end,
  }
end

local function mutate(s, rng)
  local b = { s:byte(1, -1) }
  for _ = 1, rng(1, 4) do
    local what = rng(1, 3)
    local at = rng(1, #b)
    if what == 1 then
      b[at] = rng(0, 255)
    elseif what == 2 then
      table.remove(b, at)
    else
      table.insert(b, at, rng(0, 255))
    end
  end
  return string.char(table.unpack(b))
end

local function attempt(bytes)
  local conn, err = pg.connect {
    host = "127.0.0.1", user = "u", database = "d", env = false, socket = playback(bytes),
  }
  if not conn then return "connect", err end
  local res, qerr = conn:query("select 1")
  conn:close()
  return res and "result" or "query", qerr
end

describe("random server bytes", function()
  it("never crash the client and always end in a result or an error", function()
    local seed = os.time()
    math.randomseed(seed)
    local rng = math.random
    local outcomes = {}
    for i = 1, 3000 do
      local bytes
      if i % 3 == 0 then
        local n = rng(0, 64)
        local t = {}
        for j = 1, n do t[j] = string.char(rng(0, 255)) end
        bytes = table.concat(t)
      elseif i % 3 == 1 then
        bytes = mutate(GOOD_STARTUP, rng) .. GOOD_ANSWER
      else
        bytes = GOOD_STARTUP .. mutate(GOOD_ANSWER, rng)
      end
      local ok, how, err = pcall(attempt, bytes)
      assert.is_true(ok, "seed " .. seed .. ", case " .. i .. ": " .. tostring(how))
      if how ~= "result" then
        assert.is_table(err, "seed " .. seed .. ", case " .. i)
        assert.is_string(err.kind)
      end
      outcomes[how] = (outcomes[how] or 0) + 1
    end
    assert.is_true((outcomes.connect or 0) > 0)
  end)

  it("that end a query without completing its result give a protocol error", function()
    local T = msg("T", string.pack(">i2", 2) .. field("a", 23) .. field("b", 25))
    local D = msg("D", string.pack(">i2", 2) .. i32(1) .. "7" .. i32(2) .. "hi")
    local Z = msg("Z", "I")
    local answers = {
      query = { T .. D .. Z, Z, T .. D .. msg("2", "SELECT 1\0") .. Z },
      execute = { msg("1", "") .. msg("2", "") .. T .. D .. Z, msg("1", "") .. msg("2", "") .. Z },
    }
    for how, list in pairs(answers) do
      for i, answer in ipairs(list) do
        local conn = assert(pg.connect {
          host = "127.0.0.1", user = "u", database = "d", env = false,
          socket = playback(GOOD_STARTUP .. answer),
        })
        local res, err
        if how == "query" then
          res, err = conn:query("select 1")
        else
          res, err = conn:execute("select 1")
        end
        assert.is_nil(res, how .. " " .. i)
        assert.equal("protocol", err.kind, how .. " " .. i)
        assert.matches("without completing its result", err.message)
        conn:close()
      end
    end
  end)

  it("decode the well-formed answer used by the fuzzer", function()
    local conn = assert(pg.connect {
      host = "127.0.0.1", user = "u", database = "d", env = false,
      socket = playback(GOOD_STARTUP .. GOOD_ANSWER),
    })
    local res = assert(conn:query("select 1"))
    assert.equal(7, res[1].a)
    assert.equal("hi", res[1].b)
    assert.equal(pg.null, res[2].a)
    assert.equal("", res[2].b)
    assert.equal(2, res.affected)
    conn:close()
  end)
end)
