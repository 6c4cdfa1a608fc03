-- pg.options: checks and normalises the tables given to pg.connect and
-- pg.ssl.context.
--
-- Keys may be spelled the Lua way or the way the PG project's maps spell
-- them: "ssl_context" or "ssl-context", "ssl" or "ssl?".  A key is
-- normalised by turning "-" into "_" and dropping a trailing "?".  Unknown
-- keys and values of the wrong type are errors that name the key.

local core = require "pg.core"

local type, pairs, tostring, setmetatable = type, pairs, tostring, setmetatable
local math_type, string_format = math.type, string.format

local M = {}

-- Creates a config error table: kind "config", the message, and the option
-- it concerns.
function M.error(message, option, value)
  return setmetatable({ kind = "config", message = message, option = option, value = value },
                      core.error_mt)
end

-- The spelling every key is compared in.
function M.normalise_key(key)
  return (key:gsub("%-", "_"):gsub("%?$", ""))
end

-- Levenshtein distance, for "did you mean" hints on misspelt keys.
local function distance(a, b)
  local prev, cur = {}, {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    cur[0] = i
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local v = prev[j] + 1
      if cur[j - 1] + 1 < v then v = cur[j - 1] + 1 end
      if prev[j - 1] + cost < v then v = prev[j - 1] + cost end
      cur[j] = v
    end
    prev, cur = cur, prev
  end
  return prev[#b]
end

local function closest(key, spec)
  local best, best_d
  for name in pairs(spec) do
    local d = distance(key, name)
    if not best_d or d < best_d or (d == best_d and name < best) then
      best, best_d = name, d
    end
  end
  if best_d and best_d <= 2 then return best end
end

-- Type checkers: each returns the (possibly converted) value, or nil and a
-- description of what was expected.
M.checks = {}

function M.checks.string(v)
  if type(v) == "string" then return v end
  return nil, "a string"
end

function M.checks.boolean(v)
  if type(v) == "boolean" then return v end
  return nil, "a boolean"
end

function M.checks.table(v)
  if type(v) == "table" then return v end
  return nil, "a table"
end

function M.checks.func(v)
  if type(v) == "function" then return v end
  return nil, "a function"
end

-- Non-negative number of seconds; numeric strings are accepted.
function M.checks.seconds(v)
  local n = v
  if type(v) == "string" then n = tonumber(v) end
  if type(n) == "number" and n >= 0 and n == n then return n end
  return nil, "a non-negative number of seconds"
end

-- TCP port: an integer 1..65535, or a string of digits naming one.
function M.checks.port(v)
  local n = v
  if type(v) == "string" and v:match("^%d+$") then n = tonumber(v) end
  if type(n) == "number" and math_type(n) == "float" and n == math.floor(n) then
    n = math.tointeger(n)
  end
  if math_type(n) == "integer" and n >= 1 and n <= 65535 then return n end
  return nil, "an integer port number from 1 to 65535"
end

-- A checker accepting one of the given strings.
function M.checks.one_of(...)
  local valid, list = {}, table.concat({ ... }, ", ")
  for _, v in ipairs({ ... }) do valid[v] = true end
  return function(v)
    if valid[v] then return v end
    return nil, "one of " .. list
  end
end

-- Checks a table against spec (normalised key -> checker).  Returns a new
-- table with normalised keys and checked values, or nil, err.  what names
-- the table in messages ("connection option", "ssl.context option").
function M.check(tbl, spec, what)
  local out, spelt = {}, {}
  for key, value in pairs(tbl) do
    if type(key) ~= "string" then
      return nil, M.error(string_format("%s keys must be strings, got %s", what, type(key)),
                          key)
    end
    local name = M.normalise_key(key)
    local check = spec[name]
    if not check then
      local hint = closest(name, spec)
      return nil, M.error(string_format("unknown %s '%s'%s", what, key,
                                        hint and string_format(" (did you mean '%s'?)", hint)
                                          or ""), key)
    end
    local v, expected = check(value)
    if v == nil then
      return nil, M.error(string_format("%s '%s' must be %s, got %s", what, key, expected,
                                        type(value) == "string"
                                          and string_format("%q", value) or type(value)),
                          key, value)
    end
    if spelt[name] and out[name] ~= v then
      return nil, M.error(string_format("%s '%s' and '%s' are the same option with different "
                                        .. "values", what, spelt[name], key), key)
    end
    out[name], spelt[name] = v, key
  end
  return out
end

return M
