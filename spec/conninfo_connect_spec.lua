-- Connection strings, PG* environment variables, .pgpass and service files,
-- against the real server.
local pg = require "pg"
local H = require "support.helper"

local tmpdir

local function write(name, text, mode)
  return H.write_file(tmpdir, name, text, mode)
end

local shell_quote = H.shell_quote

-- Runs a Lua chunk in a new process with the given environment variables
-- (and none of the PG* ones of this process); returns its output.
local function run_with_env(env, chunk)
  local parts = { "env" }
  for _, name in ipairs({ "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE",
                          "PGSERVICE", "PGSERVICEFILE", "PGPASSFILE", "PGAPPNAME",
                          "PGSSLMODE", "PGCONNECT_TIMEOUT", "PGOPTIONS" }) do
    parts[#parts + 1] = "-u " .. name
  end
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. shell_quote(v) end
  parts[#parts + 1] = "HOME=" .. shell_quote(tmpdir)
  parts[#parts + 1] = "lua5.4 -e " .. shell_quote(chunk) .. " 2>&1"
  local p = io.popen(table.concat(parts, " "))
  local out = p:read("a")
  p:close()
  return out
end

-- A chunk that connects with cfg (a Lua expression) and prints the current
-- user and application name, or the error.
local function connect_chunk(cfg)
  return [[
local pg = require "pg"
local conn, err = pg.connect(]] .. cfg .. [[)
if not conn then print("ERR " .. tostring(err.kind) .. " " .. tostring(err)) return end
local r = assert(conn:query("select current_user as u, current_setting('application_name') as a"))
print("OK " .. r[1].u .. " " .. r[1].a)
conn:close()]]
end

describe("connection strings and the libpq environment", function()
  setup(function() tmpdir = H.tmpdir() end)
  teardown(function() H.rmdir(tmpdir) end)

  it("connects with a postgresql:// URI", function()
    local uri = string.format("postgresql://scramuser:scram-pass@%s:%d/%s?application_name=uri",
                              H.env.host, H.env.port, H.env.db)
    local conn <close> = assert(pg.connect(uri))
    local r = assert(conn:query(
      "select current_user as u, current_setting('application_name') as a"))
    assert.equal("scramuser", r[1].u)
    assert.equal("uri", r[1].a)
  end)

  it("connects with a URI asking for verify-full and naming the CA", function()
    local uri = string.format(
      "postgresql://certuser@%s:%d/%s?sslmode=verify-full&sslrootcert=%s&sslcert=%s&sslkey=%s",
      "localhost", H.env.port, H.env.db, H.certs("ca.crt"), H.certs("certuser.crt"),
      H.certs("certuser.key"))
    local conn <close> = assert(pg.connect(uri))
    assert.is_not_nil(conn:tls_info())
    assert.equal("certuser", assert(conn:query("select current_user as u"))[1].u)
  end)

  it("connects with a key/value string with quoting", function()
    local kv = string.format("host=%s port=%d dbname='%s' user=pwuser password='pw-pass'",
                             H.env.host, H.env.port, H.env.db)
    local conn <close> = assert(pg.connect(kv))
    assert.equal("pwuser", assert(conn:query("select current_user as u"))[1].u)
  end)

  it("connects over the Unix socket named in a URI", function()
    local uri = string.format("postgresql://trustuser@%s:%d/%s",
                              H.env.socket_dir:gsub("/", "%%2F"), H.env.port, H.env.db)
    local conn <close> = assert(pg.connect(uri))
    assert.is_nil(conn:tls_info())
  end)

  it("reports an unknown sslmode as a config error naming option, value and choices", function()
    local conn, err = pg.connect("host=127.0.0.1 sslmode=verify-everything")
    assert.is_nil(conn)
    assert.equal("config", err.kind)
    assert.matches("sslmode", err.message)
    assert.matches("verify-everything", err.message, 1, true)
    assert.matches("verify-full", err.message, 1, true)
  end)

  it("reports a port that is not a number", function()
    local conn, err = pg.connect("postgresql://localhost:abc/db")
    assert.is_nil(conn)
    assert.equal("config", err.kind)
    assert.matches("port", err.message)
  end)

  it("rejects several hosts clearly", function()
    local conn, err = pg.connect("host=a,b")
    assert.is_nil(conn)
    assert.equal("config", err.kind)
    assert.matches("several hosts", err.message)
  end)

  it("fills what is not given from PG* variables", function()
    local out = run_with_env({
      PGHOST = H.env.host, PGPORT = H.env.port, PGUSER = "scramuser",
      PGPASSWORD = "scram-pass", PGDATABASE = H.env.db, PGAPPNAME = "from-env",
    }, connect_chunk("{}"))
    assert.equal("OK scramuser from-env\n", out)
  end)

  it("lets the given options beat the environment", function()
    local out = run_with_env({
      PGHOST = H.env.host, PGPORT = H.env.port, PGUSER = "scramuser",
      PGPASSWORD = "scram-pass", PGDATABASE = H.env.db, PGAPPNAME = "from-env",
    }, connect_chunk('{ user = "trustuser", application_name = "given" }'))
    assert.equal("OK trustuser given\n", out)
  end)

  it("reads no environment with env = false", function()
    local out = run_with_env({ PGPORT = "1", PGAPPNAME = "from-env" },
      connect_chunk(string.format('{ host = %q, port = %d, user = "trustuser", database = %q, '
                                  .. 'env = false }', H.env.host, H.env.port, H.env.db)))
    assert.equal("OK trustuser pg-client\n", out)
  end)

  it("takes the password from the .pgpass file", function()
    local pass = write("pgpass", string.format("# comment\n%s:%d:*:scramuser:scram-pass\n",
                                               H.env.host, H.env.port))
    local out = run_with_env({ PGPASSFILE = pass },
      connect_chunk(string.format('{ host = %q, port = %d, user = "scramuser", database = %q }',
                                  H.env.host, H.env.port, H.env.db)))
    assert.equal("OK scramuser pg-client\n", out)
  end)

  it("ignores a .pgpass readable by others, with a warning to on_notice", function()
    local pass = write("pgpass-open", string.format("*:*:*:scramuser:scram-pass\n"), "644")
    local out = run_with_env({ PGPASSFILE = pass }, [[
local pg = require "pg"
local warned
local conn, err = pg.connect{ host = "]] .. H.env.host .. [[", port = ]] .. H.env.port .. [[,
  user = "scramuser", database = "]] .. H.env.db .. [[",
  on_notice = function(n) warned = n.severity .. ": " .. n.message end }
print(conn and "connected" or err.kind)
print(warned)]])
    assert.matches("^auth\n", out)
    assert.matches("WARNING: .*pgpass%-open", out)
  end)

  it("reads a service from the service file", function()
    local services = write("services.conf", string.format(
      "[test]\nhost=%s\nport=%d\ndbname=%s\nuser=pwuser\npassword=pw-pass\n",
      H.env.host, H.env.port, H.env.db))
    local out = run_with_env({ PGSERVICEFILE = services }, connect_chunk('"service=test"'))
    assert.equal("OK pwuser pg-client\n", out)
  end)

  it("lets the environment beat the service file", function()
    local services = write("services2.conf", string.format(
      "[test]\nhost=%s\nport=1\ndbname=%s\nuser=pwuser\npassword=pw-pass\n",
      H.env.host, H.env.db))
    local out = run_with_env({ PGSERVICEFILE = services, PGPORT = H.env.port },
                             connect_chunk('{ service = "test" }'))
    assert.equal("OK pwuser pg-client\n", out)
  end)
end)
