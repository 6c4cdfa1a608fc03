-- pg: a PostgreSQL client for Lua 5.4.
--
--   local pg = require "pg"
--   local conn = assert(pg.connect{ host = "db.example.com", user = "app",
--                                   ssl_context = pg.ssl.context{ ... } })
--   local res = assert(conn:query("select 1 as one"))
--
-- The protocol, authentication and TLS run in the C core (pg.core).  This
-- module checks options, picks the transport (the core's native socket, or
-- a socket object the caller gives) and drives the core over it.

local core = require "pg.core"
local options = require "pg.options"
local ssl = require "pg.ssl"

local type, pairs, pcall, tostring, select = type, pairs, pcall, tostring, select
local setmetatable, getmetatable = setmetatable, getmetatable
local table_pack, table_unpack = table.pack, table.unpack
local os_getenv = os.getenv

local pg = {
  _VERSION = "pg-client 0.1.0",
  null = core.null,       -- SQL NULL in results: the light userdata NULL
  ssl = ssl,
  error_mt = core.error_mt,
}

local checks = options.checks

local function check_ssl_context(v)
  local t = type(v)
  if ssl.is_context(v) or t == "function" or t == "table" then return v end
  return nil, "a context from pg.ssl.context, a function returning one, or a table of its options"
end

local function check_socket(v)
  local t = type(v)
  if t == "table" or t == "userdata" then return v end
  return nil, "a socket object"
end

-- Every option pg.connect knows, by normalised name.
local connect_spec = {
  host = checks.string,
  hostaddr = checks.string,
  port = checks.port,
  user = checks.string,
  password = checks.string,
  database = checks.string,
  application_name = checks.string,
  params = checks.table,
  ssl = checks.boolean,
  ssl_context = check_ssl_context,
  connect_timeout = checks.seconds,
  on_notice = checks.func,
  socket = check_socket,
}

-- Startup parameters that other options set; params may not set them.
local reserved_params = { user = true, database = true, client_encoding = true }

-- Resolves the ssl_context option to a context object.  Returns it, or
-- nil, err.
local function resolve_context(v)
  if type(v) == "function" then
    local ok, ctx, err = pcall(v)
    if not ok then
      if type(ctx) == "table" then return nil, ctx end
      return nil, options.error("ssl_context function failed: " .. tostring(ctx), "ssl_context")
    end
    if ctx == nil then return nil, err end
    v = ctx
  elseif type(v) == "table" and not ssl.is_context(v) then
    local ok, ctx = pcall(ssl.context, v)
    if not ok then return nil, ctx end
    v = ctx
  end
  if not ssl.is_context(v) then
    return nil, options.error("ssl_context did not produce a context from pg.ssl.context",
                              "ssl_context")
  end
  return v
end

-- Builds the table core.new_conn takes from checked options.  Returns it,
-- or nil, err.
local function core_options(o)
  local user = o.user or os_getenv("PGUSER") or os_getenv("USER") or os_getenv("LOGNAME")
  if not user or user == "" then
    return nil, options.error("no user given, and none found in the environment", "user")
  end
  local startup = {
    user = user,
    database = o.database or user,
    application_name = o.application_name or "pg-client",
    client_encoding = "UTF8",
  }
  for name, value in pairs(o.params or {}) do
    if type(name) ~= "string" or (type(value) ~= "string" and type(value) ~= "number") then
      return nil, options.error("params must map strings to strings", "params")
    end
    if reserved_params[name] then
      return nil, options.error("params may not set '" .. name .. "'; use the option "
                                  .. (name == "client_encoding" and "(UTF8 is always used)"
                                        or "'" .. name .. "'"), "params")
    end
    startup[name] = tostring(value)
  end

  local copts = { startup = startup, password = o.password, on_notice = o.on_notice }

  if o.ssl == false and o.ssl_context ~= nil then
    return nil, options.error("ssl = false contradicts the ssl_context given", "ssl")
  end
  if o.ssl or o.ssl_context ~= nil then
    local ctx, err
    if o.ssl_context ~= nil then
      ctx, err = resolve_context(o.ssl_context)
    else
      ctx, err = ssl.default_context()
    end
    if not ctx then return nil, err end
    local host = o.host or "localhost"
    copts.tls = { context = ctx, check_chain = true, host = host, sni = host }
  end
  return copts
