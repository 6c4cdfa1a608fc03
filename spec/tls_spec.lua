-- Specs for TLS: what a verified connection reports, the server
-- certificates and host names it refuses, its refusal to fall back to
-- plain text, and the contexts pg.ssl builds from certificate files (and
-- the errors it gives for files it cannot use).

local pg = require "pg"
local H = require "support.helper"

-- The SSLRequest message: length 8, then the request code 80877103.
local SSL_REQUEST = string.pack(">i4i4", 8, 80877103)

-- A login on the TLS server as scramuser that requires TLS and trusts
-- the CA in ca_file, with overrides applied.
local function tls_login(ca_file, overrides)
  local config = H.tls_config("scramuser", { ssl_context = { ca_cert_file = ca_file } })
  for k, v in pairs(overrides or {}) do
    config[k] = v
  end
  return config
end

-- Returns the error pg.ssl.context raises for map; raises if it builds a
-- context instead.
local function context_error(map)
  local ok, err = pcall(pg.ssl.context, map)
  if ok then
    error("pg.ssl.context built a context", 2)
  end
  return err
end

local refused = H.refused

-- Runs a shell command; raises if it fails.
local function run(command)
  local ok = os.execute(command .. " >/dev/null 2>&1")
  assert(ok, "command failed: " .. command)
end

local quote = H.shell_quote

