-- Specs for opening and closing connections: the transports pg.connect
-- picks (TCP by address or name, Unix socket), how it checks its options,
-- the startup parameters it sends, and what a connection reports about
-- itself.  Runs against the servers scripts/pgtest.sh starts.

local pg = require "pg"
local socket = require "socket"
local H = require "support.helper"

-- A trust login on the TLS server, without TLS, with overrides applied.
local function trust(overrides)
  local config = H.config(overrides)
  config.user = config.user or "trustuser"
  return config
end

-- Returns a TCP port of the test host on which nothing listens.
local function closed_port()
  local server = assert(socket.bind(H.env.host, 0))
  local _, port = server:getsockname()
  server:close()
  return math.tointeger(tonumber(port))
end

describe("pg.connect", function()
  describe("over TCP", function()
    it("connects to an IP address", function()
      local conn <close> = H.connect(trust { host = "127.0.0.1" })
      assert.are.equal(1, H.value(conn, "select 1"))
    end)

    it("connects to the name localhost, trying each address it resolves to", function()
      local conn <close> = H.connect(trust { host = "localhost" })
      assert.are.equal(1, H.value(conn, "select 1"))
    end)

    it("connects to hostaddr without resolving host", function()
      local conn <close> = H.connect(trust { host = "wrong.example.test", hostaddr = "127.0.0.1" })
      assert.are.equal(1, H.value(conn, "select 1"))
    end)

    it("accepts a port given as a string of digits", function()
      local conn <close> = H.connect(trust { port = tostring(H.env.port) })
      assert.are.equal(1, H.value(conn, "select 1"))
    end)

    it("accepts connect_timeout", function()
      local conn <close> = H.connect(trust { connect_timeout = 5 })
      assert.are.equal(1, H.value(conn, "select 1"))
    end)

    it("reports a closed port as an io error", function()
      local conn, err = pg.connect(trust { port = closed_port() })
      assert.is_nil(conn)
      assert.are.equal("io", err.kind)
    end)

    it("names the host and the port it could not connect to", function()
      local port = closed_port()
      local _, err = pg.connect(trust { port = port })
      assert.matches("127.0.0.1", err.message, 1, true)
      assert.matches(tostring(port), err.message, 1, true)
    end)

    it("reports a host name that does not resolve as an io error naming it", function()
      local _, err = pg.connect(trust { host = "no-such-host.invalid" })
      assert.are.equal("io", err.kind)
      assert.matches("no-such-host.invalid", err.message, 1, true)
    end)

    it("gives up on a server that never answers once connect_timeout has passed", function()
      local silent = assert(socket.bind(H.env.host, 0))
      local _, port = silent:getsockname()
      local started = socket.gettime()
      local conn, err = pg.connect(trust { port = tonumber(port), connect_timeout = 0.3 })
      local waited = socket.gettime() - started
      silent:close()
      assert.is_nil(conn)
      assert.are.equal("io", err.kind)
      assert.is_true(waited < 3, "waited " .. waited .. " s")
    end)
  end)

  describe("over a Unix socket", function()
    it("connects to the socket in a directory given as host", function()
      local conn <close> = H.connect(trust { host = H.env.socket_dir })
      assert.are.equal(1, H.value(conn, "select 1"))
    end)

    it("names the socket path it could not connect to", function()
      local _, err = pg.connect(trust { host = "/nonexistent/pg-client-spec" })
      assert.are.equal("io", err.kind)
      assert.matches("/nonexistent/pg-client-spec/.s.PGSQL.", err.message, 1, true)
    end)

    it("reaches the server as a local client", function()
      local conn <close> = H.connect(trust { host = H.env.socket_dir })
      assert.are.equal(pg.null, H.value(conn, "select inet_client_addr()"))
    end)
  end)

  describe("options", function()
    it("rejects an unknown option with kind config", function()
      local conn, err = pg.connect(trust { hots = "127.0.0.1" })
      assert.is_nil(conn)
      assert.are.equal("config", err.kind)
    end)

    it("names an unknown option in the message", function()
      local _, err = pg.connect(trust { hots = "127.0.0.1" })
      assert.matches("'hots'", err.message, 1, true)
    end)

    it("names an unknown option in err.option", function()
      local _, err = pg.connect(trust { hots = "127.0.0.1" })
      assert.are.equal("hots", err.option)
    end)

    it("rejects a value of the wrong type with kind config", function()
      local conn, err = pg.connect(trust { port = {} })
      assert.is_nil(conn)
      assert.are.equal("config", err.kind)
    end)

    it("names the option whose value has the wrong type", function()
      local _, err = pg.connect(trust { ssl = "yes" })
      assert.matches("'ssl'", err.message, 1, true)
      assert.are.equal("ssl", err.option)
    end)

    it("rejects a port outside 1 to 65535", function()
      local _, err = pg.connect(trust { port = 70000 })
      assert.are.equal("config", err.kind)
    end)

    it("rejects a negative connect_timeout", function()
      local _, err = pg.connect(trust { connect_timeout = -1 })
      assert.are.equal("config", err.kind)
    end)

    it("raises when given something other than a table or a string", function()
      assert.has_error(function() pg.connect(42) end)
      assert.has_error(function() pg.connect() end)
    end)

    it("accepts ssl spelled ssl?", function()
      local conn <close> = H.connect(H.config {
        user = "certuser", ["ssl?"] = true, ssl_context = H.tls_files "certuser",
      })
      assert.is_not_nil(conn:tls_info())
    end)

    it("accepts ssl_context spelled ssl-context", function()
      local conn <close> = H.connect(H.config {
        user = "certuser", ["ssl-context"] = H.tls_files "certuser",
      })
      assert.are.equal("certuser", H.value(conn, "select current_user"))
    end)

    it("accepts the keys of a context table spelled key-file, cert-file and ca-cert-file",
      function()
        local files = H.tls_files "certuser"
        local conn <close> = H.connect(H.config {
          user = "certuser",
          ssl_context = {
            ["key-file"] = files.key_file,
            ["cert-file"] = files.cert_file,
            ["ca-cert-file"] = files.ca_cert_file,
          },
        })
        assert.are.equal("certuser", H.value(conn, "select current_user"))
      end)

    it("accepts application_name spelled application-name", function()
      local conn <close> = H.connect(trust { ["application-name"] = "kebab" })
      assert.are.equal("kebab", H.value(conn, "select current_setting('application_name')"))
    end)

    it("accepts connect_timeout spelled connect-timeout", function()
      local conn <close> = H.connect(trust { ["connect-timeout"] = 5 })
      assert.are.equal(1, H.value(conn, "select 1"))
    end)

    it("accepts two spellings of one option that agree", function()
      local conn <close> = H.connect(trust { application_name = "same",
        ["application-name"] = "same" })
      assert.are.equal("same", H.value(conn, "select current_setting('application_name')"))
    end)

    it("rejects two spellings of one option that disagree", function()
      local conn, err = pg.connect(trust { ssl = false, ["ssl?"] = true })
      assert.is_nil(conn)
      assert.are.equal("config", err.kind)
    end)

    it("names both spellings of an option that disagree", function()
      local _, err = pg.connect(trust { application_name = "a", ["application-name"] = "b" })
      assert.matches("application_name", err.message, 1, true)
      assert.matches("application-name", err.message, 1, true)
    end)
  end)

  describe("startup parameters", function()
    it("sets application_name to pg-client by default", function()
      local conn <close> = H.connect(trust())
      assert.are.equal("pg-client", H.value(conn, "select current_setting('application_name')"))
    end)

    it("sets the application_name given", function()
      local conn <close> = H.connect(trust { application_name = "spec runner" })
      assert.are.equal("spec runner",
        H.value(conn, "select current_setting('application_name')"))
    end)

    it("passes params to the server", function()
      local conn <close> = H.connect(trust { params = { search_path = "foo" } })
      assert.are.equal("foo", H.value(conn, "show search_path"))
    end)

    it("refuses params that would set the user", function()
      local conn, err = pg.connect(trust { params = { user = "postgres" } })
      assert.is_nil(conn)
      assert.are.equal("config", err.kind)
    end)

    it("logs in to the database given", function()
      local conn <close> = H.connect(trust { database = "postgres" })
      assert.are.equal("postgres", H.value(conn, "select current_database()"))
    end)
  end)

  describe("a connection", function()
    it("reports the server_version the server sent", function()
      local conn <close> = H.connect(trust())
      assert.are.equal(H.value(conn, "show server_version"), conn:parameter "server_version")
    end)

    it("reports client_encoding UTF8", function()
      local conn <close> = H.connect(trust())
      assert.are.equal("UTF8", conn:parameter "client_encoding")
    end)

    it("reports its application_name as a parameter", function()
      local conn <close> = H.connect(trust { application_name = "reported" })
      assert.are.equal("reported", conn:parameter "application_name")
    end)

    it("follows a parameter the server changes later", function()
      local conn <close> = H.connect(trust())
      assert(conn:query "set application_name = 'changed'")
      assert.are.equal("changed", conn:parameter "application_name")
    end)

    it("returns nil for a parameter the server did not send", function()
      local conn <close> = H.connect(trust())
      assert.is_nil(conn:parameter "no_such_parameter")
    end)

    it("lists every parameter in parameters()", function()
      local conn <close> = H.connect(trust())
      local all = conn:parameters()
      assert.are.equal(conn:parameter "server_version", all.server_version)
      assert.are.equal("UTF8", all.client_encoding)
    end)

    it("reports the process id of its backend", function()
      local conn <close> = H.connect(trust())
      assert.are.equal(H.value(conn, "select pg_backend_pid()"), conn:backend_pid())
    end)

    it("is idle after connecting", function()
      local conn <close> = H.connect(trust())
      assert.are.equal("idle", conn:status())
    end)

    it("is in a transaction after BEGIN", function()
      local conn <close> = H.connect(trust())
      assert(conn:query "begin")
      assert.are.equal("transaction", conn:status())
    end)

    it("is in a failed transaction after an error inside one", function()
      local conn <close> = H.connect(trust())
      assert(conn:query "begin")
      assert.is_nil(conn:query "select * from no_such_table")
      assert.are.equal("error", conn:status())
    end)

    it("is idle again after ROLLBACK of a failed transaction", function()
      local conn <close> = H.connect(trust())
      assert(conn:query "begin")
      assert.is_nil(conn:query "select * from no_such_table")
      assert(conn:query "rollback")
      assert.are.equal("idle", conn:status())
    end)
  end)

  describe("a connection the server ended", function()
    local conn

    before_each(function()
      conn = H.connect(trust())
      local killer <close> = H.connect(trust())
      assert(killer:query("select pg_terminate_backend(" .. conn:backend_pid() .. ")"))
      assert.is_true(H.backend_gone(conn:backend_pid()))
    end)

    after_each(function()
      conn:close()
    end)

    it("returns the server's FATAL error from the next query", function()
      local res, err = conn:query "select 1"
      assert.is_nil(res)
      assert.are.equal("57P01", err.code)
    end)

    it("returns nil, err from every query after that", function()
      conn:query "select 1"
      local res, err = conn:query "select 1"
      assert.is_nil(res)
      assert.is_table(err)
    end)

    it("can still be closed", function()
      conn:query "select 1"
      conn:close()
      assert.is_true(conn:is_closed())
    end)
  end)

  describe("closing", function()
    it("marks the connection closed", function()
      local conn = H.connect(trust())
      conn:close()
      assert.is_true(conn:is_closed())
    end)

    it("is not closed before close is called", function()
      local conn <close> = H.connect(trust())
      assert.is_false(conn:is_closed())
    end)

    it("may be done twice", function()
      local conn = H.connect(trust())
      conn:close()
      assert.has_no_error(function() conn:close() end)
    end)

    it("ends the backend", function()
      local conn = H.connect(trust())
      local pid = conn:backend_pid()
      conn:close()
      assert.is_true(H.backend_gone(pid))
    end)

    it("makes a later query raise an error that says the connection is closed", function()
      local conn = H.connect(trust())
      conn:close()
      local ok, err = pcall(conn.query, conn, "select 1")
      assert.is_false(ok)
      assert.matches("closed", tostring(err), 1, true)
    end)

    it("makes a later status() raise", function()
      local conn = H.connect(trust())
      conn:close()
      assert.has_error(function() conn:status() end)
    end)

    it("shows in tostring", function()
      local conn = H.connect(trust())
      conn:close()
      assert.matches("closed", tostring(conn), 1, true)
    end)

    it("happens when a <close> variable goes out of scope", function()
      local pid
      do
        local conn <close> = H.connect(trust())
        pid = conn:backend_pid()
      end
      assert.is_true(H.backend_gone(pid))
    end)

    it("happens to a connection the program drops", function()
      local pid = H.connect(trust()):backend_pid()
      collectgarbage()
      collectgarbage()
      assert.is_true(H.backend_gone(pid))
    end)
  end)

  it("runs on Lua 5.4", function()
    assert.are.equal("Lua 5.4", _VERSION)
  end)
end)

