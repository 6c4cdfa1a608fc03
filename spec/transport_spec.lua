-- Specs for caller-supplied transports (pg.connect's socket option): the
-- protocol core does no I/O of its own, so TLS, authentication and
-- queries all run over a LuaSocket connection or any object with send,
-- receive and close; and the failures of such an object are reported as
-- io errors.

local pg = require "pg"
local H = require "support.helper"

-- Returns a transport whose methods are the functions given (send,
-- receive, close); a missing close does nothing.
local function fake_transport(methods)
  return {
    send = methods.send,
    receive = methods.receive,
    close = methods.close or function() end,
  }
end

-- A send that accepts all of the data at once, as LuaSocket reports it.
local function accept_all(_, data, i, j)
  return j or #data
end

describe("a LuaSocket transport", function()
  describe("carrying TLS and certificate authentication", function()
    local sock, conn

    lazy_setup(function()
      sock = H.tcp(H.env.port)
      conn = H.connect(H.tls_config("certuser", {
        socket = sock,
        ssl_context = pg.ssl.context(H.tls_files "certuser"),
      }))
    end)

    lazy_teardown(function()
      if conn then
        conn:close()
      end
    end)

    it("logs in as the user the certificate names", function()
      assert.are.equal("certuser", H.value(conn, "select current_user"))
    end)

    it("runs TLS over it", function()
      assert.matches("^TLSv1%.[23]$", conn:tls_info().version)
    end)

    it("is seen as TLS by the server", function()
      assert.is_true(H.value(conn, "select ssl from pg_stat_ssl where pid = pg_backend_pid()"))
    end)

    it("carries a large result", function()
      local res = assert(conn:query "select g from generate_series(1, 20000) g")
      assert.are.equal(20000, res[20000].g)
    end)

    it("carries a value larger than a TLS record", function()
      assert.are.equal(100000, #H.value(conn, "select repeat('y', 100000)"))
    end)
  end)

  describe("carrying a plain connection", function()
    it("logs in with trust", function()
      local conn <close> = H.connect(H.config { user = "trustuser", socket = H.tcp(H.env.port) })
      assert.are.equal("trustuser", H.value(conn, "select current_user"))
    end)

    it("has no tls_info", function()
      local conn <close> = H.connect(H.config { user = "trustuser", socket = H.tcp(H.env.port) })
      assert.is_nil(conn:tls_info())
    end)

    it("logs in with scram-sha-256", function()
      local conn <close> = H.connect(H.config { user = "scramuser", password = "scram-pass",
        socket = H.tcp(H.env.port) })
      assert.are.equal("scramuser", H.value(conn, "select current_user"))
    end)

    it("reports a server error and stays usable", function()
      local conn <close> = H.connect(H.config { user = "trustuser", socket = H.tcp(H.env.port) })
      local _, err = conn:query "select 1/0"
      assert.are.equal("22012", err.code)
      assert.are.equal(1, H.value(conn, "select 1"))
    end)
  end)

  describe("closing", function()
    it("closes the transport", function()
      local sock = H.tcp(H.env.port)
      local conn = H.connect(H.config { user = "trustuser", socket = sock })
      conn:close()
      assert.are.equal(-1, math.tointeger(sock:getfd()))
    end)

    it("ends the backend", function()
      local conn = H.connect(H.config { user = "trustuser", socket = H.tcp(H.env.port) })
      local pid = conn:backend_pid()
      conn:close()
      assert.is_true(H.backend_gone(pid))
    end)

    it("makes a later query raise an error that says the connection is closed", function()
      local conn = H.connect(H.config { user = "trustuser", socket = H.tcp(H.env.port) })
      conn:close()
      local ok, err = pcall(conn.query, conn, "select 1")
      assert.is_false(ok)
      assert.matches("closed", tostring(err), 1, true)
    end)
  end)
end)

describe("a wrapping transport", function()
  it("sees the bytes the client sends", function()
    local transport = H.recording_transport(H.tcp(H.env.port))
    local conn <close> = H.connect(H.config { user = "trustuser", socket = transport })
    assert.is_true(#transport:sent_bytes() > 0)
  end)

  it("sees the bytes the server sends", function()
    local transport = H.recording_transport(H.tcp(H.env.port))
    local conn <close> = H.connect(H.config { user = "trustuser", socket = transport })
    assert.is_true(transport.received_bytes > 0)
  end)

  it("carries the query and its result", function()
    local transport = H.recording_transport(H.tcp(H.env.port))
    local conn <close> = H.connect(H.config { user = "trustuser", socket = transport })
    local before = transport.received_bytes
    assert.are.equal("through the wrapper", H.value(conn, "select 'through the wrapper'"))
    assert.matches("through the wrapper", transport:sent_bytes(), 1, true)
    assert.is_true(transport.received_bytes > before)
  end)

  it("sees only ciphertext once TLS is up", function()
    local transport = H.recording_transport(H.tcp(H.env.port))
    local conn <close> = H.connect(H.tls_config("scramuser", { socket = transport }))
    H.value(conn, "select 'secret marker'")
    assert.is_nil(transport:sent_bytes():find("secret marker", 1, true))
  end)

  it("is closed when the connection is closed", function()
    local transport = H.recording_transport(H.tcp(H.env.port))
    local conn = H.connect(H.config { user = "trustuser", socket = transport })
    conn:close()
    assert.is_true(transport.closed)
  end)

  it("carries Terminate as the last message on close", function()
    local transport = H.recording_transport(H.tcp(H.env.port))
    local conn = H.connect(H.config { user = "trustuser", socket = transport })
    conn:close()
    assert.are.equal("X\0\0\0\4", transport.sent[#transport.sent])
  end)
end)

-- A transport over sock that counts its reads: receive(n) as LuaSocket
-- has it, and, with any set, receiveany(max) as OpenResty's cosockets
-- have it (what has arrived, at least one byte, at most max).
local function counting_transport(sock, any)
  local t = { reads = 0 }
  function t:send(data, i, j) return sock:send(data, i, j) end
  function t:close() return sock:close() end
  if any then
    function t:receiveany(max)
      self.reads = self.reads + 1
      sock:settimeout(5)
      local first, err = sock:receive(1)
      if not first then return nil, err end
      sock:settimeout(0)
      local more, _, partial = sock:receive(max - 1)
      sock:settimeout(5)
      return first .. (more or partial or "")
    end
  else
    function t:receive(n)
      self.reads = self.reads + 1
      return sock:receive(n)
    end
  end
  return t
end

describe("reading from a transport", function()
  it("asks receive for the rest of a message and the next header at once", function()
    local t = counting_transport(H.tcp(H.env.port))
    local conn <close> = H.connect(H.config { user = "trustuser", socket = t })
    local before = t.reads
    assert(conn:execute("select 1 as one"))
    -- ParseComplete, BindComplete, RowDescription, DataRow,
    -- CommandComplete and ReadyForQuery: seven reads, not twelve.
    assert.is_true(t.reads - before <= 7, "reads: " .. (t.reads - before))
  end)

  it("takes what has arrived from receiveany", function()
    local t = counting_transport(H.tcp(H.env.port), true)
    local conn <close> = H.connect(H.config { user = "trustuser", socket = t })
    local before = t.reads
    local res = assert(conn:query(
      "select i, repeat('x', 20) as s from generate_series(1, 20000) i"))
    assert.equal(20000, #res)
    assert.equal(20000, res[20000].i)
    assert.is_true(t.reads - before < 2000, "reads: " .. (t.reads - before))
    assert.equal(1, H.value(conn, "select 1"))
  end)

  it("takes what has arrived from receiveany under TLS", function()
    local t = counting_transport(H.tcp(H.env.port), true)
    local conn <close> = H.connect(H.tls_config("scramuser", { socket = t }))
    local res = assert(conn:query("select i from generate_series(1, 20000) i"))
    assert.equal(20000, #res)
    assert.is_table(conn:tls_info())
  end)
end)

describe("a failing transport", function()
  it("that errors on receive gives an io error", function()
    local conn, err = pg.connect(H.config { user = "trustuser", socket = fake_transport {
      send = accept_all,
      receive = function() return nil, "connection reset by peer" end,
    } })
    assert.is_nil(conn)
    assert.are.equal("io", err.kind)
  end)

  it("that errors on receive has its message passed on", function()
    local _, err = pg.connect(H.config { user = "trustuser", socket = fake_transport {
      send = accept_all,
      receive = function() return nil, "connection reset by peer" end,
    } })
    assert.matches("connection reset by peer", err.message, 1, true)
  end)

  it("that errors on send gives an io error", function()
    local _, err = pg.connect(H.config { user = "trustuser", socket = fake_transport {
      send = function() return nil, "broken pipe", 0 end,
      receive = function() return nil, "closed" end,
    } })
    assert.are.equal("io", err.kind)
  end)

  it("that errors on send is not read from afterwards", function()
    local reads = 0
    pg.connect(H.config { user = "trustuser", socket = fake_transport {
      send = function() return nil, "broken pipe", 0 end,
      receive = function()
        reads = reads + 1
        return nil, "closed"
      end,
    } })
    assert.are.equal(0, reads)
  end)

  it("that times out on every send gives an io error instead of retrying forever", function()
    local sends = 0
    local ok, conn, err = pcall(pg.connect, H.config { user = "trustuser",
      socket = fake_transport {
        send = function()
          sends = sends + 1
          if sends > 1000 then
            error("send was retried " .. sends .. " times")
          end
          return nil, "timeout", 0
        end,
        receive = function() return nil, "timeout" end,
      } })
    assert.is_true(ok, tostring(conn))
    assert.is_nil(conn)
    assert.are.equal("io", err.kind)
  end)

  it("that returns no bytes gives an io error instead of spinning", function()
    local sock = H.tcp(H.env.port)
    local t = {
      send = function(_, data, i, j) return sock:send(data, i, j) end,
      receive = function() return "" end,
      close = function() sock:close() end,
    }
    local conn, err = pg.connect(H.config { user = "trustuser", socket = t })
    assert.is_nil(conn)
    assert.equal("io", err.kind)
    assert.matches("no bytes", err.message)
  end)

  it("that closes before the server answers gives an io error", function()
    local _, err = pg.connect(H.config { user = "trustuser", socket = fake_transport {
      send = accept_all,
      receive = function() return nil, "closed", "" end,
    } })
    assert.are.equal("io", err.kind)
  end)

  it("is closed after the failed connection attempt", function()
    local closed = false
    pg.connect(H.config { user = "trustuser", socket = fake_transport {
      send = accept_all,
      receive = function() return nil, "connection reset by peer" end,
      close = function() closed = true end,
    } })
    assert.is_true(closed)
  end)

  it("without send and receive methods is refused as a config error", function()
    local _, err = pg.connect(H.config { user = "trustuser", socket = {} })
    assert.are.equal("config", err.kind)
  end)
end)
