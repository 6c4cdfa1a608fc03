-- Specs for what pg.ssl.context takes and how the real test server
-- answers: encrypted keys, PEM text in memory, private key permissions,
-- certificate files holding a chain, revocation lists, the system store
-- by name, and libpq's per-user files under ~/.postgresql for ssl = true
-- without a context (run in a child process with its own HOME).

local pg = require "pg"
local H = require "support.helper"

local quote = H.shell_quote

-- Runs a shell command quietly; raises if it fails.
local function sh(command)
  local pipe = assert(io.popen("(" .. command .. ") 2>&1", "r"))
  local output = pipe:read("a")
  local ok = pipe:close()
  assert(ok, "command failed: " .. command .. "\n" .. output)
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

local function write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- Returns the error pg.ssl.context raises for map.
local function context_error(map)
  local ok, err = pcall(pg.ssl.context, map)
  assert(not ok, "pg.ssl.context built a context")
  return err
end

local refused = H.refused

-- A login as certuser with the context map ctx.
local function certuser(ctx)
  return H.config { user = "certuser", ssl_context = ctx }
end

-- Writes an openssl CA setup in dir that signs with the test CA, and
-- returns the path of its configuration.
local function ca_setup(dir)
  sh("mkdir -p " .. quote(dir .. "/new") .. " && : > " .. quote(dir .. "/index.txt")
     .. " && echo 1000 > " .. quote(dir .. "/serial") .. " && echo 01 > "
     .. quote(dir .. "/crlnumber"))
  local cnf = dir .. "/ca.cnf"
  write(cnf, table.concat({
    "[ca]", "default_ca = test_ca", "[test_ca]",
    "database = " .. dir .. "/index.txt", "new_certs_dir = " .. dir .. "/new",
    "serial = " .. dir .. "/serial", "crlnumber = " .. dir .. "/crlnumber",
    "certificate = " .. H.certs "ca.crt", "private_key = " .. H.certs "ca.key",
    "default_md = sha256", "default_crl_days = 30", "policy = any", "unique_subject = no",
    "[any]", "commonName = supplied", "",
  }, "\n"))
  return cnf
end

