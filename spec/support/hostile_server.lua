-- hostile_server.lua - a scripted server that misbehaves on purpose, for
-- the cases a real PostgreSQL will not produce.  Runs as its own process
-- so that the client under test can block on it; needs LuaSocket, and
-- openssl for the scenarios that present a certificate.
--
--   lua5.4 spec/support/hostile_server.lua SCENARIO PORT_FILE RECORD_FILE [ARGS...]
--
-- Listens on an ephemeral port of 127.0.0.1, writes the port to
-- PORT_FILE (atomically: it appears complete or not at all), accepts one
-- connection, plays SCENARIO on it and exits.  Every byte received from
-- the client goes, raw, to RECORD_FILE as it arrives.  On exit it writes
-- RECORD_FILE.done holding "ok", or the reason the scenario could not be
-- played.  Whatever happens, it is gone within LIFETIME seconds: every
-- wait is bounded by that deadline.
--
-- Scenarios, all but the plain ones starting by reading the client's
-- 8-byte SSLRequest:
--   answer-N                      answers 'N'
--   answer-X                      answers 'X', which is no valid answer
--   S-then-bytes                  answers 'S' and, in the same write, a
--                                 plaintext ErrorResponse (CVE-2021-23222)
--   close-after-S                 answers 'S', waits for the ClientHello,
--                                 then closes
--   stall-after-S                 answers 'S', then reads and never answers
--   tls-relay CERT KEY            answers 'S', then relays the stream to an
--                                 "openssl s_server" presenting CERT
--   tls-relay-tls10 CERT KEY      the same, with a server that speaks only
--                                 TLS 1.0 and 1.1
--   tls-relay-tls12 CERT KEY      the same, with a server that speaks only
--                                 TLS 1.2 and older
--   tls-direct CERT KEY           (no SSLRequest: direct TLS) relays the
--                                 stream at once to an "openssl s_server"
--                                 that selects the ALPN protocol postgresql
--   tls-direct-no-alpn CERT KEY   the same, with a server that selects no
--                                 ALPN protocol
--   plain-scram-plus              (no SSLRequest) reads the StartupMessage,
--                                 offers SASL with SCRAM-SHA-256-PLUS only
--   startup-garbage               (no SSLRequest) answers the StartupMessage
--                                 with a message of length 0x7fffffff
--   startup-short-length          ... with a message of length 2
--   startup-truncated-then-close  ... with a header announcing 100 bytes,
--                                 10 of them, then closes
-- After its move, each scenario goes on recording until the client
-- closes or LINGER seconds pass.

local socket = require "socket"

local LIFETIME = 10     -- seconds before the process gives up on anything
local LINGER = 1        -- seconds to keep recording after the scenario
local RELAY_IDLE = 0.5  -- seconds of silence that end a relay
local gettime = socket.gettime
local string_pack, string_unpack = string.pack, string.unpack

local deadline = gettime() + LIFETIME

-- Seconds left before the deadline, never negative.
local function remaining()
  return math.max(0, deadline - gettime())
end

---------------------------------------------------------------------------
-- recording and reading
---------------------------------------------------------------------------

local record_file

-- Appends bytes received from the client to the record, at once, so that
-- the record is complete even if the process is killed.
local function record(bytes)
  if bytes and #bytes > 0 then
    record_file:write(bytes)
    record_file:flush()
  end
end

-- Receives exactly n bytes from the client, recording them.  Returns the
-- bytes, or nil and the reason ("closed", "timeout").
local function receive_exactly(sock, n)
  sock:settimeout(remaining())
  local data, err, partial = sock:receive(n)
  record(data or partial)
  if not data then return nil, err end
  return data
end

-- Records whatever the client sends until it closes or seconds pass.
-- Returns true when the client closed.
local function drain(sock, seconds)
  local stop = math.min(deadline, gettime() + seconds)
  while gettime() < stop do
    sock:settimeout(stop - gettime())
    local data, err, partial = sock:receive(4096)
    record(data or partial)
    if err == "closed" then return true end
  end
  return false
end

-- Sends all of data to sock.  Returns true, or nil and the reason.
local function send_all(sock, data)
  sock:settimeout(remaining())
  local last, err = sock:send(data)
  if not last then return nil, err end
  return true
end

-- Reads the client's SSLRequest (8 bytes, recorded like everything else).
local function read_ssl_request(sock)
  return receive_exactly(sock, 8)
end

-- Reads a StartupMessage: a length that counts itself, then the body.
local function read_startup(sock)
  local head, err = receive_exactly(sock, 4)
  if not head then return nil, err end
  local len = string_unpack(">I4", head)
  if len < 8 or len > 10000 then return nil, "implausible StartupMessage length " .. len end
  return receive_exactly(sock, len - 4)
