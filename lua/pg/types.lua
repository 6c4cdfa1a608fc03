-- pg.types: the registry of user decoders and encoders for PostgreSQL
-- types, by type name or OID.
--
--   pg.types.register("hstore", { decode = parse_hstore, encode = format_hstore })
--   pg.types.register(16385, { decode = function(text) ... end })
--
-- A decoder receives the value's text (as the server prints it) and
-- returns the Lua value; an encoder receives a Lua value and returns the
-- text to send.  Names are resolved to OIDs by each connection with
-- to_regtype(), so schema-qualified names and aliases ("integer") work; a
-- name the database does not know is ignored there.  A decoder for a
-- built-in type replaces the client's own decoding of it.
--
-- Encoders apply to parameters whose type the server has described: those
-- of prepared statements (conn:prepare).  conn:execute declares types from
-- the Lua values alone and does not consult them.

local type, error, pairs, math_type, tostring = type, error, pairs, math.type, tostring

local types = {}

-- Registered entries: key (name or OID) -> { decode = fn, encode = fn }.
local entries = {}
-- Bumped at each change, so that connections know to resolve again.
-- Kept in a table that connections read directly on every call.
local state = { version = 0 }
types.state = state

-- Registers decode and/or encode functions for a type given by name
-- (string) or OID (integer).  spec may also be a decode function alone.
-- Passing nil as spec removes the entry.
function types.register(key, spec)
  if type(key) ~= "string" and math_type(key) ~= "integer" then
    error("pg.types.register: the type must be a name or an integer OID, got "
            .. type(key), 2)
  end
  if type(spec) == "function" then spec = { decode = spec } end
  if spec ~= nil then
    if type(spec) ~= "table" then
      error("pg.types.register: expected a table {decode=, encode=} or a function", 2)
    end
    for k, v in pairs(spec) do
      if k ~= "decode" and k ~= "encode" then
        error("pg.types.register: unknown field '" .. tostring(k) .. "'", 2)
      end
      if type(v) ~= "function" then
        error("pg.types.register: " .. k .. " must be a function", 2)
      end
    end
  end
  entries[key] = spec
  state.version = state.version + 1
end

-- The current registry version.
function types.version()
  return state.version
end

-- Calls fn(key, spec) for every registered entry.
function types.each(fn)
  for key, spec in pairs(entries) do fn(key, spec) end
end

return types
