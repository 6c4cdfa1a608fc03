-- Shared settings for the specs: where the servers started by
-- scripts/pgtest.sh listen, the passwords and certificates it made, and
-- constructors for connection tables.  Needs nothing but the environment
-- that scripts/run-tests.sh exports.
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

return H
