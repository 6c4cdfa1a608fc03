-- pg.ssl: TLS contexts, the Lua counterpart of the PG project's pg.ssl.
--
--   pg.ssl.context{key_file=, cert_file=, ca_cert_file=, key_password=}
--     builds a context (GnuTLS credentials) now, raising an error that
--     names the file at fault when something cannot be used.
--   pg.ssl.context_reader(map)
--     returns a function that builds the context from map when called;
--     pg.connect calls it at connect time.  This is what the EDN reader
--     tag #pg/ssl-context maps to.
--
-- Keys may be spelled key_file or "key-file".  Without ca_cert_file the
-- system trust store verifies the server ("system" asks for it by name).

local core = require "pg.core"
local options = require "pg.options"

local type, error, getmetatable = type, error, getmetatable

local ssl = {}

local spec = {
  key_file = options.checks.string,
  cert_file = options.checks.string,
  ca_cert_file = options.checks.string,
  key_password = options.checks.string,
}

-- Checks a context map.  Returns the normalised map, or nil, err.
local function check_map(map)
  if type(map) ~= "table" then
    return nil, options.error("an ssl context is built from a table, got " .. type(map))
  end
  local m, err = options.check(map, spec, "ssl context option")
  if not m then return nil, err end
  if (m.key_file == nil) ~= (m.cert_file == nil) then
    return nil, options.error(m.key_file and "key_file was given without cert_file"
                                or "cert_file was given without key_file",
                              m.key_file and "cert_file" or "key_file")
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

local default_context

-- The context used for ssl = true without ssl_context: the system trust
-- store and no client certificate.  Built once.
function ssl.default_context()
  if not default_context then
    local ctx, err = core.new_context({})
    if not ctx then return nil, err end
    default_context = ctx
  end
  return default_context
end

return ssl