describe("a TLS connection", function()
  local conn

  lazy_setup(function()
    conn = H.connect(H.tls_config("scramuser", {
      ssl_context = pg.ssl.context { ca_cert_file = H.certs "ca.crt" },
    }))
  end)

  lazy_teardown(function()
    if conn then
      conn:close()
    end
  end)

  it("answers queries", function()
    assert.are.equal(1, H.value(conn, "select 1"))
  end)

  it("uses TLS 1.2 or 1.3", function()
    assert.matches("^TLSv1%.[23]$", conn:tls_info().version)
  end)

  it("names its cipher", function()
    local cipher = conn:tls_info().cipher
    assert.are.equal("string", type(cipher))
    assert.is_true(#cipher > 0)
  end)

  it("names the subject of the server's certificate", function()
    assert.matches("CN=localhost", conn:tls_info().peer_subject, 1, true)
  end)

  it("names the issuer of the server's certificate", function()
    assert.matches("CN=pgtest CA", conn:tls_info().peer_issuer, 1, true)
  end)

  it("reports that SCRAM over TLS was channel-bound", function()
    assert.is_true(conn:tls_info().channel_binding)
  end)

  it("is seen as TLS by the server", function()
    assert.is_true(H.value(conn, "select ssl from pg_stat_ssl where pid = pg_backend_pid()"))
  end)

  it("says TLS in tostring", function()
    assert.matches("TLS", tostring(conn), 1, true)
  end)

  it("carries a 10 MB value intact", function()
    local value = H.value(conn, "select repeat('z', 10000000)")
    assert.is_true(value == string.rep("z", 10000000))
  end)

  it("reports a server error and stays usable", function()
    local _, err = conn:query "select 1/0"
    assert.are.equal("22012", err.code)
    assert.are.equal(1, H.value(conn, "select 1"))
  end)
end)

describe("a plain connection", function()
  it("has no tls_info", function()
    local conn <close> = H.connect(H.config { user = "trustuser" })
    assert.is_nil(conn:tls_info())
  end)
end)

describe("TLS verification", function()
  it("accepts a context given as a table of options", function()
    local conn <close> = H.connect(tls_login(H.certs "ca.crt"))
    assert.is_not_nil(conn:tls_info())
  end)

  it("rejects the test server's certificate with ssl = true and the system trust store",
    function()
      local err = refused(H.config { user = "scramuser", password = "scram-pass", ssl = true })
      assert.are.equal("tls", err.kind)
    end)

  it("says why the system trust store rejected the certificate", function()
    local err = refused(H.config { user = "scramuser", password = "scram-pass", ssl = true })
    assert.matches("verification", err.message, 1, true)
  end)

  it("rejects a server certificate signed by another CA", function()
    local err = refused(tls_login(H.certs "other-ca.crt"))
    assert.are.equal("tls", err.kind)
    assert.matches("verification", err.message, 1, true)
  end)

  it("rejects a host name the certificate does not name", function()
    local err = refused(tls_login(H.certs "ca.crt",
      { host = "wrong.example.test", hostaddr = "127.0.0.1" }))
    assert.are.equal("tls", err.kind)
  end)

  it("names the host it expected in a host name mismatch", function()
    local err = refused(tls_login(H.certs "ca.crt",
      { host = "wrong.example.test", hostaddr = "127.0.0.1" }))
    assert.matches("wrong.example.test", err.message, 1, true)
  end)

  it("names the names the certificate holds in a host name mismatch", function()
    local err = refused(tls_login(H.certs "ca.crt",
      { host = "wrong.example.test", hostaddr = "127.0.0.1" }))
    assert.matches("localhost", err.message, 1, true)
    assert.matches("127.0.0.1", err.message, 1, true)
  end)

  it("accepts the host name localhost", function()
    local conn <close> = H.connect(tls_login(H.certs "ca.crt", { host = "localhost" }))
    assert.is_not_nil(conn:tls_info())
  end)

  it("accepts the address 127.0.0.1", function()
    local conn <close> = H.connect(tls_login(H.certs "ca.crt", { host = "127.0.0.1" }))
    assert.is_not_nil(conn:tls_info())
  end)

  it("checks the host name, not hostaddr", function()
    local conn <close> = H.connect(tls_login(H.certs "ca.crt",
      { host = "localhost", hostaddr = "127.0.0.1" }))
    assert.is_not_nil(conn:tls_info())
  end)

  it("refuses ssl = false together with an ssl_context", function()
    local err = refused(tls_login(H.certs "ca.crt", { ssl = false }))
    assert.are.equal("config", err.kind)
  end)
end)

describe("TLS against a server without TLS", function()
  local function plain_tls(overrides)
    local config = H.plain_config { user = "trustuser", ssl = true,
      ssl_context = { ca_cert_file = H.certs "ca.crt" } }
    for k, v in pairs(overrides or {}) do
      config[k] = v
    end
    return config
  end

  it("fails with kind tls", function()
    local err = refused(plain_tls())
    assert.are.equal("tls", err.kind)
  end)

  it("says the server does not accept TLS", function()
    local err = refused(plain_tls())
    assert.matches("does not accept TLS", err.message, 1, true)
  end)

  it("sends the SSLRequest and nothing else", function()
    local transport = H.recording_transport(H.tcp(H.env.plain_port))
    refused(plain_tls { socket = transport })
    assert.are.equal(SSL_REQUEST, transport:sent_bytes())
  end)

  it("closes the transport after the refusal", function()
    local transport = H.recording_transport(H.tcp(H.env.plain_port))
    refused(plain_tls { socket = transport })
    assert.is_true(transport.closed)
  end)
end)

describe("TLS over a Unix socket, which the server does not offer", function()
  it("fails with kind tls rather than going on in plain text", function()
    local err = refused(H.config { user = "trustuser", host = H.env.socket_dir, ssl = true,
      ssl_context = { ca_cert_file = H.certs "ca.crt" } })
    assert.are.equal("tls", err.kind)
  end)
end)

describe("pg.ssl.context", function()
  local missing = "/nonexistent/pg-client-spec/missing.pem"

  it("builds a context from the test CA", function()
    assert.is_true(pg.ssl.is_context(pg.ssl.context { ca_cert_file = H.certs "ca.crt" }))
  end)

  it("builds a context with a client certificate", function()
    assert.is_true(pg.ssl.is_context(pg.ssl.context(H.tls_files "certuser")))
  end)

  it("accepts keys spelled key-file, cert-file and ca-cert-file", function()
    local ctx = pg.ssl.context {
      ["key-file"] = H.certs "certuser.key",
      ["cert-file"] = H.certs "certuser.crt",
      ["ca-cert-file"] = H.certs "ca.crt",
    }
    assert.matches("with client certificate", tostring(ctx), 1, true)
  end)

  it("mentions pg.ssl.context in tostring", function()
    local ctx = pg.ssl.context { ca_cert_file = H.certs "ca.crt" }
    assert.matches("pg.ssl.context", tostring(ctx), 1, true)
  end)

  it("is not fooled by a table into calling it a context", function()
    assert.is_false(pg.ssl.is_context { ca_cert_file = H.certs "ca.crt" })
  end)

  it("raises a tls error for a missing key file", function()
    local err = context_error { cert_file = H.certs "certuser.crt", key_file = missing }
    assert.are.equal("tls", err.kind)
  end)

  it("names a missing key file and says it does not exist", function()
    local err = context_error { cert_file = H.certs "certuser.crt", key_file = missing }
    assert.matches(missing, err.message, 1, true)
    assert.matches("No such file", err.message, 1, true)
  end)

  it("names a missing certificate file and says it does not exist", function()
    local err = context_error { cert_file = missing, key_file = H.certs "certuser.key" }
    assert.are.equal("tls", err.kind)
    assert.matches(missing, err.message, 1, true)
    assert.matches("No such file", err.message, 1, true)
  end)

  it("names a missing CA file and says it does not exist", function()
    local err = context_error { ca_cert_file = missing }
    assert.are.equal("tls", err.kind)
    assert.matches(missing, err.message, 1, true)
    assert.matches("No such file", err.message, 1, true)
  end)

  it("says a key that belongs to another certificate does not match", function()
    local err = context_error { cert_file = H.certs "certuser.crt",
      key_file = H.certs "certuser-mismatch.key" }
    assert.are.equal("tls", err.kind)
    assert.matches("does not match", err.message, 1, true)
  end)

  it("says a CA file without certificates holds none", function()
    local err = context_error { ca_cert_file = H.certs "ca.key" }
    assert.are.equal("tls", err.kind)
    assert.matches(H.certs "ca.key", err.message, 1, true)
  end)

  it("raises a config error for an unknown key", function()
    local err = context_error { ca_file = H.certs "ca.crt" }
    assert.are.equal("config", err.kind)
    assert.matches("ca_file", err.message, 1, true)
  end)

  it("raises a config error for key_file without cert_file", function()
    local err = context_error { key_file = H.certs "certuser.key" }
    assert.are.equal("config", err.kind)
  end)

  it("raises a config error for cert_file without key_file", function()
    local err = context_error { cert_file = H.certs "certuser.crt" }
    assert.are.equal("config", err.kind)
  end)

  it("raises a config error for a file name that is not a string", function()
    local err = context_error { ca_cert_file = 42 }
    assert.are.equal("config", err.kind)
  end)

  it("names a directory given as the certificate file", function()
    local err = context_error { cert_file = H.env.certs, key_file = H.certs "certuser.key" }
    assert.are.equal("tls", err.kind)
    assert.matches(H.env.certs, err.message, 1, true)
  end)

  it("says that a directory given as the certificate file is a directory", function()
    local err = context_error { cert_file = H.env.certs, key_file = H.certs "certuser.key" }
    assert.matches("[Dd]irectory", err.message)
  end)

  describe("with files made for the occasion", function()
    local dir

    lazy_setup(function()
      dir = H.env.dir .. "/tls-spec"
      run("mkdir -p " .. quote(dir))
      run("cp " .. quote(H.certs "certuser.crt") .. " " .. quote(dir .. "/unreadable.crt"))
      run("chmod 000 " .. quote(dir .. "/unreadable.crt"))
      run("openssl pkey -in " .. quote(H.certs "certuser.key")
        .. " -aes256 -passout pass:secret -out " .. quote(dir .. "/encrypted.key"))
    end)

    lazy_teardown(function()
      if dir then
        os.execute("rm -rf " .. quote(dir))
      end
    end)

    it("names an unreadable file and says it may not be read", function()
      local path = dir .. "/unreadable.crt"
      local f = io.open(path, "rb")
      if f then
        f:close()
        pending("this user reads files whatever their mode")
        return
      end
      local err = context_error { cert_file = path, key_file = H.certs "certuser.key" }
      assert.matches(path, err.message, 1, true)
      assert.matches("Permission denied", err.message, 1, true)
    end)

    it("opens an encrypted key with its key_password", function()
      local conn <close> = H.connect(H.config { user = "certuser", ssl_context = pg.ssl.context {
        cert_file = H.certs "certuser.crt", key_file = dir .. "/encrypted.key",
        key_password = "secret", ca_cert_file = H.certs "ca.crt",
      } })
      assert.are.equal("certuser", H.value(conn, "select current_user"))
    end)

    it("says an encrypted key needs a key_password", function()
      local err = context_error { cert_file = H.certs "certuser.crt",
        key_file = dir .. "/encrypted.key" }
      assert.are.equal("tls", err.kind)
      assert.matches("key_password", err.message, 1, true)
    end)

    it("says a wrong key_password did not decrypt the key", function()
      local err = context_error { cert_file = H.certs "certuser.crt",
        key_file = dir .. "/encrypted.key", key_password = "wrong" }
      assert.are.equal("tls", err.kind)
      assert.matches("decrypt", err.message, 1, true)
    end)
  end)
end)

describe("pg.ssl.context_reader", function()
  it("returns a function", function()
    assert.are.equal("function", type(pg.ssl.context_reader(H.tls_files "certuser")))
  end)

  it("builds a context when the function is called", function()
    local read = pg.ssl.context_reader(H.tls_files "certuser")
    assert.is_true(pg.ssl.is_context(read()))
  end)

  it("is called by pg.connect, whose login with the certificate succeeds", function()
    local conn <close> = H.connect(H.config { user = "certuser",
      ssl_context = pg.ssl.context_reader(H.tls_files "certuser") })
    assert.are.equal("certuser", H.value(conn, "select current_user"))
  end)

  it("checks the names of its keys at once", function()
    local ok, err = pcall(pg.ssl.context_reader, { certfile = H.certs "certuser.crt" })
    assert.is_false(ok)
    assert.are.equal("config", err.kind)
  end)

  it("makes pg.connect return nil, err for a missing file rather than raise", function()
    local read = pg.ssl.context_reader { ca_cert_file = "/nonexistent/pg-client-spec/ca.crt" }
    local ok, conn, err = pcall(pg.connect, H.config { user = "certuser", ssl_context = read })
    assert.is_true(ok)
    assert.is_nil(conn)
    assert.are.equal("tls", err.kind)
  end)

  it("makes pg.connect name a missing file", function()
    local path = "/nonexistent/pg-client-spec/ca.crt"
    local err = refused(H.config { user = "certuser",
      ssl_context = pg.ssl.context_reader { ca_cert_file = path } })
    assert.matches(path, err.message, 1, true)
  end)
end)

describe("an ssl_context function", function()
  it("that raises makes pg.connect return a config error", function()
    local err = refused(H.config { user = "certuser",
      ssl_context = function() error("no context today") end })
    assert.are.equal("config", err.kind)
  end)

  it("that returns something other than a context makes pg.connect return a config error",
    function()
      local err = refused(H.config { user = "certuser", ssl_context = function() return 42 end })
      assert.are.equal("config", err.kind)
    end)

  it("that returns nil and a message makes pg.connect return an error table", function()
    local err = refused(H.config { user = "certuser",
      ssl_context = function() return nil, "no context today" end })
    assert.are.equal("table", type(err))
  end)
end)
