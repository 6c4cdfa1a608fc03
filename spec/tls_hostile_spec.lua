-- Specs for what the client shows a TLS server, seen from the hostile
-- test server (support/hostile_server.lua), which records every byte:
-- server name indication and ALPN in the ClientHello, direct TLS
-- (ssl_negotiation = "direct", which PostgreSQL 15 cannot play, so an
-- "openssl s_server" with and without ALPN stands in), and the limits
-- ssl_min_protocol and ssl_max_protocol put on the handshake.

local pg = require "pg"
local H = require "support.helper"
local hostile = require "support.hostile"

local SSL_REQUEST = string.pack(">i4i4", 8, 80877103)
local TLS_HANDSHAKE = 22
local EXT_SERVER_NAME, EXT_ALPN = 0, 16

-- Connects to the hostile server srv with TLS trusting the test CA, and
-- overrides.  Returns what pg.connect returned.
local function connect(srv, overrides)
  local config = { host = "127.0.0.1", port = srv.port, user = "u", database = "d",
                   connect_timeout = 3, ssl_context = { ca_cert_file = H.certs "ca.crt" } }
  for k, v in pairs(overrides or {}) do config[k] = v end
  local conn, err = pg.connect(config)
  if conn then conn:close() end
  return conn, err
end

-- Starts scenario with the test server's certificate, runs the
-- connection with overrides and returns its error and the bytes the
-- client sent.
local function play(scenario, overrides)
  local srv = hostile.start(scenario, H.certs "server.crt", H.certs "server.key")
  local ok, conn, err = pcall(connect, srv, overrides)
  local received = ok and srv.received() or ""
  srv.stop()
  assert(ok, conn)
  assert.is_nil(conn, "the connection was established")
  return err, received
end

-- Parses the ClientHello at the start of bytes (one TLS record).
-- Returns a table of its extensions (type -> data), or nil and why.
local function client_hello_extensions(bytes)
  if #bytes < 9 then return nil, "too short" end
  local content_type, _, record_len = string.unpack(">BI2I2", bytes)
  if content_type ~= TLS_HANDSHAKE then return nil, "not a handshake record" end
  local body = bytes:sub(6, 5 + record_len)
  if body:byte(1) ~= 1 then return nil, "not a ClientHello" end
  local i = 5 + 2 + 32                                      -- header, version, random
  i = i + 1 + body:byte(i)                                  -- session id
  i = i + 2 + string.unpack(">I2", body, i)                 -- cipher suites
  i = i + 1 + body:byte(i)                                  -- compression methods
  local ext_len = string.unpack(">I2", body, i)
  i = i + 2
  local stop, exts = i + ext_len, {}
  while i < stop do
    local ext_type, len = string.unpack(">I2I2", body, i)
    exts[ext_type] = body:sub(i + 4, i + 3 + len)
    i = i + 4 + len
  end
  return exts
end

-- The host name in a server_name extension.
local function sni_name(data)
  local _, name_type, len = string.unpack(">I2BI2", data)
  assert(name_type == 0, "not a host name")
  return data:sub(6, 5 + len)
end