end

-- Stops sending, so that the client sees end of stream, and records what
-- it still sends until it closes too.
local function close_gently(sock)
  sock:shutdown("send")
  drain(sock, LINGER)
end

---------------------------------------------------------------------------
-- the TLS relay
---------------------------------------------------------------------------

-- Quotes s for the shell.
local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Returns a TCP port of 127.0.0.1 that was free a moment ago.
local function free_port()
  local probe = assert(socket.bind("127.0.0.1", 0))
  local _, port = probe:getsockname()
  probe:close()
  return math.tointeger(tonumber(port))
end

-- Starts "openssl s_server" for one connection on port, presenting cert
-- and key, with extra options.  Returns its process id.  Its own time
-- limit keeps it from outliving this process for long.
local function start_tls_server(port, cert, key, extra)
  local command = table.concat({
    "timeout", tostring(LIFETIME),
    "openssl", "s_server", "-accept", "127.0.0.1:" .. port,
    "-cert", shell_quote(cert), "-key", shell_quote(key),
    "-naccept", "1", "-quiet", extra or "",
    "</dev/null >/dev/null & echo $!",
  }, " ")
  local pipe = assert(io.popen(command, "r"))
  local pid = pipe:read("l")
  pipe:close()
  return assert(math.tointeger(tonumber(pid)), "could not start openssl s_server")
end

-- Connects to the TLS server on port, retrying while it starts up.
-- Returns the socket, or nil and the reason.
local function connect_upstream(port)
  local give_up = math.min(deadline, gettime() + 3)
  local err
  repeat
    local sock = socket.tcp()
    sock:settimeout(remaining())
    local ok
    ok, err = sock:connect("127.0.0.1", port)
    if ok then return sock end
    sock:close()
    socket.sleep(0.02)
  until gettime() >= give_up
  return nil, "could not reach openssl s_server: " .. tostring(err)
end

-- Moves bytes both ways between client and upstream until either closes,
-- neither sends anything for RELAY_IDLE seconds, or time runs out.  What
-- the client sends is recorded.
local function relay(client, upstream)
  local peer = { [client] = upstream, [upstream] = client }
  local last_traffic = gettime()
  while remaining() > 0 and gettime() - last_traffic < RELAY_IDLE do
    local readable = socket.select({ client, upstream }, nil, 0.05)
    for _, sock in ipairs(readable) do
      sock:settimeout(0)
      local data, err, partial = sock:receive(65536)
      local chunk = data or partial
      if chunk and #chunk > 0 then
        if sock == client then record(chunk) end
        if not send_all(peer[sock], chunk) then return end
        last_traffic = gettime()
      end
      if err == "closed" then return end
    end
  end
end

-- Relays the connection to a TLS server presenting cert (what scenario,
-- named in errors, needs), once it listens; first sends the client
-- answer, when given.
local function relay_to_tls_server(scenario, client, cert, key, extra, answer)
  assert(cert and key, scenario .. " needs a certificate and a key file")
  local port = free_port()
  local pid = start_tls_server(port, cert, key, extra)
  local upstream, err = connect_upstream(port)
  if upstream then
    if answer then assert(send_all(client, answer)) end
    relay(client, upstream)
    upstream:close()
  end
  os.execute("kill " .. pid .. " 2>/dev/null")
  assert(upstream, err)
end

-- Answers 'S' and relays the connection to a TLS server presenting cert.
local function tls_relay(client, cert, key, extra)
  assert(read_ssl_request(client), "no SSLRequest")
  relay_to_tls_server("tls-relay", client, cert, key, extra, "S")
end

---------------------------------------------------------------------------
-- scenarios
---------------------------------------------------------------------------

