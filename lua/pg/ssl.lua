-- pg.ssl: TLS contexts, the Lua counterpart of the PG project's pg.ssl.
--
--   pg.ssl.context{key_file=, cert_file=, ca_cert_file=, key_password=,
--                  key=, cert=, ca_cert=, crl_file=}
--     builds a context (GnuTLS credentials) now, raising an error that
--     names the file at fault when something cannot be used.  key, cert
--     and ca_cert are PEM text, for secrets that live in environment
--     variables or vaults rather than in files.
--   pg.ssl.context_reader(map)
--     returns a function that builds the context from map when called;
--     pg.connect calls it at connect time.  This is what the EDN reader
--     tag #pg/ssl-context maps to.
--   pg.ssl.default_context()
--     the context of ssl = true without ssl_context: libpq's per-user
--     files under ~/.postgresql when they exist, else the system store.
--
-- Keys may be spelled key_file or "key-file".  Without ca_cert_file or
-- ca_cert the system trust store verifies the server ("system" asks for
-- it by name).

local core = require "pg.core"
local options = require "pg.options"

local type, error, getmetatable, setmetatable, next, ipairs = type, error, getmetatable,
  setmetatable, next, ipairs
local io_open, os_getenv = io.open, os.getenv

local ssl = {}

local checks = options.checks

local spec = {
  key_file = checks.string,
  cert_file = checks.string,
  ca_cert_file = checks.string,
  key_password = checks.string,
  key = checks.string,
  cert = checks.string,
  ca_cert = checks.string,
  crl_file = checks.string,
}

-- Options that say the same thing in two ways: a file, or PEM text.
local either = {
  { "key_file", "key" },
  { "cert_file", "cert" },
  { "ca_cert_file", "ca_cert" },
}

-- Checks a context map.  Returns the normalised map, or nil, err.
local function check_map(map)
  if type(map) ~= "table" then
    return nil, options.error("an ssl context is built from a table, got " .. type(map))
  end
  local m, err = options.check(map, spec, "ssl context option")
  if not m then return nil, err end
  for _, pair in ipairs(either) do
    local file, pem = pair[1], pair[2]
    if m[file] ~= nil and m[pem] ~= nil then
      return nil, options.error(file .. " and " .. pem .. " were both given; give one of them",
                                pem)
    end
  end
  local has_key = m.key_file ~= nil or m.key ~= nil
  local has_cert = m.cert_file ~= nil or m.cert ~= nil
  if has_key ~= has_cert then
    return nil, options.error(has_key and "key_file was given without cert_file"
                                or "cert_file was given without key_file",
                              has_key and "cert_file" or "key_file")
  end
  return m
end

-- Builds a context from map.  Raises an error table (kind "config" for bad
-- keys, "tls" for files that cannot be used) on failure.
function ssl.context(map)
  local m, err = check_map(map)
  if not m then error(err, 2) end
  local ctx
  ctx, err = core.new_context(m)
  if not ctx then error(err, 2) end
  return ctx
end

-- Returns a function that builds the context from map when called.  The
-- keys are checked now; the files are read when the function runs.
function ssl.context_reader(map)
  local m, err = check_map(map)
  if not m then error(err, 2) end
  return function() return ssl.context(m) end
end

-- The name the PG project gives the reader.
ssl.ssl_context_reader = ssl.context_reader

-- Whether v is a context built by ssl.context.
function ssl.is_context(v)
  local mt = getmetatable(v)
  return type(v) == "userdata" and mt ~= nil and mt.__name == "pg.ssl.context"
end

local function exists(path)
  local f = io_open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- libpq's per-user files, where they exist: returns a context map (empty
-- when there are none), or nil, err when a certificate has no key.
local function per_user_files()
  local home = os_getenv("HOME")
  local files = {}
  if not home or home == "" then return files end
  local dir = home .. "/.postgresql/"
  if exists(dir .. "postgresql.crt") then
    if not exists(dir .. "postgresql.key") then
      return nil, setmetatable({
        kind = "tls",
        message = "client certificate file '" .. dir .. "postgresql.crt' exists, but its "
          .. "private key file '" .. dir .. "postgresql.key' does not",
      }, core.error_mt)
    end
    files.cert_file = dir .. "postgresql.crt"
    files.key_file = dir .. "postgresql.key"
  end
  if exists(dir .. "root.crt") then files.ca_cert_file = dir .. "root.crt" end
  if exists(dir .. "root.crl") then files.crl_file = dir .. "root.crl" end
  return files
end

local system_context

-- The context used for ssl = true without ssl_context, as libpq does it:
-- ~/.postgresql/postgresql.crt and postgresql.key as the client
-- certificate, root.crt as the CA, root.crl as the revocation list, each
-- when it exists (HOME is read at each call).  Without root.crt the
-- system trust store verifies the server.  Returns the context, or nil,
-- err.
function ssl.default_context()
  local files, err = per_user_files()
  if not files then return nil, err end
  if next(files) ~= nil then return core.new_context(files) end
  if not system_context then
    local ctx
    ctx, err = core.new_context({})
    if not ctx then return nil, err end
    system_context = ctx
  end
  return system_context
end

return ssl