describe("the timeout option", function()
  it("cancels a statement that runs longer than timeout and keeps the connection", function()
    local conn = assert(pg.connect(H.config { user = "trustuser", timeout = 0.3 }))
    local started = require("socket").gettime()
    local res, err = conn:query("select pg_sleep(5)")
    local took = require("socket").gettime() - started
    assert.is_nil(res)
    assert.equal("server", err.kind)
    assert.equal("57014", err.code)
    assert.is_true(err.timeout)
    assert.is_true(took < 2, "took " .. took .. " s")
    assert.equal(1, assert(conn:query("select 1 as one"))[1].one)
    conn:close()
  end)

  it("lets queries that answer in time run", function()
    local conn = assert(pg.connect(H.config { user = "trustuser", timeout = 5 }))
    assert.equal(1, assert(conn:query("select 1 as one"))[1].one)
    conn:close()
  end)

  it("fails the connection when the server does not answer the cancel either", function()
    local hostile = require "support.hostile"
    local srv = hostile.start "ready-then-stall"
    finally(srv.stop)
    local conn = assert(pg.connect {
      host = "127.0.0.1", port = srv.port, user = "u", database = "d", env = false,
      timeout = 0.2,
    })
    local started = require("socket").gettime()
    local res, err = conn:query("select 1")
    local took = require("socket").gettime() - started
    assert.is_nil(res)
    assert.equal("io", err.kind)
    assert.matches("cancel request", err.message)
    assert.is_true(took < 2, "took " .. took .. " s")
    assert.equal("failed", conn:status())
    conn:close()
  end)
end)