end

---------------------------------------------------------------------------
-- Lua transports
---------------------------------------------------------------------------

-- Sends all of data over a caller's socket: LuaSocket/cosocket style
-- (send returns the last index sent) or cqueues style (write).
local function transport_send(sock, data)
  if sock.send then
    local i = 1
    while i <= #data do
      local last, err, partial = sock:send(data, i)
      if not last then
        if partial and partial >= i then
          i = partial + 1
        end
        if err ~= "timeout" or not partial or partial < i - 1 then
          return nil, err
        end
      else
        i = last + 1
      end
    end
    return true
  end
  local ok, err = sock:write(data)
  if not ok then return nil, err end
  return true
end

-- Receives n bytes (or up to n, for transports that return less).
-- Returns data, or nil, err, partial.
local function transport_receive(sock, n)
  if sock.receive then return sock:receive(n) end
  return sock:read(n)
end

-- Runs a step function of the core until it no longer asks for bytes,
-- moving bytes over the caller's socket.  Returns what the step returned.
local function drive(self, step)
  local c, sock = self._core, self._socket
  while true do
    local r = table_pack(step(c))
    local out = c:take_output()
    if out then
      local ok, err = transport_send(sock, out)
      if not ok then c:fail_io("could not send data to the server: " .. tostring(err)) end
    end
    if r[1] ~= "read" then return table_unpack(r, 1, r.n) end
    local data, err, partial = transport_receive(sock, c:read_hint())
    if data then
      c:feed(data)
    else
      if partial and partial ~= "" then c:feed(partial) end
      if err == "closed" then
        c:feed(nil)
      else
        c:fail_io("could not receive data from the server: " .. tostring(err))
      end
    end
  end
end

---------------------------------------------------------------------------
-- connections
---------------------------------------------------------------------------

local Connection = {}
Connection.__index = Connection

-- Runs sql with the simple query protocol.  Returns one result per
-- statement, or nil, err.
function Connection:query(sql)
  local c = self._core
  if self._native then return c:query_native(sql) end
  local ok, err = c:query_start(sql)
  if not ok then return nil, err end
  return drive(self, c.query_step)
end

function Connection:parameter(name) return self._core:parameter(name) end
function Connection:parameters() return self._core:parameters() end
function Connection:backend_pid() return self._core:backend_pid() end
function Connection:status() return self._core:status() end
function Connection:tls_info() return self._core:tls_info() end
function Connection:is_closed() return self._core:is_closed() end

-- Sends Terminate and closes the transport.  Idempotent.
function Connection:close()
  local c = self._core
  if c:is_closed() then return end
  local last = c:close()
  local sock = self._socket
  if sock then
    if last then pcall(transport_send, sock, last) end
    pcall(sock.close, sock)
  end
end

Connection.__close = Connection.close
Connection.__gc = Connection.close
Connection.__tostring = function(self) return tostring(self._core) end
Connection.__name = "pg.connection"

-- Opens a connection.  config is a table of options (see README).
-- Returns the connection, or nil, err.
function pg.connect(config)
  if type(config) ~= "table" then
    error("pg.connect expects a table of options, got " .. type(config), 2)
  end
  local o, err = options.check(config, connect_spec, "connection option")
  if not o then return nil, err end
  local copts
  copts, err = core_options(o)
  if not copts then return nil, err end

  local c
  c, err = core.new_conn(copts)
  if not c then return nil, err end
  local self = setmetatable({ _core = c, _socket = o.socket, _native = o.socket == nil },
                            Connection)

  local ok
  if self._native then
    local host = o.hostaddr or o.host or "localhost"
    ok, err = c:connect_native(host, o.port or 5432, o.connect_timeout)
    if ok then ok, err = c:startup_native() end
  else
    if not (o.socket.send or o.socket.write) or not (o.socket.receive or o.socket.read) then
      c:close()
      return nil, options.error("socket must have send/receive (or write/read) methods",
                                "socket")
    end
    ok, err = drive(self, c.startup_step)
  end
  if not ok then
    self:close()
    return nil, err
  end
  return self
end

-- Whether v is a connection made by pg.connect.
function pg.is_connection(v)
  return getmetatable(v) == Connection
end

return pg
