-- Specs for logging in: each authentication method the TLS server's
-- pg_hba.conf asks for (trust, password, md5, scram-sha-256, cert), with
-- the right and the wrong credentials, and what a refused login reports.

local pg = require "pg"
local H = require "support.helper"

-- Returns the error of a login that is expected to fail; raises if the
-- login succeeds.
local function refused(config)
  local conn, err = pg.connect(config)
  if conn then
    conn:close()
    error("the login succeeded", 2)
  end
  return err
end

-- The password methods: the role the TLS server makes for each, and the
-- name its "no password" message gives the method.
local password_methods = {
  { method = "cleartext password", user = "pwuser", asked_for = "cleartext" },
  { method = "md5", user = "md5user", asked_for = "MD5" },
  { method = "scram-sha-256", user = "scramuser", asked_for = "SCRAM-SHA-256" },
}

describe("logging in", function()
  describe("with trust", function()
    it("needs no password", function()
      local conn <close> = H.connect(H.config { user = "trustuser" })
      assert.are.equal("trustuser", H.value(conn, "select current_user"))
    end)
  end)

  for _, case in ipairs(password_methods) do
    local user, password = case.user, H.passwords[case.user]

    describe("with " .. case.method, function()
      it("succeeds with the right password", function()
        local conn <close> = H.connect(H.config { user = user, password = password })
        assert.are.equal(user, H.value(conn, "select current_user"))
      end)

      it("refuses a wrong password as an auth error", function()
        local err = refused(H.config { user = user, password = "not-" .. password })
        assert.are.equal("auth", err.kind)
      end)

      it("reports SQLSTATE 28P01 for a wrong password", function()
        local err = refused(H.config { user = user, password = "not-" .. password })
        assert.are.equal("28P01", err.code)
      end)

      it("reports the server's FATAL severity for a wrong password", function()
        local err = refused(H.config { user = user, password = "not-" .. password })
        assert.are.equal("FATAL", err.severity)
      end)

      it("refuses to go on without a password as an auth error", function()
        local err = refused(H.config { user = user })
        assert.are.equal("auth", err.kind)
      end)

      it("says that the server asked for a password that was not given", function()
        local err = refused(H.config { user = user })
        assert.matches(case.asked_for, err.message, 1, true)
        assert.matches("no password was given", err.message, 1, true)
      end)

      it("logs in with the right password after a wrong one", function()
        refused(H.config { user = user, password = "not-" .. password })
        local conn <close> = H.connect(H.config { user = user, password = password })
        assert.are.equal(user, H.value(conn, "select current_user"))
      end)
    end)
  end

  describe("with scram-sha-256 and TLS", function()
    it("succeeds over TLS", function()
      local conn <close> = H.connect(H.tls_config("scramuser", {
        ssl_context = pg.ssl.context(H.tls_files()),
      }))
      assert.are.equal("scramuser", H.value(conn, "select current_user"))
    end)

    it("runs over TLS when asked to", function()
      local conn <close> = H.connect(H.tls_config "scramuser")
      assert.is_not_nil(conn:tls_info())
    end)

    it("runs without TLS when not asked to", function()
      local conn <close> = H.connect(H.config { user = "scramuser", password = "scram-pass" })
      assert.is_nil(conn:tls_info())
    end)

    it("refuses a wrong password over TLS with SQLSTATE 28P01", function()
      local err = refused(H.tls_config("scramuser", { password = "wrong" }))
      assert.are.equal("28P01", err.code)
    end)

    it("succeeds against the server without TLS", function()
      local conn <close> = H.connect(H.plain_config { user = "scramuser",
        password = "scram-pass" })
      assert.are.equal("scramuser", H.value(conn, "select current_user"))
    end)
  end)

  describe("with a client certificate", function()
    it("logs in as the user the certificate names", function()
      local conn <close> = H.connect(H.tls_config "certuser")
      assert.are.equal("certuser", H.value(conn, "select current_user"))
    end)

    it("refuses certuser without a client certificate as an auth error", function()
      local err = refused(H.tls_config("certuser", { ssl_context = H.tls_files() }))
      assert.are.equal("auth", err.kind)
    end)

    it("reports the server's SQLSTATE 28000 when no certificate is presented", function()
      local err = refused(H.tls_config("certuser", { ssl_context = H.tls_files() }))
      assert.are.equal("28000", err.code)
    end)

    it("passes on the server's message when no certificate is presented", function()
      local err = refused(H.tls_config("certuser", { ssl_context = H.tls_files() }))
      assert.matches("certificate", err.message, 1, true)
    end)

    it("refuses certuser presenting scramuser's certificate with SQLSTATE 28000", function()
      local files = H.tls_files "scramuser"
      local err = refused(H.tls_config("certuser", { ssl_context = files }))
      assert.are.equal("auth", err.kind)
      assert.are.equal("28000", err.code)
    end)

    it("refuses a certificate from a CA the server does not trust", function()
      local files = {
        ca_cert_file = H.certs "ca.crt",
        cert_file = H.certs "other-certuser.crt",
        key_file = H.certs "other-certuser.key",
      }
      local err = refused(H.tls_config("certuser", { ssl_context = files }))
      assert.are.equal("auth", err.kind)
      assert.are.equal("28000", err.code)
    end)

    it("refuses certuser without TLS, for want of a pg_hba.conf line", function()
      local err = refused(H.config { user = "certuser" })
      assert.are.equal("auth", err.kind)
      assert.are.equal("28000", err.code)
    end)

    it("logs in with the right certificate after a refused one", function()
      refused(H.tls_config("certuser", { ssl_context = H.tls_files "scramuser" }))
      local conn <close> = H.connect(H.tls_config "certuser")
      assert.are.equal("certuser", H.value(conn, "select current_user"))
    end)
  end)

  describe("as a role pg_hba.conf does not list", function()
    it("is refused as an auth error with SQLSTATE 28000", function()
      local err = refused(H.config { user = "nosuchrole" })
      assert.are.equal("auth", err.kind)
      assert.are.equal("28000", err.code)
    end)

    it("names the role in the message", function()
      local err = refused(H.config { user = "nosuchrole" })
      assert.matches("nosuchrole", err.message, 1, true)
    end)
  end)

  describe("to a database that does not exist", function()
    it("reports the server's SQLSTATE 3D000", function()
      local err = refused(H.config { user = "trustuser", database = "no_such_db" })
      assert.are.equal("3D000", err.code)
    end)
  end)

  it("formats a refused login as severity, SQLSTATE and message", function()
    local err = refused(H.config { user = "pwuser", password = "wrong" })
    assert.are.equal('FATAL 28P01: password authentication failed for user "pwuser"',
      tostring(err))
  end)
end)
