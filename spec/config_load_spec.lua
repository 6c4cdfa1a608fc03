-- Specs for pg.config.load: the example configuration files, the sandbox Lua configs run
-- in, and the failures.  pg.ssl is replaced by a stub whose context_reader returns a
-- function giving back the map, so no compiled module is needed.

local saved_ssl = package.loaded["pg.ssl"]
local saved_preload = package.preload["pg.ssl"]

-- The stub of pg.ssl: the context "builder" returns the options it was given.
local ssl_stub = {
  context_reader = function(map)
    return function() return map end
  end,
}

package.loaded["pg.ssl"] = ssl_stub
package.loaded["pg.config"] = nil
local config = require "pg.config"

-- Temporary files made by the specs, removed at the end.
local made = {}

-- Writes text to a new temporary file whose name ends in suffix; returns the path.
local function temp_file(suffix, text)
  local base = os.tmpname()
  os.remove(base)
  local path = base .. suffix
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  made[#made + 1] = path
  return path
end

-- Loads path, which must fail; returns the error.
local function load_error(path)
  local value, err = config.load(path)
  assert.is_nil(value)
  assert.is_table(err)
  assert.equal("config", err.kind)
  assert.equal(err.message, tostring(err))
  return err
end

-- The certificate settings both example files declare.
local EXAMPLE_CERTS = {
  key = "/etc/pg/certs/client.key",
  cert = "/etc/pg/certs/client.crt",
  ca = "/etc/pg/certs/root.crt",
}

describe("pg.config.load", function()
  teardown(function()
    for _, path in ipairs(made) do
      os.remove(path)
    end
    package.loaded["pg.ssl"] = saved_ssl
    package.preload["pg.ssl"] = saved_preload
  end)

  describe("examples/db.edn", function()
    it("gives the connection settings under their EDN names", function()
      local t = assert(config.load("examples/db.edn"))
      assert.equal("127.0.0.1", t.host)
      assert.equal(5432, t.port)
      assert.equal("certuser", t.user)
      assert.equal("pgtest", t.database)
      assert.is_true(t["ssl?"])
    end)

    it("wraps the #pg/ssl-context map in a context builder", function()
      local t = assert(config.load("examples/db.edn"))
      assert.is_function(t["ssl-context"])
      assert.same({
        ["key-file"] = EXAMPLE_CERTS.key,
        ["cert-file"] = EXAMPLE_CERTS.cert,
        ["ca-cert-file"] = EXAMPLE_CERTS.ca,
      }, t["ssl-context"]())
    end)
  end)

  describe("examples/db.lua", function()
    it("gives the connection settings under their Lua names", function()
      local t = assert(config.load("examples/db.lua"))
      assert.equal("127.0.0.1", t.host)
      assert.equal(5432, t.port)
      assert.equal("certuser", t.user)
      assert.equal("pgtest", t.database)
      assert.is_true(t.ssl)
    end)

    it("wraps the ssl_context{...} table in a context builder", function()
      local t = assert(config.load("examples/db.lua"))
      assert.is_function(t.ssl_context)
      assert.same({
        key_file = EXAMPLE_CERTS.key,
        cert_file = EXAMPLE_CERTS.cert,
        ca_cert_file = EXAMPLE_CERTS.ca,
      }, t.ssl_context())
    end)
  end)

  describe("runs Lua configs in a sandbox", function()
    local forbidden = {
      { "os", "return { x = os.getenv('HOME') }" },
      { "io", "return { x = io.open('/etc/passwd') }" },
      { "require", "return { x = require('os') }" },
      { "load", "return { x = load('return 1') }" },
      { "dofile", "return { x = dofile('/dev/null') }" },
      { "package", "return { x = package.loaded }" },
      { "debug", "return { x = debug.getinfo(1) }" },
      { "getmetatable", "return { x = getmetatable('') }" },
      { "setmetatable", "return setmetatable({}, {})" },
      { "rawset", "return rawset({}, 1, 2)" },
      { "collectgarbage", "return { x = collectgarbage('count') }" },
      { "_G", "return { x = _G }" },
    }
    for _, case in ipairs(forbidden) do
      local name, source = case[1], case[2]
      it("refusing " .. name .. " with a message naming it and the file", function()
        local path = temp_file(".lua", source)
        local err = load_error(path)
        assert.equal(path .. ":1: '" .. name .. "' is not available in a config file",
          err.message)
      end)
    end

    it("offering the safe library functions", function()
      local path = temp_file(".lua", [[
        local parts = {}
        for _, w in ipairs({ "a", "b" }) do parts[#parts + 1] = string.upper(w) end
        return {
          joined = table.concat(parts, ","),
          port = math.tointeger(tonumber("5432")),
          len = utf8.len("caf\u{e9}"),
          kind = type(pairs) .. select("#", 1, 2),
          ok = pcall(error, "x") == false and next({}) == nil and assert(true),
          text = ("%d"):format(7) .. tostring(8),
        }
      ]])
      assert.same({ joined = "A,B", port = 5432, len = 4, kind = "function2", ok = true,
        text = "78" }, assert(config.load(path)))
    end)

    it("giving copies of the libraries, so a config cannot change the real ones", function()
      local path = temp_file(".lua", "string.rep = nil; math.pi = 3; return {}")
      assert(config.load(path))
      assert.is_function(string.rep)
      assert.is_true(math.pi > 3.14)
    end)

    it("without string.dump", function()
      local path = temp_file(".lua", "return { dump = string.dump }")
      assert.is_nil(assert(config.load(path)).dump)
    end)

    it("refusing binary chunks", function()
      local path = temp_file(".lua", string.dump(function() return {} end))
      local err = load_error(path)
      assert.equal(path .. ": attempt to load a binary chunk (mode is 't')", err.message)
    end)
  end)

  describe("rejects", function()
    it("a Lua config that returns a number", function()
      local path = temp_file(".lua", "return 42")
      assert.equal(path .. ": a config must return a table, but it returned a number",
        load_error(path).message)
    end)

    it("a Lua config that returns nothing", function()
      local path = temp_file(".lua", "local x = 1")
      assert.equal(path .. ": a config must return a table, but it returned nothing",
        load_error(path).message)
    end)

    it("a Lua config with a syntax error, naming the file and line", function()
      local path = temp_file(".lua", "return {\n  host = = 1 }")
      assert.matches(path .. ":2:", load_error(path).message, 1, true)
    end)

    it("a Lua config that raises, naming the file and line", function()
      local path = temp_file(".lua", "local x = nil\n\nreturn { x = x.y }")
      assert.matches(path .. ":3: attempt to index", load_error(path).message, 1, true)
    end)

    it("ssl_context given something other than a table", function()
      local path = temp_file(".lua", 'return { ssl_context = ssl_context "x" }')
      assert.equal(path .. ":1: ssl_context expects a table of options, got string",
        load_error(path).message)
    end)

    it("an EDN config that is not a map", function()
      local path = temp_file(".edn", "[:host 1]")
      assert.equal(path .. ": a config must be a map, but the file holds a vector",
        load_error(path).message)
    end)

    it("an EDN config with a syntax error, with line and column", function()
      local path = temp_file(".edn", '{:host "127.0.0.1"\n :port}')
      local err = load_error(path)
      assert.equal(1, err.line)
      assert.equal(1, err.column)
      assert.equal(path .. ": line 1, column 1: map literal must contain an even number "
        .. "of forms, found 3", err.message)
    end)

    it("an EDN config with an unknown tag", function()
      local path = temp_file(".edn", '{:ssl-context #pg/tls {}}')
      assert.equal(path .. ": line 1, column 15: unknown tag #pg/tls",
        load_error(path).message)
    end)

    it("a file with an unsupported extension, naming the path and the supported ones",
      function()
        local err = load_error("examples/db.yaml")
        assert.equal("cannot load examples/db.yaml: unsupported file type; "
          .. "a config file must end in .edn or .lua", err.message)
      end)

    it("a file without an extension", function()
      assert.matches("must end in .edn or .lua", load_error("examples/db").message, 1, true)
    end)

    it("a missing EDN file, naming the path and the reason", function()
      assert.equal("cannot open /nonexistent/db.edn: No such file or directory",
        load_error("/nonexistent/db.edn").message)
    end)

    it("a missing Lua file, naming the path and the reason", function()
      assert.equal("cannot open /nonexistent/db.lua: No such file or directory",
        load_error("/nonexistent/db.lua").message)
    end)

    it("a path that is not a string, by raising", function()
      assert.has_error(function() config.load(nil) end,
        "bad argument #1 to 'load' (string expected, got nil)")
    end)
  end)

  describe("loads pg.ssl only when a file asks for a TLS context", function()
    before_each(function()
      package.loaded["pg.ssl"] = nil
      package.preload["pg.ssl"] = function() error("pg.ssl is not built", 0) end
    end)

    after_each(function()
      package.preload["pg.ssl"] = saved_preload
      package.loaded["pg.ssl"] = ssl_stub
    end)

    it("so an EDN config without the tag loads without it", function()
      local path = temp_file(".edn", '{:host "127.0.0.1" :ssl? false}')
      assert.same({ host = "127.0.0.1", ["ssl?"] = false }, assert(config.load(path)))
    end)

    it("and reports a missing pg.ssl as a config error at the tag", function()
      local path = temp_file(".edn", '{:ssl-context\n #pg/ssl-context {}}')
      assert.equal(path .. ": line 2, column 2: reader for #pg/ssl-context failed: "
        .. "pg.ssl is not built", load_error(path).message)
    end)
  end)
end)