describe("a context", function()
  local dir

  lazy_setup(function()
    dir = H.env.dir .. "/tls-keys-spec"
    sh("rm -rf " .. quote(dir) .. " && mkdir -p " .. quote(dir))
    local key = quote(H.certs "certuser.key")
    sh("openssl pkey -in " .. key .. " -aes256 -passout pass:secret -out "
       .. quote(dir .. "/pkcs8.key"))
    sh("openssl rsa -in " .. key .. " -aes256 -traditional -passout pass:secret -out "
       .. quote(dir .. "/traditional.key"))
    sh("chmod 600 " .. quote(dir) .. "/*.key")
  end)

  lazy_teardown(function()
    if dir then os.execute("rm -rf " .. quote(dir)) end
  end)

  describe("with an encrypted key", function()
    for _, name in ipairs { "pkcs8", "traditional" } do
      it("logs in with a " .. name .. " key and the right key_password", function()
        local conn <close> = H.connect(certuser {
          cert_file = H.certs "certuser.crt", key_file = dir .. "/" .. name .. ".key",
          key_password = "secret", ca_cert_file = H.certs "ca.crt" })
        assert.are.equal("certuser", H.value(conn, "select current_user"))
      end)

      it("refuses a " .. name .. " key with a wrong key_password", function()
        local err = context_error { cert_file = H.certs "certuser.crt",
          key_file = dir .. "/" .. name .. ".key", key_password = "wrong" }
        assert.are.equal("tls", err.kind)
        assert.matches("could not be decrypted", err.message, 1, true)
      end)
    end
  end)

  describe("given PEM text", function()
    it("logs in with key, cert and ca_cert strings", function()
      local conn <close> = H.connect(certuser {
        key = read(H.certs "certuser.key"), cert = read(H.certs "certuser.crt"),
        ca_cert = read(H.certs "ca.crt") })
      assert.are.equal("certuser", H.value(conn, "select current_user"))
    end)

    it("logs in with an encrypted key string and its key_password", function()
      local conn <close> = H.connect(certuser {
        key = read(dir .. "/pkcs8.key"), key_password = "secret",
        cert = read(H.certs "certuser.crt"), ca_cert = read(H.certs "ca.crt") })
      assert.are.equal("certuser", H.value(conn, "select current_user"))
    end)

    it("verifies the server with a ca_cert string", function()
      local err = refused(H.config { user = "trustuser",
        ssl_context = { ca_cert = read(H.certs "other-ca.crt") } })
      assert.matches("verification failed", err.message, 1, true)
    end)

    it("says a key string that is no key is in-memory and unusable", function()
      local err = context_error { cert = read(H.certs "certuser.crt"), key = "not a key" }
      assert.are.equal("tls", err.kind)
      assert.matches("in-memory private key", err.message, 1, true)
    end)

    it("says a ca_cert string without certificates holds none", function()
      local err = context_error { ca_cert = "nothing here" }
      assert.matches("in-memory CA certificate holds no usable", err.message, 1, true)
    end)

    it("refuses key together with key_file", function()
      local err = context_error { key = "x", key_file = H.certs "certuser.key",
                                  cert_file = H.certs "certuser.crt" }
      assert.are.equal("config", err.kind)
    end)

    it("refuses a key string without a certificate", function()
      assert.are.equal("config", context_error({ key = read(H.certs "certuser.key") }).kind)
    end)

    it("mixes a certificate file with a key string", function()
      local conn <close> = H.connect(certuser {
        cert_file = H.certs "certuser.crt", key = read(H.certs "certuser.key"),
        ca_cert_file = H.certs "ca.crt" })
      assert.are.equal("certuser", H.value(conn, "select current_user"))
    end)
  end)

  describe("with a private key file whose mode", function()
    local path

    before_each(function()
      path = dir .. "/mode.key"
      sh("cp " .. quote(H.certs "certuser.key") .. " " .. quote(path))
    end)

    local function with_mode(mode, owner)
      sh("chmod " .. mode .. " " .. quote(path)
         .. (owner and " && chown " .. owner .. " " .. quote(path) or ""))
      return { cert_file = H.certs "certuser.crt", key_file = path }
    end

    it("is 0644 is refused", function()
      local err = context_error(with_mode("0644"))
      assert.are.equal("tls", err.kind)
      assert.matches(path, err.message, 1, true)
      assert.matches("group or world access", err.message, 1, true)
    end)

    it("is 0644 is refused with an error that says how to fix it", function()
      local err = context_error(with_mode("0644"))
      assert.matches("chmod 0600", err.message, 1, true)
    end)

    it("is 0604 is refused", function()
      assert.are.equal("tls", context_error(with_mode("0604")).kind)
    end)

    it("is 0600 is accepted", function()
      assert.is_true(pg.ssl.is_context(pg.ssl.context(with_mode("0600"))))
    end)

    it("is 0400 is accepted", function()
      assert.is_true(pg.ssl.is_context(pg.ssl.context(with_mode("0400"))))
    end)

    it("is 0640 and owned by root is accepted", function()
      assert.is_true(pg.ssl.is_context(pg.ssl.context(with_mode("0640", "root"))))
    end)

    it("is 0660 and owned by root is refused", function()
      assert.are.equal("tls", context_error(with_mode("0660", "root")).kind)
    end)

    it("is 0640 and owned by another user is refused", function()
      local id = io.popen("id -u"):read("l")
      if id ~= "0" then
        pending("only root can give the file to another user")
        return
      end
      assert.are.equal("tls", context_error(with_mode("0640", "nobody")).kind)
    end)

    it("does not matter for PEM text", function()
      sh("chmod 0644 " .. quote(path))
      assert.is_true(pg.ssl.is_context(pg.ssl.context {
        cert = read(H.certs "certuser.crt"), key = read(path) }))
    end)
  end)

  describe("with a certificate file holding a chain", function()
    local chain_dir

    lazy_setup(function()
      chain_dir = dir .. "/chain"
      local cnf = ca_setup(chain_dir)
      local d = quote(chain_dir)
      write(chain_dir .. "/inter.ext", "basicConstraints=critical,CA:TRUE\n"
            .. "keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n")
      write(chain_dir .. "/leaf.ext", "basicConstraints=critical,CA:FALSE\n"
            .. "keyUsage=critical,digitalSignature,keyEncipherment\n"
            .. "extendedKeyUsage=clientAuth\n")
      sh("cd " .. d .. " && umask 077 && openssl genpkey -algorithm EC "
         .. "-pkeyopt ec_paramgen_curve:P-256 -out inter.key && openssl genpkey "
         .. "-algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out leaf.key")
      sh("cd " .. d .. " && openssl req -new -key inter.key -subj '/CN=pgtest intermediate'"
         .. " -out inter.csr && openssl ca -batch -notext -config " .. quote(cnf)
         .. " -extfile inter.ext -days 30 -in inter.csr -out inter.crt")
      sh("cd " .. d .. " && openssl req -new -key leaf.key -subj /CN=certuser -out leaf.csr"
         .. " && openssl x509 -req -in leaf.csr -CA inter.crt -CAkey inter.key"
         .. " -set_serial 77 -days 30 -extfile leaf.ext -out leaf.crt")
      sh("cd " .. d .. " && cat leaf.crt inter.crt > chain.crt")
    end)

    it("presents the intermediate, so the server accepts the client", function()
      local conn <close> = H.connect(certuser {
        cert_file = chain_dir .. "/chain.crt", key_file = chain_dir .. "/leaf.key",
        ca_cert_file = H.certs "ca.crt" })
      assert.are.equal("certuser", H.value(conn, "select current_user"))
    end)

    it("without the intermediate is refused by the server", function()
      local err = refused(certuser {
        cert_file = chain_dir .. "/leaf.crt", key_file = chain_dir .. "/leaf.key",
        ca_cert_file = H.certs "ca.crt" })
      assert.are.equal("auth", err.kind)
      assert.matches("valid client certificate", err.message, 1, true)
    end)

    it("is checked against its key", function()
      local err = context_error { cert_file = chain_dir .. "/chain.crt",
                                  key_file = chain_dir .. "/inter.key" }
      assert.matches("does not match", err.message, 1, true)
    end)
  end)

  describe("with a revocation list", function()
    local crl_dir, revoked_crl

    lazy_setup(function()
      crl_dir = dir .. "/crl"
      local cnf = ca_setup(crl_dir)
      revoked_crl = crl_dir .. "/server-revoked.crl"
      sh("openssl ca -batch -config " .. quote(cnf) .. " -revoke " .. quote(H.certs "server.crt"))
      sh("openssl ca -batch -config " .. quote(cnf) .. " -gencrl -out " .. quote(revoked_crl))
    end)

    it("rejects the server when its certificate is revoked", function()
      local err = refused(H.config { user = "trustuser", ssl_context = {
        ca_cert_file = H.certs "ca.crt", crl_file = revoked_crl } })
      assert.are.equal("tls", err.kind)
      assert.matches("revoked", err.message, 1, true)
    end)

    it("rejects a revoked server in ssl_mode verify-ca too", function()
      local err = refused(H.config { user = "trustuser", ssl_mode = "verify-ca",
        ssl_context = { ca_cert_file = H.certs "ca.crt", crl_file = revoked_crl } })
      assert.matches("revoked", err.message, 1, true)
    end)

    it("accepts the server when the list does not name it", function()
      local conn <close> = H.connect(H.config { user = "trustuser", ssl_context = {
        ca_cert_file = H.certs "ca.crt", crl_file = H.certs "ca.crl" } })
      assert.is_not_nil(conn:tls_info())
    end)

    it("names a missing crl_file", function()
      local err = context_error { ca_cert_file = H.certs "ca.crt",
                                  crl_file = dir .. "/missing.crl" }
      assert.are.equal("tls", err.kind)
      assert.matches(dir .. "/missing.crl", err.message, 1, true)
    end)

    it("says a crl_file that holds no list holds none", function()
      local err = context_error { ca_cert_file = H.certs "ca.crt",
                                  crl_file = H.certs "ca.crt" }
      assert.matches("no usable certificate revocation list", err.message, 1, true)
    end)
  end)

  describe("with ca_cert_file = \"system\"", function()
    it("builds a context from the system store", function()
      assert.is_true(pg.ssl.is_context(pg.ssl.context { ca_cert_file = "system" }))
    end)

    it("rejects the test server, which no public CA signed", function()
      local err = refused(H.config { user = "trustuser",
                                     ssl_context = { ca_cert_file = "system" } })
      assert.matches("verification failed", err.message, 1, true)
    end)

    it("counts as a CA given, so require verifies the chain", function()
      local err = refused(H.config { user = "trustuser", ssl_mode = "require",
                                     ssl_context = { ca_cert_file = "system" } })
      assert.matches("verification failed", err.message, 1, true)
    end)
  end)
end)

