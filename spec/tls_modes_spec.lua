-- Specs for ssl_mode and the TLS options of pg.connect, against the real
-- test servers: which modes connect to the server with TLS and to the
-- one without, where "allow" and "prefer" fall back (only where libpq
-- would), what each mode verifies, and the configuration errors.

local pg = require "pg"
local H = require "support.helper"

local MODES = { "disable", "allow", "prefer", "require", "verify-ca", "verify-full" }

-- The SSLRequest message: length 8, then the request code 80877103.
local SSL_REQUEST = string.pack(">i4i4", 8, 80877103)

-- A context map that trusts the test CA.
local function ca_map()
  return { ca_cert_file = H.certs "ca.crt" }
end

-- Returns a new table: base with overrides on top.
local function with(base, overrides)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(overrides or {}) do t[k] = v end
  return t
end

-- Connects with config.  Returns "tls" or "plain" (what the server says
-- of the session), or nil and the error.
local function outcome(config)
  local conn, err = pg.connect(config)
  if not conn then return nil, err end
  local ssl = H.value(conn, "select ssl from pg_stat_ssl where pid = pg_backend_pid()")
  local tls_info = conn:tls_info()
  conn:close()
  assert(ssl == (tls_info ~= nil), "the client and the server disagree about TLS")
  return ssl and "tls" or "plain"
end

local refused = H.refused

-- What each mode gives; "fail:<kind>" for a failure of that kind.
local MATRIX = {
  {
    what = "trustuser on the server with TLS",
    config = function(mode) return H.config { user = "trustuser", ssl_mode = mode,
                                               ssl_context = ca_map() } end,
    expect = { disable = "plain", allow = "plain", prefer = "tls", require = "tls",
               ["verify-ca"] = "tls", ["verify-full"] = "tls" },
  },
  {
    what = "certuser (hostssl only) on the server with TLS",
    config = function(mode) return H.config { user = "certuser", ssl_mode = mode,
                                               ssl_context = H.tls_files "certuser" } end,
    expect = { disable = "fail:auth", allow = "tls", prefer = "tls", require = "tls",
               ["verify-ca"] = "tls", ["verify-full"] = "tls" },
  },
  {
    what = "trustuser on the server without TLS",
    config = function(mode) return H.plain_config { user = "trustuser", ssl_mode = mode,
                                                     ssl_context = ca_map() } end,
    expect = { disable = "plain", allow = "plain", prefer = "plain", require = "fail:tls",
               ["verify-ca"] = "fail:tls", ["verify-full"] = "fail:tls" },
  },
  {
    what = "scramuser on the server without TLS",
    config = function(mode) return H.plain_config { user = "scramuser", ssl_mode = mode,
                                                     password = "scram-pass" } end,
    expect = { disable = "plain", allow = "plain", prefer = "plain", require = "fail:tls",
               ["verify-ca"] = "fail:tls", ["verify-full"] = "fail:tls" },
  },
}

describe("ssl_mode", function()
  for _, case in ipairs(MATRIX) do
    describe("for " .. case.what, function()
      for _, mode in ipairs(MODES) do
        local want = case.expect[mode]
        it((want:match("^fail") and "fails with " .. want:sub(6) .. " in " or
            "connects with " .. want .. " in ") .. mode, function()
          local got, err = outcome(case.config(mode))
          if want:match("^fail:") then
            assert.is_nil(got, "connected with " .. tostring(got))
            assert.are.equal(want:sub(6), err.kind, tostring(err))
          else
            assert.are.equal(want, got, tostring(err))
          end
        end)
      end
    end)
  end
end)

describe("the default mode", function()
  it("is verify-full with ssl = true", function()
    local err = refused(H.config { user = "trustuser", ssl = true, ssl_context = ca_map(),
                                   host = "wrong.example.test", hostaddr = "127.0.0.1" })
    assert.are.equal("tls", err.kind)
    assert.matches("does not match host name 'wrong.example.test'", err.message, 1, true)
  end)

  it("is verify-full with an ssl_context and no ssl", function()
    local err = refused(H.config { user = "trustuser", ssl_context = ca_map(),
                                   host = "wrong.example.test", hostaddr = "127.0.0.1" })
    assert.matches("does not match host name", err.message, 1, true)
  end)

  it("is verify-full with ssl = true and no context, against the system store", function()
    local err = refused(H.config { user = "trustuser", ssl = true })
    assert.are.equal("tls", err.kind)
    assert.matches("verification failed", err.message, 1, true)
  end)

  it("is no TLS without ssl, ssl_context or ssl_mode", function()
    assert.are.equal("plain", outcome(H.config { user = "trustuser" }))
  end)
end)