-- The protocols of an ALPN extension, as a list.
local function alpn_protocols(data)
  local list, i = {}, 3
  while i <= #data do
    local len = data:byte(i)
    list[#list + 1] = data:sub(i + 1, i + len)
    i = i + 1 + len
  end
  return list
end

-- The extensions of the ClientHello after the SSLRequest.
local function extensions_after_ssl_request(received)
  assert.are.equal(SSL_REQUEST, received:sub(1, 8))
  local exts, why = client_hello_extensions(received:sub(9))
  assert.is_not_nil(exts, why)
  return exts
end

describe("the ClientHello", function()
  it("names a DNS host in server name indication", function()
    local _, received = play("tls-relay", { host = "localhost", hostaddr = "127.0.0.1" })
    local exts = extensions_after_ssl_request(received)
    assert.is_not_nil(exts[EXT_SERVER_NAME], "no server_name extension")
    assert.are.equal("localhost", sni_name(exts[EXT_SERVER_NAME]))
  end)

  it("sends no server name indication for an IP address", function()
    local _, received = play("tls-relay", { host = "127.0.0.1" })
    assert.is_nil(extensions_after_ssl_request(received)[EXT_SERVER_NAME])
  end)

  it("sends no server name indication with ssl_sni = false", function()
    local _, received = play("tls-relay", { host = "localhost", hostaddr = "127.0.0.1",
                                            ssl_sni = false })
    assert.is_nil(extensions_after_ssl_request(received)[EXT_SERVER_NAME])
  end)

  it("offers ALPN postgresql with the default ssl_negotiation", function()
    local _, received = play("tls-relay")
    local exts = extensions_after_ssl_request(received)
    assert.are.same({ "postgresql" }, alpn_protocols(exts[EXT_ALPN]))
  end)

  it("completes the handshake, verified, before sending the StartupMessage", function()
    local err = play("tls-relay", { host = "localhost", hostaddr = "127.0.0.1" })
    assert.are.equal("io", err.kind, tostring(err))
    assert.matches("during startup", err.message, 1, true)
  end)
end)

describe("direct TLS", function()
  it("starts with the ClientHello, without SSLRequest", function()
    local _, received = play("tls-direct", { ssl_negotiation = "direct" })
    assert.are.equal(TLS_HANDSHAKE, received:byte(1))
    assert.is_nil(received:find(SSL_REQUEST, 1, true))
  end)

  it("offers ALPN postgresql", function()
    local _, received = play("tls-direct", { ssl_negotiation = "direct" })
    local exts = assert(client_hello_extensions(received))
    assert.are.same({ "postgresql" }, alpn_protocols(exts[EXT_ALPN]))
  end)

  it("goes on to the startup when the server selects ALPN postgresql", function()
    local err = play("tls-direct", { ssl_negotiation = "direct" })
    assert.are.equal("io", err.kind, tostring(err))
    assert.matches("during startup", err.message, 1, true)
  end)

  it("fails when the server selects no ALPN protocol", function()
    local err = play("tls-direct-no-alpn", { ssl_negotiation = "direct" })
    assert.are.equal("tls", err.kind)
    assert.matches("ALPN", err.message, 1, true)
    assert.matches("postgresql", err.message, 1, true)
  end)

  it("still verifies the server certificate", function()
    local err = play("tls-direct", { ssl_negotiation = "direct",
                                     ssl_context = { ca_cert_file = H.certs "other-ca.crt" } })
    assert.are.equal("tls", err.kind)
    assert.matches("verification failed", err.message, 1, true)
  end)

  it("works in ssl_mode require", function()
    local err = play("tls-direct", { ssl_negotiation = "direct", ssl_mode = "require" })
    assert.are.equal("io", err.kind, tostring(err))
  end)

  it("against PostgreSQL 15, which closes, says direct TLS needs PostgreSQL 17", function()
    local conn, err = pg.connect(H.config { user = "trustuser", ssl_negotiation = "direct",
      ssl_context = { ca_cert_file = H.certs "ca.crt" }, connect_timeout = 3 })
    if conn then conn:close() end
    assert.is_nil(conn)
    assert.are.equal("io", err.kind)
    assert.matches("PostgreSQL 17", err.message, 1, true)
  end)
end)

describe("protocol version limits", function()
  it("refuse a server without TLS 1.3 when ssl_min_protocol is TLSv1.3", function()
    local err = play("tls-relay-tls12", { ssl_min_protocol = "TLSv1.3" })
    assert.are.equal("tls", err.kind)
    assert.matches("TLS handshake failed", err.message, 1, true)
  end)

  it("accept a server without TLS 1.3 by default", function()
    local err = play("tls-relay-tls12")
    assert.are.equal("io", err.kind, tostring(err))
  end)

  it("offer only TLS 1.2 with ssl_max_protocol TLSv1.2", function()
    local _, received = play("tls-relay", { ssl_max_protocol = "TLSv1.2" })
    local exts = extensions_after_ssl_request(received)
    -- supported_versions (43) is a TLS 1.3 extension.
    assert.is_nil(exts[43])
  end)

  it("reach a TLS 1.0 server only when ssl_min_protocol allows it", function()
    local refused = play("tls-relay-tls10")
    assert.are.equal("tls", refused.kind)
    local err = play("tls-relay-tls10", { ssl_min_protocol = "TLSv1" })
    assert.are_not.equal("tls", err.kind, tostring(err))
  end)

  it("do not let prefer fall back to plain text after a failed handshake", function()
    local err = play("tls-relay-tls10", { ssl_mode = "prefer" })
    assert.are.equal("tls", err.kind)
  end)
end)
