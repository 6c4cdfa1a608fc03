-- Shared settings for the specs: where the servers started by
-- scripts/pgtest.sh listen, the passwords and certificates it made, and
-- constructors for connection tables.  Needs nothing but the environment
-- that scripts/run-tests.sh exports; the connection and socket helpers
-- at the end load pg and LuaSocket when first called.
--
--   local H = require "support.helper"
--   local conn = pg.connect(H.config { user = "trustuser" })

local getenv = os.getenv

local H = {}

H.env = {
  host = getenv "PGC_TEST_HOST" or "127.0.0.1",
  port = math.tointeger(tonumber(getenv "PGC_TEST_PORT")),
  plain_port = math.tointeger(tonumber(getenv "PGC_TEST_PLAIN_PORT")),
  socket_dir = getenv "PGC_TEST_SOCKET_DIR",
  plain_socket_dir = getenv "PGC_TEST_PLAIN_SOCKET_DIR",
  db = getenv "PGC_TEST_DB" or "pgtest",
  certs = getenv "PGC_TEST_CERTS",
  dir = getenv "PGC_TEST_DIR",
}

-- The roles scripts/pgtest.sh creates with a password.
H.passwords = {
  scramuser = "scram-pass",
  md5user = "md5-pass",
  pwuser = "pw-pass",
}

-- Returns the full path of file name in the certificate directory.
function H.certs(name)
  assert(H.env.certs, "PGC_TEST_CERTS is not set: run the specs with scripts/run-tests.sh")
  return H.env.certs .. "/" .. name
end

local function file_exists(path)
  local f = io.open(path, "r")
  if f then
    f:close()
    return true
  end
  return false
end

-- Returns a new table holding the entries of base, then those of
-- overrides on top; neither argument is changed.
local function merged(base, overrides)
  local result = {}
  for k, v in pairs(base) do
    result[k] = v
  end
  for k, v in pairs(overrides or {}) do
    result[k] = v
  end
  return result
end

-- Returns a new connection table for the TLS server's test database,
-- with overrides applied.
function H.config(overrides)
  return merged({ host = H.env.host, port = H.env.port, database = H.env.db }, overrides)
end

-- Returns a new connection table for the server without TLS.
function H.plain_config(overrides)
  return H.config(merged({ port = H.env.plain_port }, overrides))
end

-- Returns the certificate files for user as a table with key_file,
-- cert_file and ca_cert_file (the keys of ssl.context).  Users without
-- a client certificate get only ca_cert_file.
function H.tls_files(user)
  local files = { ca_cert_file = H.certs "ca.crt" }
  if user and file_exists(H.certs(user .. ".crt")) then
    files.cert_file = H.certs(user .. ".crt")
    files.key_file = H.certs(user .. ".key")
  end
  return files
end

-- Returns a new connection table that requires TLS, logs in as user with
-- that user's client certificate (if there is one) and password (if the
-- role has one), and trusts the test CA.  ssl_context is the plain table
-- of H.tls_files; a spec passes it through pg.ssl.context where an
-- object is wanted.
function H.tls_config(user, overrides)
  local base = {
    user = user,
    password = H.passwords[user],
    ssl = true,
    ssl_context = H.tls_files(user),
  }
  return H.config(merged(base, overrides))
end

-- Opens a connection with pg.connect(config) and returns it; raises with
-- the library's message when the connection fails.
function H.connect(config)
  local conn, err = require("pg").connect(config)
  if not conn then
    error("could not connect: " .. tostring(err), 2)
  end
  return conn
end

-- Runs sql on conn and returns the first column of its first row (by
-- the name the server gave the column); raises when the query fails.
function H.value(conn, sql)
  local res, err = conn:query(sql)
  if not res then
    error("query failed: " .. tostring(err), 2)
  end
  return res[1][res.columns[1]]
end

-- Returns a LuaSocket TCP connection to port of the test host, with a
-- five-second timeout; raises when it cannot connect.
function H.tcp(port)
  local sock = require("socket").tcp()
  sock:settimeout(5)
  local ok, err = sock:connect(H.env.host, port)
  if not ok then
    sock:close()
    error("could not connect to port " .. tostring(port) .. ": " .. tostring(err), 2)
  end
  return sock
end

-- Returns a transport for pg.connect's socket option that passes every
-- call on to sock (a LuaSocket TCP connection) and keeps a record:
-- sent holds each piece of data the client sent, received_bytes counts
-- what came back, closed says whether close was called.
function H.recording_transport(sock)
  local transport = { sent = {}, received_bytes = 0, closed = false }

  function transport:send(data, i, j)
    local last, err, partial = sock:send(data, i, j)
    local upto = last or partial
    if upto and upto >= (i or 1) then
      self.sent[#self.sent + 1] = data:sub(i or 1, upto)
    end
    return last, err, partial
  end

  function transport:receive(n)
    local data, err, partial = sock:receive(n)
    self.received_bytes = self.received_bytes + #(data or partial or "")
    return data, err, partial
  end

  function transport:close()
    self.closed = true
    return sock:close()
  end

  -- Everything the client sent, as one string.
  function transport:sent_bytes()
    return table.concat(self.sent)
  end

  return transport
end

-- Asks a second connection, every 20 ms for up to two seconds, whether
-- the backend with process id pid still exists.  Returns true once it
-- is gone, false if it outlived the wait.
function H.backend_gone(pid)
  local socket = require "socket"
  local watcher <close> = H.connect(H.config { user = "trustuser" })
  local sql = "select count(*) from pg_stat_activity where pid = " .. math.tointeger(pid)
  for _ = 1, 100 do
    if H.value(watcher, sql) == 0 then
      return true
    end
    socket.sleep(0.02)
  end
  return false
end

-- Returns s quoted for a POSIX shell.
function H.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Makes a new empty temporary directory and returns its path.
function H.tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. H.shell_quote(dir)))
  return dir
end

-- Removes a directory made by H.tmpdir.
function H.rmdir(dir)
  os.execute("rm -rf " .. H.shell_quote(dir))
end

-- Writes text to name inside dir with the given mode (default 600) and
-- returns the path.
function H.write_file(dir, name, text, mode)
  local path = dir .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  assert(os.execute("chmod " .. (mode or "600") .. " " .. H.shell_quote(path)))
  return path
end

-- Returns the error of a connection that is expected to fail; raises if
-- it succeeds.
function H.refused(config)
  local conn, err = require("pg").connect(config)
  if conn then
    conn:close()
    error("the connection succeeded", 2)
  end
  return err
end

return H