describe("what each mode verifies", function()
  local wrong_host = { host = "wrong.example.test", hostaddr = "127.0.0.1" }

  it("require without a CA accepts a certificate no trusted CA signed", function()
    assert.are.equal("tls", outcome(H.config { user = "trustuser", ssl_mode = "require" }))
  end)

  it("require with a CA verifies the chain, as libpq does", function()
    local err = refused(H.config { user = "trustuser", ssl_mode = "require",
                                   ssl_context = { ca_cert_file = H.certs "other-ca.crt" } })
    assert.are.equal("tls", err.kind)
    assert.matches("verification failed", err.message, 1, true)
  end)

  it("require does not check the host name", function()
    assert.are.equal("tls", outcome(H.config(with({ user = "trustuser", ssl_mode = "require",
                                                    ssl_context = ca_map() }, wrong_host))))
  end)

  it("verify-ca checks the chain against the system store when no CA is given", function()
    local err = refused(H.config { user = "trustuser", ssl_mode = "verify-ca" })
    assert.matches("verification failed", err.message, 1, true)
  end)

  it("verify-ca does not check the host name", function()
    assert.are.equal("tls", outcome(H.config(with({ user = "trustuser", ssl_mode = "verify-ca",
                                                    ssl_context = ca_map() }, wrong_host))))
  end)

  it("verify-ca rejects a chain from another CA", function()
    local err = refused(H.config { user = "trustuser", ssl_mode = "verify-ca",
                                   ssl_context = { ca_cert_file = H.certs "other-ca.crt" } })
    assert.matches("verification failed", err.message, 1, true)
  end)

  it("verify-full checks the host name", function()
    local err = refused(H.config(with({ user = "trustuser", ssl_mode = "verify-full",
                                        ssl_context = ca_map() }, wrong_host)))
    assert.matches("does not match host name", err.message, 1, true)
  end)

  it("verify-full checks hostaddr when no host is given", function()
    assert.are.equal("tls", outcome({ hostaddr = "127.0.0.1", port = H.env.port,
                                      database = H.env.db, user = "trustuser",
                                      ssl_mode = "verify-full", ssl_context = ca_map() }))
  end)
end)

describe("fallbacks", function()
  it("prefer goes on in plain text on the same connection after N", function()
    local transport = H.recording_transport(H.tcp(H.env.plain_port))
    local conn = assert(pg.connect(H.plain_config { user = "trustuser", ssl_mode = "prefer",
                                                    socket = transport }))
    assert.is_nil(conn:tls_info())
    conn:close()
    local sent = transport:sent_bytes()
    assert.are.equal(SSL_REQUEST, sent:sub(1, 8))
    assert.are.equal(string.pack(">i4", 0x30000), sent:sub(13, 16))
  end)

  it("prefer does not fall back when the certificate fails verification", function()
    local err = refused(H.config { user = "trustuser", ssl_mode = "prefer",
                                   ssl_context = { ca_cert_file = H.certs "other-ca.crt" } })
    assert.are.equal("tls", err.kind)
  end)

  it("allow retries with TLS when the server rejects the plain login", function()
    local conn <close> = assert(pg.connect(H.config { user = "certuser", ssl_mode = "allow",
      ssl_context = H.tls_files "certuser" }))
    assert.is_not_nil(conn:tls_info())
    assert.are.equal("certuser", H.value(conn, "select current_user"))
  end)

  it("allow reports the plain login's error when the server has no TLS to retry with",
    function()
      local err = refused(H.plain_config { user = "scramuser", ssl_mode = "allow",
                                           password = "wrong" })
      assert.are.equal("auth", err.kind)
      assert.are.equal("28P01", err.code)
    end)

  it("allow reports the TLS login's error when the retry is rejected too", function()
    local err = refused(H.config { user = "certuser", ssl_mode = "allow",
                                   ssl_context = ca_map() })
    assert.are.equal("auth", err.kind)
    assert.matches("valid client certificate", err.message, 1, true)
  end)

  it("allow cannot retry over a transport the caller gave", function()
    local transport = H.recording_transport(H.tcp(H.env.port))
    local err = refused(H.config { user = "certuser", ssl_mode = "allow",
                                   ssl_context = H.tls_files "certuser", socket = transport })
    assert.are.equal("auth", err.kind)
    assert.are.equal("28000", err.code)
  end)

  it("require never falls back to plain text", function()
    local transport = H.recording_transport(H.tcp(H.env.plain_port))
    refused(H.plain_config { user = "trustuser", ssl_mode = "require", socket = transport })
    assert.are.equal(SSL_REQUEST, transport:sent_bytes())
  end)
end)

