-- Specs for channel binding: SCRAM-SHA-256-PLUS with tls-server-end-point
-- against the real test server (scramuser has a hostssl scram-sha-256
-- line, so the server offers PLUS over TLS), the channel_binding option,
-- and what "require" refuses: methods without channel binding and
-- connections without TLS.

local pg = require "pg"
local H = require "support.helper"
local hostile = require "support.hostile"

-- A TLS login as user, verified against the test CA, with overrides.
local function tls_login(user, overrides)
  local config = H.config { user = user, password = H.passwords[user],
                            ssl_context = { ca_cert_file = H.certs "ca.crt" } }
  if user == "certuser" then config.ssl_context = H.tls_files "certuser" end
  for k, v in pairs(overrides or {}) do config[k] = v end
  return config
end

local refused = H.refused

describe("channel binding", function()
  it("is used by default for SCRAM over TLS", function()
    local conn <close> = H.connect(tls_login "scramuser")
    assert.is_true(conn:tls_info().channel_binding)
  end)

  it("works with channel_binding = require", function()
    local conn <close> = H.connect(tls_login("scramuser", { channel_binding = "require" }))
    assert.is_true(conn:tls_info().channel_binding)
    assert.are.equal("scramuser", H.value(conn, "select current_user"))
  end)

  it("works over TLS 1.2 as over TLS 1.3", function()
    local conn <close> = H.connect(tls_login("scramuser", { channel_binding = "require",
                                                            ssl_max_protocol = "TLSv1.2" }))
    assert.are.equal("TLSv1.2", conn:tls_info().version)
    assert.is_true(conn:tls_info().channel_binding)
  end)

  it("works in ssl_mode require, without verification", function()
    local conn <close> = H.connect(H.config { user = "scramuser", password = "scram-pass",
                                              ssl_mode = "require", channel_binding = "require" })
    assert.is_true(conn:tls_info().channel_binding)
  end)

  it("is not used with channel_binding = disable", function()
    local conn <close> = H.connect(tls_login("scramuser", { channel_binding = "disable" }))
    assert.is_false(conn:tls_info().channel_binding)
  end)

  it("is not claimed for a client certificate login", function()
    local conn <close> = H.connect(tls_login "certuser")
    assert.is_false(conn:tls_info().channel_binding)
  end)

  it("still fails on a wrong password", function()
    local err = refused(tls_login("scramuser", { password = "wrong",
                                                  channel_binding = "require" }))
    assert.are.equal("auth", err.kind)
    assert.are.equal("28P01", err.code)
  end)

  it("is not needed for SCRAM without TLS by default", function()
    local conn <close> = H.connect(H.plain_config { user = "scramuser",
                                                    password = "scram-pass" })
    assert.is_nil(conn:tls_info())
  end)
end)

describe("channel_binding = require", function()
  for _, case in ipairs {
    { "certuser", "certificate" },
    { "trustuser", "trust" },
    { "md5user", "MD5" },
    { "pwuser", "cleartext" },
  } do
    local user, method = case[1], case[2]
    it("refuses " .. user .. ", whom the server authenticates by " .. method, function()
      local err = refused(tls_login(user, { channel_binding = "require" }))
      assert.are.equal("auth", err.kind)
      assert.matches("channel_binding", err.message, 1, true)
      assert.matches(method, err.message, 1, true)
    end)
  end

  it("refuses plain SCRAM over a connection without TLS", function()
    local err = refused(H.plain_config { user = "scramuser", password = "scram-pass",
                                         channel_binding = "require" })
    assert.are.equal("auth", err.kind)
    assert.matches("does not use TLS", err.message, 1, true)
  end)

  it("sends nothing without TLS, not even the StartupMessage", function()
    local transport = H.recording_transport(H.tcp(H.env.plain_port))
    refused(H.plain_config { user = "scramuser", password = "scram-pass",
                             channel_binding = "require", socket = transport })
    assert.are.equal("", transport:sent_bytes())
  end)

  it("refuses the plain fallback of ssl_mode prefer", function()
    local err = refused(H.plain_config { user = "scramuser", password = "scram-pass",
                                         ssl_mode = "prefer", channel_binding = "require" })
    assert.are.equal("auth", err.kind)
  end)

  it("leaves the server usable for the next login", function()
    refused(tls_login("trustuser", { channel_binding = "require" }))
    local conn <close> = H.connect(tls_login "trustuser")
    assert.are.equal(1, H.value(conn, "select 1"))
  end)
end)

describe("SCRAM-SHA-256-PLUS offered without TLS", function()
  -- The hostile server reads the StartupMessage and offers PLUS only.
  local function try(channel_binding)
    local srv = hostile.start "plain-scram-plus"
    local conn, err = pg.connect { host = "127.0.0.1", port = srv.port, user = "u",
                                   database = "d", password = "secret", connect_timeout = 2,
                                   channel_binding = channel_binding }
    local received = srv.received()
    srv.stop()
    if conn then conn:close() end
    return conn, err, received
  end

  for _, mode in ipairs { "prefer", "disable" } do
    it("is refused with channel_binding = " .. mode, function()
      local conn, err = try(mode)
      assert.is_nil(conn)
      assert.are.equal("auth", err.kind)
      assert.matches("SCRAM-SHA-256-PLUS", err.message, 1, true)
    end)
  end

  it("gets no SASL response", function()
    local _, _, received = try("prefer")
    local len = string.unpack(">I4", received)
    local rest = received:sub(len + 1)
    assert.is_true(rest == "" or rest:sub(1, 1) == "X", "sent: " .. rest:sub(1, 1))
  end)
end)

-- The test server presents, for the same key, certificates signed with
-- other digests, set with ALTER SYSTEM and a reload.  tls-server-end-point
-- hashes the certificate with its signature's hash (RFC 5929); the server
-- computes the same, so a login that requires channel binding succeeds
-- only when both agree.  (The server's OpenSSL refuses to load a SHA-1
-- signed certificate, so the rule that SHA-1 hashes as SHA-256 is not
-- tried here.)
describe("channel binding with server certificates signed with", function()
  local admin

  -- Makes the server present file (in its data directory) and waits
  -- until a new TLS connection sees the certificate named by cn.
  local function present(file, cn)
    assert(admin:query("alter system set ssl_cert_file = '" .. file .. "'"))
    assert(admin:query("select pg_reload_conf()"))
    local subject
    for _ = 1, 50 do
      local conn = pg.connect(H.config { user = "trustuser", ssl_mode = "require" })
      subject = conn and conn:tls_info().peer_subject
      if conn then conn:close() end
      if subject and subject:find(cn, 1, true) then return true end
      require("socket").sleep(0.1)
    end
    return false, subject
  end

  setup(function()
    admin = H.connect(H.config { user = "postgres" })
  end)

  teardown(function()
    assert(present("server.crt", "CN=localhost"))
    admin:close()
  end)

  for _, digest in ipairs { "sha384", "sha512" } do
    it(digest .. " authenticate with channel_binding = require", function()
      local ok, seen = present("server-" .. digest .. ".crt", digest .. " server")
      assert(ok, "the server did not present its " .. digest .. " certificate, but "
               .. tostring(seen))
      local conn <close> = H.connect(tls_login("scramuser", { channel_binding = "require" }))
      assert.is_true(conn:tls_info().channel_binding)
      assert.matches(digest .. " server", conn:tls_info().peer_subject, 1, true)
      assert.are.equal("scramuser", H.value(conn, "select current_user"))
    end)
  end
end)