describe("ssl = true without a context", function()
  local home

  -- Runs a connection in a child process whose HOME is home, with the
  -- options in the Lua table constructor text config.  Returns its one
  -- line of output: "ok <current_user>" or "<kind>: <message>".
  local function child(config)
    local script = [[
      local pg = require "pg"
      local conn, err = pg.connect(]] .. config .. [[)
      if conn then
        local res = assert(conn:query("select current_user as u"))
        io.write("ok ", res[1].u, "\n")
        conn:close()
      else
        io.write(err.kind, ": ", err.message, "\n")
      end
    ]]
    local pipe = assert(io.popen("HOME=" .. quote(home) .. " lua5.4 -e " .. quote(script)
                                 .. " 2>&1", "r"))
    local out = pipe:read("a")
    pipe:close()
    return (out:gsub("\n$", ""))
  end

  local function login(user, extra)
    return string.format("{ host = 'localhost', port = %d, database = %q, user = %q, "
                         .. "password = %q, ssl = true, connect_timeout = 5 %s }",
                         H.env.port, H.env.db, user, H.passwords[user] or "",
                         extra and ", " .. extra or "")
  end

  -- Puts files (name -> source path) into home/.postgresql, mode 0600.
  local function files(list)
    sh("rm -rf " .. quote(home .. "/.postgresql") .. " && mkdir -p "
       .. quote(home .. "/.postgresql"))
    for name, source in pairs(list) do
      local target = home .. "/.postgresql/" .. name
      sh("cp " .. quote(source) .. " " .. quote(target) .. " && chmod 600 " .. quote(target))
    end
  end

  lazy_setup(function()
    home = H.env.dir .. "/tls-keys-home"
    sh("rm -rf " .. quote(home) .. " && mkdir -p " .. quote(home))
  end)

  lazy_teardown(function()
    if home then os.execute("rm -rf " .. quote(home)) end
  end)

  it("logs in with ~/.postgresql/postgresql.crt and postgresql.key", function()
    files { ["postgresql.crt"] = H.certs "certuser.crt",
            ["postgresql.key"] = H.certs "certuser.key", ["root.crt"] = H.certs "ca.crt" }
    assert.are.equal("ok certuser", child(login "certuser"))
  end)

  it("verifies the server with ~/.postgresql/root.crt", function()
    files { ["root.crt"] = H.certs "ca.crt" }
    assert.are.equal("ok scramuser", child(login "scramuser"))
  end)

  it("uses the system store when there is no root.crt", function()
    files {}
    assert.matches("^tls: server certificate verification failed", child(login "scramuser"))
  end)

  it("rejects a server revoked in ~/.postgresql/root.crl", function()
    local crl_dir = home .. "/crl"
    local cnf = ca_setup(crl_dir)
    sh("openssl ca -batch -config " .. quote(cnf) .. " -revoke " .. quote(H.certs "server.crt"))
    sh("openssl ca -batch -config " .. quote(cnf) .. " -gencrl -out "
       .. quote(crl_dir .. "/revoked.crl"))
    files { ["root.crt"] = H.certs "ca.crt", ["root.crl"] = crl_dir .. "/revoked.crl" }
    assert.matches("^tls: .*revoked", child(login "scramuser"))
  end)

  it("says that postgresql.crt has no postgresql.key", function()
    files { ["postgresql.crt"] = H.certs "certuser.crt", ["root.crt"] = H.certs "ca.crt" }
    local out = child(login "certuser")
    assert.matches("^tls: ", out)
    assert.matches("postgresql.key", out, 1, true)
  end)

  it("refuses a postgresql.key that others may read", function()
    files { ["postgresql.crt"] = H.certs "certuser.crt",
            ["postgresql.key"] = H.certs "certuser.key", ["root.crt"] = H.certs "ca.crt" }
    sh("chmod 0644 " .. quote(home .. "/.postgresql/postgresql.key"))
    assert.matches("^tls: .*chmod 0600", child(login "certuser"))
  end)

  it("verifies the chain in ssl_mode require when root.crt exists, as libpq does", function()
    files { ["root.crt"] = H.certs "other-ca.crt" }
    assert.matches("^tls: server certificate verification failed",
                   child(login("scramuser", "ssl_mode = 'require'")))
  end)

  it("reads the files at connect time, not when pg was loaded", function()
    files { ["root.crt"] = H.certs "ca.crt" }
    local first = child(login "scramuser")
    files { ["root.crt"] = H.certs "other-ca.crt" }
    assert.are.equal("ok scramuser", first)
    assert.matches("^tls: ", child(login "scramuser"))
  end)
end)
