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

-- EDN reading and configuration files (see pg.edn and pg.config).
pg.edn = require "pg.edn"
pg.config = require "pg.config"

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

-- TLS protocol versions by name (any case), as the core numbers them.
local TLS_VERSIONS = { tlsv1 = 10, ["tlsv1.1"] = 11, ["tlsv1.2"] = 12, ["tlsv1.3"] = 13 }

local function check_tls_version(v)
  if type(v) == "string" and TLS_VERSIONS[v:lower()] then return TLS_VERSIONS[v:lower()] end
  return nil, "one of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3"
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
  ssl_mode = checks.one_of("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
  ssl_sni = checks.boolean,
  ssl_min_protocol = check_tls_version,
  ssl_max_protocol = check_tls_version,
  ssl_priority = checks.string,
  ssl_negotiation = checks.one_of("postgres", "direct"),
  channel_binding = checks.one_of("disable", "prefer", "require"),
  connect_timeout = checks.seconds,
  timeout = checks.seconds,
  on_notice = checks.func,
  socket = check_socket,
  rows = checks.one_of("maps", "arrays"),
  numeric = checks.one_of("string", "number"),
  json = checks.one_of("decode", "text"),
  options = checks.string,
  passfile = checks.string,
  service = checks.string,
  env = checks.boolean,
}

local resolve_config

-- Startup parameters that other options set; params may not set them.
local reserved_params = {
  user = true, database = true, client_encoding = true, application_name = true,
  options = true,
}

-- Resolves the ssl_context option to a context object.  Returns it, or
-- nil, err.
local function resolve_context(v)
  if type(v) == "function" then
    local ok, ctx, err = pcall(v)
    if not ok then
      if type(ctx) == "table" then return nil, ctx end
      return nil, options.error("ssl_context function failed: " .. tostring(ctx), "ssl_context")
    end
    if ctx == nil then
      if type(err) ~= "table" then
        err = options.error("ssl_context function returned no context"
                              .. (err ~= nil and ": " .. tostring(err) or ""), "ssl_context")
      end
      return nil, err
    end
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

-- What each ssl_mode does, with libpq's meanings: tls, TLS is tried
-- first; retry_tls ("allow"), a plain connection that the server rejects
-- is tried again with TLS; allow_plain ("prefer"), a server that answers
-- 'N' gets a plain startup; check_chain and check_host, what is verified
-- whatever the context.  In every TLS mode the chain is verified when the
-- context has an explicit CA.
local SSL_MODES = {
  disable = {},
  allow = { retry_tls = true },
  prefer = { tls = true, allow_plain = true },
  require = { tls = true },
  ["verify-ca"] = { tls = true, check_chain = true },
  ["verify-full"] = { tls = true, check_chain = true, check_host = true },
}

-- The ssl_mode in force: the one given, else "verify-full" when ssl = true
-- or an ssl_context asks for TLS, else "disable".  Returns it, or nil, err
-- for options that contradict each other.
local function effective_ssl_mode(o)
  local mode = o.ssl_mode
  if o.ssl == false then
    if o.ssl_context ~= nil then
      return nil, options.error("ssl = false contradicts the ssl_context given", "ssl")
    end
    if mode ~= nil and mode ~= "disable" then
      return nil, options.error("ssl = false contradicts ssl_mode '" .. mode .. "'", "ssl")
    end
    return "disable"
  end
  if mode == nil then
    mode = (o.ssl or o.ssl_context ~= nil) and "verify-full" or "disable"
  end
  local m = SSL_MODES[mode]
  if o.ssl_negotiation == "direct" and (not m.tls or m.allow_plain) then
    return nil, options.error("ssl_negotiation 'direct' needs ssl_mode 'require', 'verify-ca' "
                                .. "or 'verify-full', not '" .. mode .. "'", "ssl_negotiation")
  end
  local low, high = o.ssl_min_protocol or 12, o.ssl_max_protocol or 13
  if low > high then
    return nil, options.error("ssl_min_protocol is higher than ssl_max_protocol (by default "
                                .. "TLSv1.2 and TLSv1.3)", "ssl_min_protocol")
  end
  return mode
end

-- The tls table of core.new_conn for mode, with context ctx.
local function tls_options(o, mode, ctx)
  local m = SSL_MODES[mode]
  local host = o.host or o.hostaddr or "localhost"
  local name = host:sub(1, 1) ~= "/" and host or nil
  return {
    context = ctx,
    check_chain = m.check_chain or false,
    chain_if_ca = true,
    host = m.check_host and host or nil,
    sni = o.ssl_sni ~= false and name or nil,
    priority = o.ssl_priority,
    min_version = o.ssl_min_protocol,
    max_version = o.ssl_max_protocol,
    direct = o.ssl_negotiation == "direct",
    allow_plain = m.allow_plain or false,
  }
