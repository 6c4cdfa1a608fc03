-- Checks of the test environment itself, made without the client
-- library: the interpreter, the variables scripts/pgtest.sh exports, the
-- certificates it made and the servers it started.  When these fail, the
-- failures of the other specs say nothing about the library.

local socket = require "socket"
local unix = require "socket.unix"
local H = require "support.helper"

-- The SSLRequest message: length 8, then the request code 80877103.
local SSL_REQUEST = string.pack(">i4i4", 8, 80877103)

-- Connects to 127.0.0.1:port; returns the socket, or nil and a message.
local function tcp_connect(port)
  local sock = socket.tcp()
  sock:settimeout(5)
  local ok, err = sock:connect(H.env.host, port)
  if not ok then
    sock:close()
    return nil, err
  end
  return sock
end

-- Sends an SSLRequest to the server on port and returns its one-byte
-- answer ("S" or "N"), or nil and a message.
local function ssl_request_answer(port)
  local sock, err = tcp_connect(port)
  if not sock then
    return nil, err
  end
  local answer
  answer, err = sock:send(SSL_REQUEST)
  if answer then
    answer, err = sock:receive(1)
  end
  sock:close()
  return answer, err
end

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read "a"
  f:close()
  return data
end

describe("the test environment", function()
  it("runs on Lua 5.4", function()
    assert.are.equal("Lua 5.4", _VERSION)
  end)

  it("names the TLS server's port in PGC_TEST_PORT", function()
    assert.is_not_nil(os.getenv "PGC_TEST_PORT")
    assert.is_true(math.type(H.env.port) == "integer")
  end)

  it("names the plain server's port in PGC_TEST_PLAIN_PORT", function()
    assert.is_true(math.type(H.env.plain_port) == "integer")
  end)

  it("builds a connection table without changing its overrides", function()
    local overrides = { user = "trustuser" }
    local config = H.config(overrides)
    assert.are.same({ host = H.env.host, port = H.env.port, database = H.env.db,
      user = "trustuser" }, config)
    assert.are.same({ user = "trustuser" }, overrides)
  end)
end)

describe("the test certificates", function()
  local files = {
    "ca.crt", "ca.key",
    "server.crt", "server.key",
    "certuser.crt", "certuser.key",
    "scramuser.crt", "scramuser.key",
    "other-ca.crt", "other-ca.key",
    "other-certuser.crt", "other-certuser.key",
    "certuser-mismatch.key",
  }
  for _, name in ipairs(files) do
    it("include " .. name, function()
      assert.is_true(#read_file(H.certs(name)) > 0)
    end)
  end

  it("include a mismatched key that differs from certuser's key", function()
    assert.are_not.equal(read_file(H.certs "certuser.key"),
      read_file(H.certs "certuser-mismatch.key"))
  end)
end)

describe("the TLS server", function()
  it("accepts TCP connections", function()
    local sock, err = tcp_connect(H.env.port)
    assert.is_not_nil(sock, err)
    sock:close()
  end)

  it("answers an SSLRequest with S", function()
    assert.are.equal("S", ssl_request_answer(H.env.port))
  end)

  it("accepts connections on its Unix socket", function()
    local sock = unix.stream()
    local path = string.format("%s/.s.PGSQL.%d", H.env.socket_dir, H.env.port)
    local ok, err = sock:connect(path)
    sock:close()
    assert.is_not_nil(ok, err)
  end)
end)

describe("the plain server", function()
  it("accepts TCP connections", function()
    local sock, err = tcp_connect(H.env.plain_port)
    assert.is_not_nil(sock, err)
    sock:close()
  end)

  it("answers an SSLRequest with N", function()
    assert.are.equal("N", ssl_request_answer(H.env.plain_port))
  end)
end)