describe("protocol versions and priorities", function()
  it("uses TLS 1.3 with ssl_min_protocol TLSv1.3", function()
    local conn <close> = H.connect(H.config { user = "trustuser", ssl_context = ca_map(),
                                              ssl_min_protocol = "TLSv1.3" })
    assert.are.equal("TLSv1.3", conn:tls_info().version)
  end)

  it("uses TLS 1.2 with ssl_max_protocol TLSv1.2", function()
    local conn <close> = H.connect(H.config { user = "trustuser", ssl_context = ca_map(),
                                              ssl_max_protocol = "TLSv1.2" })
    assert.are.equal("TLSv1.2", conn:tls_info().version)
  end)

  it("passes ssl_priority to GnuTLS", function()
    local conn <close> = H.connect(H.config { user = "trustuser", ssl_context = ca_map(),
      ssl_priority = "NORMAL:-CIPHER-ALL:+AES-128-GCM" })
    assert.matches("AES_128_GCM", conn:tls_info().cipher, 1, true)
  end)

  it("sends ALPN postgresql, which PostgreSQL 15 does not select", function()
    local conn <close> = H.connect(H.config { user = "trustuser", ssl_context = ca_map() })
    assert.is_nil(conn:tls_info().alpn)
  end)
end)

describe("TLS configuration errors", function()
  local function config_error(overrides)
    local err = refused(H.config(with({ user = "trustuser" }, overrides)))
    assert.are.equal("config", err.kind, tostring(err))
    return err
  end

  it("list the valid values for an unknown ssl_mode", function()
    local err = config_error { ssl_mode = "verify" }
    for _, mode in ipairs(MODES) do
      assert.matches(mode, err.message, 1, true)
    end
  end)

  it("refuse ssl = false with ssl_mode require", function()
    assert.are.equal("ssl", config_error({ ssl = false, ssl_mode = "require" }).option)
  end)

  it("accept ssl = false with ssl_mode disable", function()
    assert.are.equal("plain", outcome(H.config { user = "trustuser", ssl = false,
                                                 ssl_mode = "disable" }))
  end)

  it("refuse direct TLS with ssl_mode prefer", function()
    local err = config_error { ssl_mode = "prefer", ssl_negotiation = "direct" }
    assert.are.equal("ssl_negotiation", err.option)
  end)

  it("refuse direct TLS without TLS", function()
    config_error { ssl_negotiation = "direct" }
  end)

  it("refuse an unknown ssl_negotiation", function()
    config_error { ssl_negotiation = "sideways" }
  end)

  it("refuse an unknown protocol version", function()
    local err = config_error { ssl = true, ssl_min_protocol = "TLSv2" }
    assert.matches("TLSv1.2", err.message, 1, true)
  end)

  it("refuse a minimum protocol above the maximum", function()
    config_error { ssl = true, ssl_min_protocol = "TLSv1.3", ssl_max_protocol = "TLSv1.2" }
  end)

  it("refuse a maximum below the default minimum TLSv1.2", function()
    config_error { ssl = true, ssl_max_protocol = "TLSv1.1" }
  end)

  it("give the position GnuTLS stopped at in a bad ssl_priority", function()
    local err = config_error { ssl_context = ca_map(), ssl_priority = "NORMAL:+NONSENSE" }
    assert.are.equal("ssl_priority", err.option)
    assert.matches("position 8", err.message, 1, true)
  end)

  it("refuse an unknown channel_binding", function()
    config_error { channel_binding = "maybe" }
  end)

  it("refuse an ssl_sni that is not a boolean", function()
    config_error { ssl_sni = "no" }
  end)
end)
