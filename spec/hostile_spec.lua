-- The client against servers that misbehave: answers to SSLRequest that
-- are wrong or dangerous, handshakes that stop half way, certificates
-- that must not be accepted, and startup messages whose framing is
-- broken.  A real PostgreSQL produces none of these, so the hostile test
-- server (support/hostile_server.lua) plays them, one connection each,
-- and records every byte the client sent.  Each case checks the error,
-- that it came quickly, and that nothing was sent in plain text that
-- should not have been.

local pg = require "pg"
local socket = require "socket"
local H = require "support.helper"
local hostile = require "support.hostile"

local gettime = socket.gettime
local string_pack, string_unpack = string.pack, string.unpack

-- The SSLRequest message: length 8, then the request code 80877103.
local SSL_REQUEST = string_pack(">i4i4", 8, 80877103)
-- The Terminate message, the one thing a client may still send after a
-- failed startup.
local TERMINATE = "X" .. string_pack(">i4", 4)
-- TLS record content types.
local TLS_HANDSHAKE, TLS_APPLICATION_DATA = 22, 23

-- Every attempt gets connect_timeout = CONNECT_TIMEOUT and must be over
-- within TIME_LIMIT seconds.
local CONNECT_TIMEOUT = 2
local TIME_LIMIT = 5

-- Returns bytes as hex, for failure messages.
local function hex(bytes)
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- Connects to the hostile server srv as user "u" to database "d".  With
-- ca_file (a name in the certificate directory) TLS is required and that
-- CA is trusted; without it the connection is plain.  Returns what
-- pg.connect returned and the seconds it took.
local function connect(srv, ca_file, password)
  local config = {
    host = "127.0.0.1",
    port = srv.port,
    user = "u",
    database = "d",
    password = password,
    connect_timeout = CONNECT_TIMEOUT,
  }
  if ca_file then
    config.ssl = true
    config.ssl_context = pg.ssl.context { ca_cert_file = H.certs(ca_file) }
  else
    config.ssl = false
  end
  local started = gettime()
  local conn, err = pg.connect(config)
  return conn, err, gettime() - started
end

-- Asserts that a connection attempt failed with an error of kind whose
-- message contains fragment, within TIME_LIMIT seconds.
local function assert_failed(kind, fragment, conn, err, seconds)
  if conn then conn:close() end
  assert.is_nil(conn, "the connection was established")
  assert.are.equal(kind, err.kind, "error: " .. tostring(err))
  assert.is_truthy(tostring(err):find(fragment, 1, true),
                   "'" .. fragment .. "' is not in the error: " .. tostring(err))
  assert.is_true(seconds < TIME_LIMIT, string.format("took %.1f s", seconds))
end

