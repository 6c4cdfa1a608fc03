-- Configuration files used to connect with certificate authentication.
local pg = require "pg"
local H = require "support.helper"

local tmpdir

local function write(name, text, mode)
  return H.write_file(tmpdir, name, text, mode)
end

local function edn_config(extra)
  return string.format([[
;; certificate authentication, the PG project's way
{:host "%s" :port %d :user "certuser" :database "%s"
 :ssl? true
 :ssl-context #pg/ssl-context {:key-file "%s" :cert-file "%s" :ca-cert-file "%s"}
 %s}]], H.env.host, H.env.port, H.env.db, H.certs("certuser.key"), H.certs("certuser.crt"),
    H.certs("ca.crt"), extra or "")
end

local function current_user(conn)
  local res = assert(conn:query("select current_user as u"))
  return res[1].u
end

describe("configuration files", function()
  setup(function() tmpdir = H.tmpdir() end)
  teardown(function() H.rmdir(tmpdir) end)

  it("connects with an EDN map read with the #pg/ssl-context reader", function()
    local path = write("db.edn", edn_config())
    local cfg = assert(pg.edn.read_file(path, {
      readers = { ["pg/ssl-context"] = pg.ssl.context_reader },
    }))
    assert.equal("function", type(cfg["ssl-context"]))
    local conn <close> = assert(pg.connect(cfg))
    assert.equal("certuser", current_user(conn))
    assert.is_not_nil(conn:tls_info())
  end)

  it("connects with an EDN file loaded by pg.config.load", function()
    local conn <close> = assert(pg.connect(assert(pg.config.load(write("c.edn", edn_config())))))
    assert.equal("certuser", current_user(conn))
  end)

  it("connects with a Lua config file using ssl_context{...}", function()
    local path = write("db.lua", string.format([[
return {
  host = %q, port = %d, user = "certuser", database = %q,
  ssl = true,
  ssl_context = ssl_context { key_file = %q, cert_file = %q, ca_cert_file = %q },
}]], H.env.host, H.env.port, H.env.db, H.certs("certuser.key"), H.certs("certuser.crt"),
      H.certs("ca.crt")))
    local conn <close> = assert(pg.connect(assert(pg.config.load(path))))
    assert.equal("certuser", current_user(conn))
  end)

  it("reports a misspelt key of an EDN config as a config error", function()
    local cfg = assert(pg.config.load(write("typo.edn", edn_config(":hots \"x\""))))
    local conn, err = pg.connect(cfg)
    assert.is_nil(conn)
    assert.equal("config", err.kind)
    assert.matches("hots", err.message)
  end)

  it("reports a missing key file named in an EDN config at connect time", function()
    local text = edn_config():gsub("certuser%.key", "absent.key")
    local conn, err = pg.connect(assert(pg.config.load(write("missing.edn", text))))
    assert.is_nil(conn)
    assert.equal("tls", err.kind)
    assert.matches("absent.key", err.message, 1, true)
  end)

  it("ships an example EDN config that reads as a connection table", function()
    local cfg = assert(pg.config.load("examples/db.edn"))
    assert.is_true(cfg["ssl?"])
    assert.equal("function", type(cfg["ssl-context"]))
  end)
end)