-- Builds a backend message: type byte, length counting itself, body.
local function message(type, body)
  return type .. string_pack(">I4", #body + 4) .. body
end

-- An ErrorResponse as a server would send it before any TLS.
local FAKE_ERROR = message("E", "SFATAL\0C28000\0Mplease log in without TLS\0\0")

local scenarios = {}

scenarios["answer-N"] = function(client)
  assert(read_ssl_request(client), "no SSLRequest")
  assert(send_all(client, "N"))
  drain(client, LINGER)
end

scenarios["answer-X"] = function(client)
  assert(read_ssl_request(client), "no SSLRequest")
  assert(send_all(client, "X"))
  drain(client, LINGER)
end

scenarios["S-then-bytes"] = function(client)
  assert(read_ssl_request(client), "no SSLRequest")
  assert(send_all(client, "S" .. FAKE_ERROR))
  drain(client, LINGER)
end

scenarios["close-after-S"] = function(client)
  assert(read_ssl_request(client), "no SSLRequest")
  assert(send_all(client, "S"))
  -- Wait for the start of the ClientHello, so that the close falls in
  -- the middle of the handshake.
  receive_exactly(client, 1)
  close_gently(client)
end

scenarios["stall-after-S"] = function(client)
  assert(read_ssl_request(client), "no SSLRequest")
  assert(send_all(client, "S"))
  drain(client, LIFETIME)
end

scenarios["tls-relay"] = function(client, cert, key)
  tls_relay(client, cert, key)
end

scenarios["tls-relay-tls10"] = function(client, cert, key)
  tls_relay(client, cert, key, "-no_tls1_2 -no_tls1_3 -cipher DEFAULT@SECLEVEL=0")
end

scenarios["tls-relay-tls12"] = function(client, cert, key)
  tls_relay(client, cert, key, "-no_tls1_3")
end

-- Relays the connection from its first byte to a TLS server presenting
-- cert, as for direct TLS, where the client sends no SSLRequest.
local function tls_direct_relay(client, cert, key, extra)
  relay_to_tls_server("tls-direct", client, cert, key, extra)
end

scenarios["tls-direct"] = function(client, cert, key)
  tls_direct_relay(client, cert, key, "-alpn postgresql")
end

scenarios["tls-direct-no-alpn"] = function(client, cert, key)
  tls_direct_relay(client, cert, key)
end

scenarios["plain-scram-plus"] = function(client)
  assert(read_startup(client), "no StartupMessage")
  local code = string_pack(">i4", 10)   -- AuthenticationSASL
  assert(send_all(client, message("R", code .. "SCRAM-SHA-256-PLUS\0\0")))
  drain(client, LINGER)
end

scenarios["startup-garbage"] = function(client)
  assert(read_startup(client), "no StartupMessage")
  assert(send_all(client, "R" .. string_pack(">I4", 0x7fffffff) .. string_pack(">i4", 0)))
  drain(client, LINGER)
end

scenarios["startup-short-length"] = function(client)
  assert(read_startup(client), "no StartupMessage")
  assert(send_all(client, "R" .. string_pack(">I4", 2) .. string_pack(">i4", 0)))
  drain(client, LINGER)
end

scenarios["startup-truncated-then-close"] = function(client)
  assert(read_startup(client), "no StartupMessage")
  assert(send_all(client, "R" .. string_pack(">I4", 100) .. string.rep("\0", 10)))
  close_gently(client)
end

-- Completes a plain startup (AuthenticationOk, BackendKeyData,
-- ReadyForQuery), then reads the query and never answers it.  A cancel
-- request, on a second connection, waits in the listen queue unanswered.
scenarios["ready-then-stall"] = function(client)
  assert(read_startup(client), "no StartupMessage")
  assert(send_all(client, message("R", string_pack(">i4", 0))
    .. message("K", string_pack(">i4>i4", 4242, 99)) .. message("Z", "I")))
  drain(client, LINGER)
end

---------------------------------------------------------------------------
-- main
---------------------------------------------------------------------------

-- Writes text to path through a temporary name, so that readers never
-- see a partial file.
local function write_atomically(path, text)
  local f = assert(io.open(path .. ".tmp", "wb"))
  f:write(text)
  f:close()
  assert(os.rename(path .. ".tmp", path))
end

-- Listens, writes the port, accepts one client and plays scenario on it.
local function serve(scenario, port_file, ...)
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  write_atomically(port_file, tostring(port) .. "\n")

  server:settimeout(remaining())
  local client, err = server:accept()
  server:close()
  assert(client, "no client connected: " .. tostring(err))
  client:setoption("tcp-nodelay", true)

  local ok, why = pcall(scenario, client, ...)
  client:close()
  assert(ok, why)
end

local function main(name, port_file, record_path, ...)
  if not (name and port_file and record_path) then
    io.stderr:write("usage: lua5.4 hostile_server.lua SCENARIO PORT_FILE RECORD_FILE [ARGS...]\n")
    os.exit(2)
  end
  record_file = assert(io.open(record_path, "wb"))

  local scenario = scenarios[name]
  local ok, err = false, "unknown scenario '" .. name .. "'"
  if scenario then
    ok, err = pcall(serve, scenario, port_file, ...)
  end

  record_file:close()
  write_atomically(record_path .. ".done", ok and "ok" or tostring(err))
  if not ok then
    io.stderr:write("hostile_server: ", tostring(err), "\n")
    os.exit(1)
  end
end

main(...)