describe("conn:cancel", function()
  it("cancels the statement of a connection over a caller's transport", function()
    local socket = require "socket"
    local sock = socket.tcp()
    sock:settimeout(5)
    assert(sock:connect(H.env.host, H.env.port))
    local conn = assert(pg.connect(H.config { user = "trustuser", socket = sock }))
    -- The transport runs the cancel from inside the query's own wait.
    local receive, cancelled = sock.receive, false
    local wrapper = setmetatable({}, { __index = function(_, k)
      local v = sock[k]
      if type(v) == "function" then return function(_, ...) return v(sock, ...) end end
      return v
    end })
    wrapper.receive = function(_, n)
      if not cancelled then
        cancelled = true
        socket.sleep(0.2)
        assert(conn:cancel())
      end
      return receive(sock, n)
    end
    conn._socket = wrapper
    local res, err = conn:query("select pg_sleep(5)")
    assert.is_nil(res)
    assert.equal("57014", err.code)
    conn._socket = sock
    assert.equal(1, assert(conn:query("select 1 as one"))[1].one)
    conn:close()
  end)

  it("returns true on a native connection that runs nothing", function()
    local conn = assert(pg.connect(H.config { user = "trustuser" }))
    assert.is_true(conn:cancel())
    assert.equal(1, assert(conn:query("select 1 as one"))[1].one)
    conn:close()
  end)
end)