-- Splits bytes into TLS records.  Returns the list of their content
-- types, or nil and where the bytes stop looking like TLS.
local function tls_record_types(bytes)
  local types, i = {}, 1
  while i <= #bytes do
    if #bytes - i < 4 then
      return nil, "a partial TLS record header at byte " .. i
    end
    local content_type, major, _, len = string_unpack(">BBBI2", bytes, i)
    if content_type < 20 or content_type > 24 or major ~= 3 then
      return nil, string.format("no TLS record header at byte %d: %s", i,
                                hex(bytes:sub(i, i + 7)))
    end
    types[#types + 1] = content_type
    i = i + 5 + len
  end
  if i ~= #bytes + 1 then return nil, "a truncated TLS record" end
  return types
end

-- Asserts that the client sent an SSLRequest and after it nothing but
-- TLS records, the first a handshake record (the ClientHello), and no
-- StartupMessage in plain text.  Returns the record types.
local function assert_tls_only(bytes)
  assert.are.equal(hex(SSL_REQUEST), hex(bytes:sub(1, 8)))
  local types, why = tls_record_types(bytes:sub(9))
  assert.is_not_nil(types, why)
  assert.are.equal(TLS_HANDSHAKE, types[1], "no ClientHello after the SSLRequest")
  assert.is_nil(bytes:find("user\0", 1, true), "a StartupMessage was sent in plain text")
  return types
end

-- Asserts that the client sent its StartupMessage (protocol 3.0, user
-- "u") and after it nothing but, perhaps, Terminate: no password, no
-- SASL response.
local function assert_startup_only(bytes)
  assert.is_true(#bytes >= 8, "no StartupMessage: " .. hex(bytes))
  local len, version = string_unpack(">I4I4", bytes)
  assert.are.equal(0x30000, version)
  assert.is_truthy(bytes:sub(1, len):find("user\0u\0", 1, true))
  local rest = bytes:sub(len + 1)
  assert.is_true(rest == "" or rest == TERMINATE,
                 "sent after the StartupMessage: " .. hex(rest))
end

describe("a TLS connection to a hostile server", function()
  it("fails when the server answers N to SSLRequest", function()
    local srv = hostile.start "answer-N"
    finally(srv.stop)
    assert_failed("tls", "does not accept TLS", connect(srv, "ca.crt"))
    assert.are.equal(hex(SSL_REQUEST), hex(srv.received()))
  end)

  it("fails when the server answers SSLRequest with neither S nor N", function()
    local srv = hostile.start "answer-X"
    finally(srv.stop)
    assert_failed("protocol", "invalid answer to SSLRequest", connect(srv, "ca.crt"))
    assert.are.equal(hex(SSL_REQUEST), hex(srv.received()))
  end)

  it("fails before the handshake when plain text follows S (CVE-2021-23222)", function()
    local srv = hostile.start "S-then-bytes"
    finally(srv.stop)
    assert_failed("tls", "CVE-2021-23222", connect(srv, "ca.crt"))
    assert.are.equal(hex(SSL_REQUEST), hex(srv.received()))
  end)

  -- Connects to the S-then-bytes server over a LuaSocket connection,
  -- through the transport wrap(sock) makes, and checks the refusal.
  local function refused_over_transport(wrap)
    local socket = require "socket"
    local srv = hostile.start "S-then-bytes"
    finally(srv.stop)
    local sock = socket.tcp()
    sock:settimeout(CONNECT_TIMEOUT)
    assert(sock:connect("127.0.0.1", srv.port))
    local conn, err = pg.connect {
      host = "127.0.0.1", port = srv.port, user = "u", database = "d", ssl = true,
      ssl_context = pg.ssl.context { ca_cert_file = H.certs "ca.crt" }, socket = wrap(sock),
    }
    assert.is_nil(conn)
    assert.equal("tls", err.kind)
    assert.matches("CVE-2021-23222", err.message, 1, true)
    assert.is_nil(srv.received():find("user\0", 1, true))
  end

  it("refuses plain text after S over a caller's transport too (CVE-2021-23222)", function()
    refused_over_transport(function(sock) return sock end)
  end)

  it("refuses plain text after S over a transport read with receiveany", function()
    refused_over_transport(function(sock)
      -- What has arrived, all of it: the S and whatever came with it.
      return {
        send = function(_, data, i, j) return sock:send(data, i, j) end,
        receiveany = function(_, max)
          local first, err = sock:receive(1)
          if not first then return nil, err end
          require("socket").sleep(0.2)
          sock:settimeout(0)
          local more, _, partial = sock:receive(max - 1)
          sock:settimeout(CONNECT_TIMEOUT)
          return first .. (more or partial or "")
        end,
        close = function() sock:close() end,
      }
    end)
  end)

  it("fails when the server closes the connection during the handshake", function()
    local srv = hostile.start "close-after-S"
    finally(srv.stop)
    assert_failed("io", "during the TLS handshake", connect(srv, "ca.crt"))
    assert_tls_only(srv.received())
  end)

  it("gives up at connect_timeout when the server stalls after S", function()
    local srv = hostile.start "stall-after-S"
    finally(srv.stop)
    local conn, err, seconds = connect(srv, "ca.crt")
    assert_failed("io", "timeout", conn, err, seconds)
    assert.is_true(seconds > CONNECT_TIMEOUT - 0.25,
                   string.format("gave up after %.2f s", seconds))
    assert_tls_only(srv.received())
  end)

  it("completes the handshake with a certificate from the test CA for 127.0.0.1", function()
    local srv = hostile.start("tls-relay", H.certs "server.crt", H.certs "server.key")
    finally(srv.stop)
    local conn, err, seconds = connect(srv, "ca.crt")
    if conn then conn:close() end
    assert.is_nil(conn)
    -- The relay ends after the handshake; what fails is the startup.
    assert.is_true(err.kind == "io" or err.kind == "protocol", "error: " .. tostring(err))
    assert.is_true(seconds < TIME_LIMIT, string.format("took %.1f s", seconds))
    local types = assert_tls_only(srv.received())
    assert.are.equal(TLS_APPLICATION_DATA, types[#types], "no encrypted data after the handshake")
  end)

  it("rejects a server certificate signed by a CA it does not trust", function()
    local srv = hostile.start("tls-relay", H.certs "server.crt", H.certs "server.key")
    finally(srv.stop)
    assert_failed("tls", "verification failed", connect(srv, "other-ca.crt"))
    assert_tls_only(srv.received())
  end)

  it("rejects an expired server certificate", function()
    local srv = hostile.start("tls-relay", H.certs "expired-server.crt",
                              H.certs "expired-server.key")
    finally(srv.stop)
    assert_failed("tls", "expired", connect(srv, "ca.crt"))
    assert_tls_only(srv.received())
  end)

  it("rejects a server certificate that is not yet valid", function()
    local srv = hostile.start("tls-relay", H.certs "not-yet-valid-server.crt",
                              H.certs "not-yet-valid-server.key")
    finally(srv.stop)
    assert_failed("tls", "not yet valid", connect(srv, "ca.crt"))
    assert_tls_only(srv.received())
  end)

  it("rejects a server certificate for another host", function()
    local srv = hostile.start("tls-relay", H.certs "other-host-server.crt",
                              H.certs "other-host-server.key")
    finally(srv.stop)
    assert_failed("tls", "does not match host name", connect(srv, "ca.crt"))
    assert_tls_only(srv.received())
  end)

  it("rejects a server certificate revoked by the CA's revocation list", function()
    local made, ctx = pcall(pg.ssl.context, {
      ca_cert_file = H.certs "ca.crt",
      crl_file = H.certs "ca.crl",
    })
    if not made and type(ctx) == "table" and ctx.kind == "config"
        and ctx.option == "crl_file" then
      pending("needs crl_file support in pg.ssl.context")
    end
    assert.is_true(made, tostring(ctx))

    local srv = hostile.start("tls-relay", H.certs "revoked-server.crt",
                              H.certs "revoked-server.key")
    finally(srv.stop)
    local started = gettime()
    local conn, err = pg.connect {
      host = "127.0.0.1", port = srv.port, user = "u", database = "d",
      ssl = true, ssl_context = ctx, connect_timeout = CONNECT_TIMEOUT,
    }
    assert_failed("tls", "revoked", conn, err, gettime() - started)
    assert_tls_only(srv.received())
  end)

  it("rejects a server that speaks only TLS 1.0 and 1.1", function()
    local srv = hostile.start("tls-relay-tls10", H.certs "server.crt", H.certs "server.key")
    finally(srv.stop)
    assert_failed("tls", "TLS handshake failed", connect(srv, "ca.crt"))
    assert_tls_only(srv.received())
  end)
end)

describe("a plain connection to a hostile server", function()
  it("refuses SCRAM-SHA-256-PLUS, which needs TLS, and sends no SASL response", function()
    local srv = hostile.start "plain-scram-plus"
    finally(srv.stop)
    assert_failed("auth", "SCRAM-SHA-256-PLUS", connect(srv, nil, "secret"))
    assert_startup_only(srv.received())
  end)

  it("fails at once on a message that claims to be 2 GB long", function()
    local srv = hostile.start "startup-garbage"
    finally(srv.stop)
    assert_failed("protocol", "over the limit", connect(srv))
    assert_startup_only(srv.received())
  end)

  it("fails on a message length too short to count itself", function()
    local srv = hostile.start "startup-short-length"
    finally(srv.stop)
    assert_failed("protocol", "invalid length 2", connect(srv))
    assert_startup_only(srv.received())
  end)

  it("fails when the server closes in the middle of a message", function()
    local srv = hostile.start "startup-truncated-then-close"
    finally(srv.stop)
    assert_failed("io", "closed the connection", connect(srv))
    assert_startup_only(srv.received())
  end)
end)