end

-- Builds the table core.new_conn takes from checked options.  Returns it
-- and, for ssl_mode "allow", the table of the TLS retry; or nil, err.
local function core_options(o)
  local user = o.user or os_getenv("USER") or os_getenv("LOGNAME")
  if not user or user == "" then
    return nil, options.error("no user given, and none found in the environment", "user")
  end
  local startup = {
    user = user,
    database = o.database or user,
    application_name = o.application_name or "pg-client",
    client_encoding = "UTF8",
    DateStyle = "ISO",
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
  if o.options ~= nil then
    startup.options = o.options
  end

  local copts = { startup = startup, password = o.password, on_notice = o.on_notice,
                  channel_binding = o.channel_binding }

  local mode, err = effective_ssl_mode(o)
  if not mode then return nil, err end
  if mode == "disable" then return copts end
  local ctx
  if o.ssl_context ~= nil then
    ctx, err = resolve_context(o.ssl_context)
  else
    ctx, err = ssl.default_context()
  end
  if not ctx then return nil, err end
  local tls = tls_options(o, mode, ctx)
  if SSL_MODES[mode].retry_tls then
    local retry = {}
    for k, v in pairs(copts) do retry[k] = v end
    retry.tls = tls
    return copts, retry
  end
  copts.tls = tls
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
      local last, err = sock:send(data, i)
      if not last then return nil, err end
      i = last + 1
    end
    return true
  end
  local ok, err = sock:write(data)
  if not ok then return nil, err end
  return true
end

-- Receives n bytes (or up to n, for transports that return less).
-- At most this many bytes are asked of a transport's receiveany.
local RECEIVE_ANY_MAX = 65536

-- Returns data, or nil, err, partial.  n bytes are sure to come; a
-- transport with receiveany (OpenResty's cosockets) is asked for what
-- has arrived instead, up to RECEIVE_ANY_MAX.
local function transport_receive(sock, n)
  if sock.receiveany then return sock:receiveany(n > RECEIVE_ANY_MAX and n or RECEIVE_ANY_MAX) end
  if sock.receive then return sock:receive(n) end
  return sock:read(n)
end

-- One turn of drive.  A step that needs bytes returns "read", how many
-- are sure to come and what to send first; one that is done returns its
-- results, and what is left to send is taken.  Sends, returns the results
-- when done, else reads and takes the next turn with the bytes (a tail
-- call: the stack does not grow).
local function drive_turn(self, step, c, sock, first, ...)
  local hint, out
  if first == "read" then
    hint, out = ...
  else
    out = c:take_output()
  end
  if out then
    local ok, err = transport_send(sock, out)
    if not ok then
      -- The step after a failure reports it; nothing more is read.
      c:fail_io("could not send data to the server: " .. tostring(err))
      if first == "read" then return step(c) end
    end
  end
  if first ~= "read" then return first, ... end
  local data, err, partial = transport_receive(sock, hint)
  if data and data ~= "" then return drive_turn(self, step, c, sock, step(c, data)) end
  -- No bytes and no error would have the loop spin: it is an error too.
  if data then err = "the transport returned no bytes" end
  if partial and partial ~= "" then c:feed(partial) end
  if err == "closed" then
    c:feed(nil)
  else
    c:fail_io("could not receive data from the server: " .. tostring(err))
  end
  return drive_turn(self, step, c, sock, step(c))
end

-- Runs a step function of the core until it no longer asks for bytes,
-- moving bytes over the caller's socket.  Returns what the step returned.
local function drive(self, step)
  local c = self._core
  return drive_turn(self, step, c, self._socket, step(c))
end

---------------------------------------------------------------------------
-- connections
---------------------------------------------------------------------------

local Connection = {}
Connection.__index = Connection

local types = require "pg.types"
pg.types = types

local has_cjson, cjson = pcall(require, "cjson")
if not has_cjson then cjson = nil end

local json_mt, bytea_mt = core.json_mt, core.bytea_mt

-- Wraps a value to be sent as json: a string is taken as JSON text as it
-- is, anything else is encoded with lua-cjson.
function pg.json(value)
  return setmetatable({ value = value }, json_mt)
end

-- Wraps a string to be sent as bytea, raw bytes.
function pg.bytea(bytes)
  if type(bytes) ~= "string" then
    error("pg.bytea expects a string, got " .. type(bytes), 2)
  end
  return setmetatable({ value = bytes }, bytea_mt)
end

-- Runs the operation queued on the core and returns what it produced.
local function run(self)
  local c = self._core
  if self._native then return c:run_native() end
  return drive(self, c.step)
end

-- The rows option ("maps" or "arrays") as the core takes it.
local function rows_flag(rows, where)
  if rows == nil then return nil end
  if rows == "arrays" then return true end
  if rows == "maps" then return false end
  error(where .. ": rows must be \"maps\" or \"arrays\", got " .. tostring(rows), 3)
end

-- Keeps the first server error inside a transaction: the error that ends
-- the transaction later (25P02) names it as its cause.
local function note_failure(self, err)
  if self._tx_failure == nil and type(err) == "table" and err.kind == "server" then
    self._tx_failure = err
  end
end

-- Returns nil, err for a failed statement, noting err in a transaction.
local function failed(self, err)
  if self._tx_depth > 0 then note_failure(self, err) end
  return nil, err
end

-- Looks up the names of types missing from results' field lists, once per
-- OID and connection.
-- Field lists known to carry every type name; results of a statement run
-- again share their field list, so the check is done once.
local named_fields = setmetatable({}, { __mode = "k" })

local function fill_type_names(self, ...)
  local nargs = select("#", ...)
  if nargs == 1 then
    local res = ...
    if type(res) ~= "table" or res.fields == nil or named_fields[res.fields] then return end
  end
  local cache, missing, n = self._type_names, {}, 0
  for i = 1, nargs do
    local res = select(i, ...)
    local fields = type(res) == "table" and res.fields or {}
    local complete = true
    for _, f in ipairs(fields) do
      if f.type == nil then complete = false end
    end
    if complete then named_fields[fields] = true end
    for _, f in ipairs(complete and {} or fields) do
      if f.type == nil then
        local name = cache[f.oid]
        if name then
          f.type = name
        elseif not missing[f.oid] then
          missing[f.oid] = true
          n = n + 1
        end
      end
    end
  end
  if n == 0 or self._core:status() == "error" then return end
  local list = {}
  for oid in pairs(missing) do list[#list + 1] = tostring(oid) end
  local c = self._core
  local ok = c:send_query("select oid, typname, typelem, typcategory from pg_type where oid in ("
                          .. table.concat(list, ",") .. ")", false)
  if not ok then return end
  local res = run(self)
  if type(res) ~= "table" then return end

  -- Array types of enums, extension types and the like are learnt here:
  -- the core decodes them from now on, and the values already received
  -- as text are decoded now.
  local learnt
  for _, row in ipairs(res) do
    cache[row.oid] = row.typname
    if row.typcategory == "A" and row.typelem ~= 0 then
      self._array_types[row.oid] = row.typelem
      learnt = learnt or {}
      learnt[row.oid] = true
    end
  end
  if learnt then
    self._config.arrays = self._array_types
    c:configure(self._config)
  end
  for i = 1, select("#", ...) do
    local r = select(i, ...)
    for col, f in ipairs(type(r) == "table" and r.fields or {}) do
      if f.type == nil then f.type = cache[f.oid] end
      if learnt and learnt[f.oid] then
        for _, row in ipairs(r) do
          local key = row[f.key] ~= nil and f.key or col
          local v = row[key]
          if type(v) == "string" then
            local decoded = c:decode_text(f.oid, v)
            if decoded ~= nil then row[key] = decoded end
          end
        end
      end
    end
  end
end

-- Returns res, a single result, with type names filled in; cheap when its
-- field list was complete already.
local function with_type_names(self, res)
  local fields = res.fields
  if fields ~= nil and not named_fields[fields] then fill_type_names(self, res) end
  return res
end

-- Returns the results of an operation, with type names filled in.
local function finish(self, ...)
  if ... == nil then
    if self._tx_depth > 0 then note_failure(self, select(2, ...)) end
    return ...
  end
  fill_type_names(self, ...)
  return ...
end

-- Resolves the type registry's names to OIDs on this connection and hands
-- the decoders to the core.  Runs when the registry changed since the
-- last time.
local function sync_types(self)
  local v = types.version()
  if self._types_version == v then return true end
  local decoders, encoders, names = {}, {}, {}
  types.each(function(key, spec)
    if type(key) == "string" then
      names[#names + 1] = key
    else
      decoders[key], encoders[key] = spec.decode, spec.encode
    end
  end)
  if #names > 0 then
    if self._core:status() == "error" then return true end
    local c = self._core
    local res, err = c:execute(false,
      "select n, to_regtype(n)::oid::int8 as oid from unnest($1::text[]) as n", names)
    if res == true then res, err = drive(self, c.step) end
    if not res then return nil, err end
    for _, row in ipairs(res) do
      if row.oid ~= pg.null then
        local found
        types.each(function(key, spec) if key == row.n then found = spec end end)
        if found then
          decoders[row.oid] = decoders[row.oid] or found.decode
          encoders[row.oid] = encoders[row.oid] or found.encode
        end
      end
    end
  end
  self._encoders = encoders
  self._has_encoders = next(encoders) ~= nil
  self._config.decoders = next(decoders) and decoders or nil
  self._core:configure(self._config)
  self._types_version = v
  self._core:types_synced(v, self._has_encoders)
  return true
end

-- Sends Close for statements collected since the last operation.
local function close_pending(self)
  local pending = self._pending_close
  if #pending == 0 or self._core:status() == "error" then return end
  self._pending_close = {}
  self._core:set_dirty(false)
  local ok = self._core:send_close(table_unpack(pending))
  if ok then run(self) end
end

-- Common preamble of every operation.  Returns true, or nil, err.
local types_state = types.state

local function prepare_op(self)
  if self._core:is_closed() then error("attempt to use a closed connection", 3) end
  if self._pending_close[1] ~= nil then close_pending(self) end
  if self._types_version ~= types_state.version then return sync_types(self) end
  return true
end

-- Runs sql with the simple query protocol.  Returns one result per
-- statement, or nil, err.  opts.rows = "arrays" gives positional rows.
function Connection:query(sql, opts)
  local ok, err = prepare_op(self)
  if not ok then return nil, err end
  ok, err = self._core:send_query(sql, rows_flag(opts and opts.rows, "query"))
  if not ok then return nil, err end
  return finish(self, run(self))
end

-- Ends an execution from what the core returned for it (res, or nil,
-- err; names_missing when a column's type name must be looked up).  The
-- fast execute functions (see set_formats) hand their results here too.
local function finish_fast(conn, res, err, names_missing)
  if res == nil then return failed(conn, err) end
  if names_missing then return with_type_names(conn, res) end
  return res
end

-- Runs one statement with $1..$n parameters through the extended
-- protocol on the unnamed statement.  Returns its result, or nil, err.
function Connection:execute(sql, ...)
  if self._pending_close[1] ~= nil or self._types_version ~= types_state.version then
    local ok, err = prepare_op(self)
    if not ok then return nil, err end
  end
  -- Over the native socket the core runs the statement at once.
  local c = self._core
  local res, err, names_missing = c:execute(nil, sql, ...)
  if res == true then res, err, names_missing = drive(self, c.step) end
  return finish_fast(self, res, err, names_missing)
end

---------------------------------------------------------------------------
-- prepared statements
---------------------------------------------------------------------------

local rolled_back_error, set_formats

local Statement = {}
Statement.__index = Statement
Statement.__name = "pg.statement"

local statement_counter = 0

-- Prepares sql as a named statement (name generated when not given).
-- opts.rows sets the row shape of its results.  Returns the statement, or
-- nil, err.
function Connection:prepare(sql, name, opts)
  if type(name) == "table" then name, opts = nil, name end
  if name ~= nil and type(name) ~= "string" then
    error("prepare: the statement name must be a string", 2)
  end
  local rows = rows_flag(opts and opts.rows, "prepare")
  if name == nil then
    statement_counter = statement_counter + 1
    name = "pgc_stmt_" .. statement_counter
  end
  local ok, err = prepare_op(self)
  if not ok then return nil, err end
  ok, err = self._core:send_prepare(name, sql)
  if not ok then return nil, err end
  local desc
  desc, err = run(self)
  if not desc then return nil, err end
  local column_oids, param_fields, param_types = {}, {}, {}
  for i, f in ipairs(desc.fields or {}) do column_oids[i] = f.oid end
  for i, oid in ipairs(desc.params) do
    param_fields[i] = { oid = oid, type = core.type_name(oid) }
  end
  fill_type_names(self, desc, { fields = param_fields })
  local column_types = {}
  for i, f in ipairs(param_fields) do param_types[i] = f.type end
  for i, f in ipairs(desc.fields or {}) do column_types[i] = f.type end
  -- The connection's default row shape is fixed: resolved here, the field
  -- is never nil, and each execution finds it in the statement itself.
  if rows == nil then rows = self._config.rows == "arrays" end
  local stmt = setmetatable({
    conn = self, name = name, sql = sql, rows = rows,
    params = param_fields, param_oids = desc.params, param_types = param_types,
    fields = desc.fields or {}, columns = desc.columns or {},
    column_oids = column_oids, column_types = column_types,
    _column_oids = column_oids, _closed = false, _nparams = #desc.params,
  }, Statement)
  set_formats(stmt)
  return stmt
end

-- Chooses the statement's result formats for the connection's decoders,
-- and gives it the fast execute: a C function that runs it at once while
-- nothing needs the preparatory work of Statement.execute (which it then
-- calls instead).
set_formats = function(self)
  local conn = self.conn
  local core = conn._core
  self._formats = core:result_formats(self._column_oids)
  self._formats_version = conn._types_version
  if math.type(self._formats_version) == "integer" then
    rawset(self, "execute", core:statement_execute(Statement.execute, finish_fast, conn,
      types_state, self.name, self.param_oids, self._formats, self.rows,
      self._formats_version, self))
  end
end

-- Runs the statement with the given parameters.  Returns its result, or
-- nil, err.
function Statement:execute(...)
  if self._closed then error("attempt to use a closed statement", 2) end
  local conn = self.conn
  -- The core checks the parameter count.
  if conn._pending_close[1] ~= nil or conn._types_version ~= types_state.version then
    local ok, err = prepare_op(conn)
    if not ok then return nil, err end
  end
  local core = conn._core
  if self._formats_version ~= conn._types_version then set_formats(self) end
  local r1, r2, r3
  if conn._has_encoders then
    local args, encoders = table_pack(...), conn._encoders
    local n = args.n
    for i = 1, n do
      local enc = encoders[self.param_oids[i]]
      if enc and args[i] ~= nil and args[i] ~= pg.null then args[i] = enc(args[i]) end
    end
    r1, r2, r3 = core:exec_prepared(self.rows, self.name, self.param_oids, self._formats,
                                    table_unpack(args, 1, n))
  else
    r1, r2, r3 = core:exec_prepared(self.rows, self.name, self.param_oids, self._formats, ...)
  end
  if r1 == true then r1, r2, r3 = drive(conn, core.step) end
  return finish_fast(conn, r1, r2, r3)
end

-- How many executions execute_many sends per round trip.  The replies to
-- one batch must fit the socket buffers while the next is being sent.
local BATCH_SIZE = 500

-- Applies the connection's registered encoders to one parameter list.
local function encode_list(encoders, oids, list, n)
  local out = {}
  for i = 1, n do
    local v, enc = list[i], encoders[oids[i]]
    if enc and v ~= nil and v ~= pg.null then v = enc(v) end
    out[i] = v
  end
  return out
end

-- Runs the statement once for each parameter list in list, many
-- executions per round trip.  All of them run in one transaction: the
-- caller's, or one of their own.  Returns one result whose rows are the
-- rows of every execution (for RETURNING) and whose affected is the sum,
-- or nil, err after rolling back.
function Statement:execute_many(list)
  if self._closed then error("attempt to use a closed statement", 2) end
  if type(list) ~= "table" then error("execute_many expects a list of parameter lists", 2) end
  local conn, oids = self.conn, self.param_oids
  local expected, total = #oids, #list
  for i = 1, total do
    local params = list[i]
    if type(params) ~= "table" then
      error("execute_many: entry " .. i .. " is not a table of parameters", 2)
    end
    local n = params.n or #params
    if n ~= expected then
      return nil, options.error(string.format(
        "statement %s expects %d parameter%s, entry %d has %d", self.name, expected,
        expected == 1 and "" or "s", i, n))
    end
  end
  local result = { columns = self.columns, fields = self.fields, affected = 0,
                   command = nil, tag = nil }
  if total == 0 then return result end
  local ok, err = prepare_op(conn)
  if not ok then return nil, err end
  local encoders = conn._encoders
  if encoders and next(encoders) then
    local encoded = {}
    for i = 1, total do encoded[i] = encode_list(encoders, oids, list[i], expected) end
    list = encoded
  end

  local own = conn._core:status() == "idle"
  if own then
    ok, err = conn:query("BEGIN")
    if not ok then return nil, err end
  end
  local rows = 0
  for first = 1, total, BATCH_SIZE do
    local last = math.min(first + BATCH_SIZE - 1, total)
    local raised
    raised, ok, err = pcall(conn._core.send_bind_many, conn._core, self.rows, self.name, oids,
                            self._column_oids, list, first, last)
    if not raised then
      -- A value that cannot be encoded: nothing of this batch was sent.
      if own then conn:query("ROLLBACK") end
      error(ok, 2)
    end
    local r = ok and table_pack(run(conn)) or { nil, err, n = 2 }
    if r[1] == nil then
      if own and not conn._core:is_closed() then conn:query("ROLLBACK") end
      if own then return nil, r[2] end
      return failed(conn, r[2])
    end
    for i = 1, r.n do
      local res = r[i]
      result.command, result.tag = res.command, res.tag
      result.affected = result.affected + (res.affected or 0)
      for j = 1, #res do
        rows = rows + 1
        result[rows] = res[j]
      end
    end
  end
  if own then
    local res
    res, err = conn:query("COMMIT")
    if not res then return nil, err end
    if res.command == "ROLLBACK" then return nil, rolled_back_error(conn) end
  end
  return result
end

-- Closes the statement on the server.  Idempotent.
function Statement:close()
  if self._closed then return true end
  self._closed = true
  local conn = self.conn
  if conn._core:is_closed() then return true end
  rawset(self, "execute", nil)
  local pending = conn._pending_close
  pending[#pending + 1] = self.name
  conn._core:set_dirty(true)
  if conn._core:status() ~= "error" then close_pending(conn) end
  return true
end

Statement.__close = Statement.close

-- A statement collected without close() is closed with the next
-- operation on its connection.
function Statement:__gc()
  if not self._closed then
    self._closed = true
    local conn = self.conn
    local pending = conn._pending_close
    pending[#pending + 1] = self.name
    conn._core:set_dirty(true)
  end
end

Statement.__tostring = function(self)
  return "pg.statement (" .. self.name .. (self._closed and ", closed)" or ")")
end

---------------------------------------------------------------------------
-- transactions
---------------------------------------------------------------------------

local Transaction = {}
Transaction.__index = Transaction
Transaction.__name = "pg.transaction"

local isolation_levels = {
  ["read committed"] = "READ COMMITTED",
  ["repeatable read"] = "REPEATABLE READ",
  ["serializable"] = "SERIALIZABLE",
  ["read uncommitted"] = "READ UNCOMMITTED",
}

-- The BEGIN statement for opts: isolation, read_only, deferrable.
local function begin_sql(opts)
  local parts = { "BEGIN" }
  if opts == nil then return "BEGIN" end
  if type(opts) ~= "table" then error("transaction options must be a table", 4) end
  for k in pairs(opts) do
    if k ~= "isolation" and k ~= "read_only" and k ~= "deferrable" then
      error("unknown transaction option '" .. tostring(k) .. "'", 4)
    end
  end
  if opts.isolation ~= nil then
    local level = isolation_levels[opts.isolation]
    if not level then
      error("unknown isolation level '" .. tostring(opts.isolation)
              .. "' (read committed, repeatable read, serializable)", 4)
    end
    parts[#parts + 1] = "ISOLATION LEVEL " .. level
  end
  if opts.read_only ~= nil then
    parts[#parts + 1] = opts.read_only and "READ ONLY" or "READ WRITE"
  end
  if opts.deferrable ~= nil then
    parts[#parts + 1] = opts.deferrable and "DEFERRABLE" or "NOT DEFERRABLE"
  end
  return table.concat(parts, " ", 1, 1) .. (#parts > 1 and " "
    .. table.concat(parts, ", ", 2) or "")
end

-- Starts a transaction (BEGIN), or a savepoint inside one.  Returns a
-- transaction object with commit and rollback; closing it (<close>)
-- rolls back unless it was committed.  Returns nil, err on failure.
function Connection:begin(opts)
  local depth = self._tx_depth
  local sql
  if depth == 0 then
    sql = begin_sql(opts)
  else
    if opts ~= nil and next(opts) ~= nil then
      error("options apply to the outermost transaction only", 2)
    end
    sql = "SAVEPOINT pgc_savepoint_" .. depth
  end
  local ok, err = self:query(sql)
  if not ok then return nil, err end
  if depth == 0 then self._tx_failure = nil end
  self._tx_depth = depth + 1
  return setmetatable({ conn = self, depth = depth + 1, done = false }, Transaction)
end

-- Checks that tx may end now.
local function check_ending(tx)
  if tx.done then error("the transaction has already ended", 3) end
  if tx.conn._tx_depth ~= tx.depth then
    error("an inner transaction is still open", 3)
  end
end

-- Marks tx ended; returns its connection and, for a nested one, its
-- savepoint's name.
local function end_tx(tx)
  check_ending(tx)
  tx.done = true
  local depth = tx.depth - 1
  tx.conn._tx_depth = depth
  if depth == 0 then return tx.conn end
  return tx.conn, "pgc_savepoint_" .. depth
end

-- The error of a commit that the server turned into a rollback, with the
-- statement's error that caused it as its cause (when it came through
-- this connection).  Forgets that error.
rolled_back_error = function(conn)
  local cause = conn._tx_failure
  conn._tx_failure = nil
  local message = "the transaction was rolled back because a statement in it failed"
  if cause then message = message .. " (" .. tostring(cause) .. ")" end
  return setmetatable({ kind = "server", code = "25P02", severity = "ERROR",
    message = message, cause = cause }, core.error_mt)
end

-- Commits (or releases the savepoint).  Returns true, or nil, err; a
-- transaction in which a statement failed is rolled back and reported.
function Transaction:commit()
  local conn, sp = end_tx(self)
  if self.depth > 1 and conn:status() == "error" then
    local ok, err = conn:query("ROLLBACK TO SAVEPOINT " .. sp .. "; RELEASE SAVEPOINT " .. sp)
    if not ok then return nil, err end
    return nil, rolled_back_error(conn)
  end
  local res, err = conn:query(self.depth == 1 and "COMMIT" or "RELEASE SAVEPOINT " .. sp)
  if not res then return nil, err end
  if res.command == "ROLLBACK" then return nil, rolled_back_error(conn) end
  if self.depth == 1 then conn._tx_failure = nil end
  return true
end

-- Rolls back (to the savepoint, for a nested transaction).  Returns
-- true, or nil, err.
function Transaction:rollback()
  local conn, sp = end_tx(self)
  local res, err = conn:query(self.depth == 1 and "ROLLBACK"
                              or "ROLLBACK TO SAVEPOINT " .. sp .. "; RELEASE SAVEPOINT " .. sp)
  if not res then return nil, err end
  -- What failed before is undone with it.
  conn._tx_failure = nil
  return true
end

-- Rolls back unless committed; for <close> variables.
function Transaction:__close()
  if not self.done and not self.conn._core:is_closed() then
    if self.conn._tx_depth == self.depth then
      self:rollback()
    else
      self.done = true
    end
  end
end

Transaction.__tostring = function(self)
  return "pg.transaction (" .. (self.done and "ended" or "open") .. ", depth "
    .. self.depth .. ")"
end

-- Runs fn(conn) inside a transaction (a savepoint when nested).  Commits
-- when fn returns and returns fn's results (true when it returns none, or
-- only nils).
-- When fn raises, rolls back and raises the error again; when fn returns
-- nil, err, or a statement in it failed, rolls back and returns nil, err.
-- Whether any of the arguments is not nil.
local function any_value(...)
  for i = 1, select("#", ...) do
    if (select(i, ...)) ~= nil then return true end
  end
  return false
end

-- Ends tx after fn ran: ok and what follows are what pcall returned.
local function end_transaction(self, tx, ok, ...)
  if not ok then
    if not tx.done and self._tx_depth == tx.depth then pcall(tx.rollback, tx) end
    error((...), 0)
  end
  local first, second = ...
  if first == nil and second ~= nil then
    tx:rollback()
    return nil, second
  end
  local committed, err = tx:commit()
  if not committed then return nil, err end
  if first ~= nil or any_value(...) then return ... end
  return true
end

function Connection:transaction(fn, opts)
  if type(fn) ~= "function" then error("transaction expects a function", 2) end
  local tx, err = self:begin(opts)
  if not tx then return nil, err end
  return end_transaction(self, tx, pcall(fn, self))
end

-- Asks the server to cancel the statement running on this connection
-- (from another coroutine, for a connection over a caller's transport).
-- Returns true, or nil, err; the statement's own call then returns the
-- server's error 57014, unless the statement finished first.
function Connection:cancel()
  local core = self._core
  if self._native then return core:cancel() end
  return core:cancel(self._cancel_host, self._cancel_port)
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

-- Makes one connection attempt with the checked options o and the core
-- options copts.  Returns the connection, or nil, err.
local function open(o, copts)
  local c, err = core.new_conn(copts)
  if not c then return nil, err end
  local self = setmetatable({
    _core = c, _socket = o.socket, _native = o.socket == nil,
    _pending_close = {}, _tx_depth = 0, _type_names = {}, _array_types = {},
    _cancel_host = o.hostaddr or o.host or "localhost", _cancel_port = o.port or 5432,
    _config = {
      rows = o.rows, numeric = o.numeric,
      json_decode = o.json ~= "text" and cjson and cjson.decode or nil,
      json_encode = cjson and cjson.encode or nil,
    },
  }, Connection)

  local ok
  if self._native then
    local host = o.hostaddr or o.host or "localhost"
    ok, err = c:connect_native(host, o.port or 5432, o.connect_timeout, o.timeout)
    if ok then ok, err = c:startup_native() end
  else
    local sock = o.socket
    if not (sock.send or sock.write) or not (sock.receive or sock.receiveany or sock.read) then
      c:close()
      return nil, options.error("socket must have send/receive (or write/read) methods",
                                "socket")
    end
    ok, err = drive(self, c.startup_step)
  end
  if ok then
    c:configure(self._config)
    ok, err = sync_types(self)
  end
  if ok then
    -- conn:execute and conn:query go straight to the core while nothing
    -- is pending.
    self.execute = c:connection_execute(Connection.execute, finish_fast, self, types_state)
    self.query = c:connection_query(Connection.query, finish, self, types_state)
  end
  if not ok then
    self:close()
    return nil, err
  end
  return self
end

-- Whether err is the server rejecting a login while authenticating it
-- (an ErrorResponse, as for a pg_hba.conf that wants TLS): what makes
-- ssl_mode "allow" try again with TLS, as libpq does.
local function rejected_login(err)
  return type(err) == "table" and err.kind == "auth" and err.code ~= nil
end

-- Whether err is a server's 'N' to SSLRequest.
local function tls_refused(err)
  return type(err) == "table" and err.kind == "tls"
    and tostring(err.message):find("answered 'N' to SSLRequest", 1, true) ~= nil
end

local conninfo = require "pg.conninfo"

-- Turns what pg.connect was given (a table of options, a URI or a
-- key/value connection string) into checked options, filling what is not
-- given from the service file, the PG* environment variables (unless env
-- = false) and the password file, in that order of precedence, lowest
-- first.  Returns the options, or nil, err.
resolve_config = function(config)
  local given, err = config, nil
  local use_env = true
  if type(config) == "table" then
    given, err = options.check(config, connect_spec, "connection option")
    if not given then return nil, err end
    use_env = given.env ~= false
  end
  local merged
  merged, err = conninfo.resolve(given, { env = use_env })
  if not merged then
    if getmetatable(err) ~= core.error_mt then
      err = options.error(tostring(err and err.message or err), err and err.option,
                          err and err.value)
    end
    return nil, err
  end
  merged.ssl_files, merged.service_file, merged.env = nil, nil, nil
  if type(given) ~= "table" then
    return options.check(merged, connect_spec, "connection option")
  end
  -- Values from the table were checked already; check the ones that came
  -- from the environment, a service file or the password file.
  local fresh = {}
  for k, v in pairs(merged) do
    if given[k] == nil then fresh[k] = v end
  end
  fresh, err = options.check(fresh, connect_spec, "connection option")
  if not fresh then return nil, err end
  for k, v in pairs(given) do fresh[k] = v end
  return fresh
end

-- Opens a connection.  config is a table of options (see README).
-- Returns the connection, or nil, err.
function pg.connect(config)
  local kind = type(config)
  if kind ~= "table" and kind ~= "string" then
    error("pg.connect expects a table of options or a connection string, got " .. kind, 2)
  end
  local o, err = resolve_config(config)
  if not o then return nil, err end
  local copts, retry = core_options(o)
  if not copts then return nil, retry end

  local conn
  conn, err = open(o, copts)
  if conn or not retry or o.socket ~= nil or not rejected_login(err) then
    return conn, err
  end
  -- "allow": a new connection with TLS.  If the server does not do TLS
  -- either, the rejection of the plain login says best what went wrong.
  local retry_err
  conn, retry_err = open(o, retry)
  if conn then return conn end
  return nil, tls_refused(retry_err) and err or retry_err
end

-- Whether v is a connection made by pg.connect.
function pg.is_connection(v)
  return getmetatable(v) == Connection
end

return pg
