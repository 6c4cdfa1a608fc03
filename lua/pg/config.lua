-- pg.config: loads a connection table for pg.connect from a configuration file, written
-- either in EDN (path ending in .edn) or as a Lua chunk (path ending in .lua).
--
-- EDN files are read with pg.edn; the tag #pg/ssl-context turns the map after it into
-- pg.ssl.context_reader(map), a function that builds the TLS context when called.
--
-- Lua files are run as text chunks (binary chunks are refused) in an environment of their
-- own.  It holds only pairs, ipairs, next, select, type, tostring, tonumber, error,
-- assert, pcall, copies of string (without string.dump), table, math and utf8, and
-- ssl_context{...}, which plays the role of the EDN tag.  Reading any other global name
-- raises, so a chunk that reaches for os, io or require fails with a clear message.  The
-- environment limits what a chunk can reach, not how long it runs or how much memory it
-- takes: load only files you trust to that extent.
--
-- pg.ssl is required only when a file asks for a TLS context, so this module loads
-- without the compiled part of pg.

local edn = require "pg.edn"

local error, assert, pcall, type, tostring, tonumber = error, assert, pcall, type, tostring,
  tonumber
local pairs, ipairs, next, select = pairs, ipairs, next, select
local setmetatable, getmetatable, rawequal, require = setmetatable, getmetatable, rawequal,
  require
local string, table, math, utf8 = string, table, math, utf8
local loadfile, io_open = loadfile, io.open
local find, format, lower, match = string.find, string.format, string.lower, string.match

local config = {}

-- The tag that marks a TLS context in EDN files.
local SSL_CONTEXT_TAG = "pg/ssl-context"

local error_mt = {
  __name = "pg.config.error",
  __tostring = function(err) return err.message end,
}

-- Makes a config error whose message is formatted from fmt and its arguments.
local function config_error(fmt, ...)
  return setmetatable({ kind = "config", message = format(fmt, ...) }, error_mt)
end

-- Puts path in front of message unless the message already names it.
local function name_file(path, message)
  message = tostring(message)
  if find(message, path, 1, true) then
    return message
  end
  return path .. ": " .. message
end

-- Builds the TLS context reader for map, loading pg.ssl on first use.
local function ssl_context(map)
  return require("pg.ssl").context_reader(map)
end

-- Describes what a file produced in place of a map, for error messages.
local function describe(value)
  if rawequal(value, edn.null) then
    return "nil"
  end
  local mt = type(value) == "table" and getmetatable(value)
  if mt == edn.vector_mt then
    return "a vector"
  elseif mt == edn.list_mt then
    return "a list"
  elseif mt == edn.set_mt then
    return "a set"
  elseif mt == edn.symbol_mt then
    return "the symbol " .. value.symbol
  end
  return "a " .. type(value)
end

-- Reads an EDN config; returns its top-level map, or nil and a config error.
local function load_edn(path)
  local opts = { readers = { [SSL_CONTEXT_TAG] = ssl_context } }
  local value, err = edn.read_file(path, opts)
  if err then
    return nil, err
  end
  if type(value) ~= "table" or getmetatable(value) ~= nil then
    return nil, config_error("%s: a config must be a map, but the file holds %s",
      path, describe(value))
  end
  return value
end

-- Returns a shallow copy of the library table lib without the names in except.
local function copy_library(lib, except)
  local copy = {}
  for name, value in pairs(lib) do
    if not (except and except[name]) then
      copy[name] = value
    end
  end
  return copy
end

-- Builds the environment a Lua config runs in; reading a name it lacks raises.
local function sandbox()
  local env = {
    pairs = pairs, ipairs = ipairs, next = next, select = select, type = type,
    tostring = tostring, tonumber = tonumber, error = error, assert = assert, pcall = pcall,
    string = copy_library(string, { dump = true }),
    table = copy_library(table),
    math = copy_library(math),
    utf8 = copy_library(utf8),
  }

  -- Plays the role of the #pg/ssl-context tag: wraps the map in a context builder.
  function env.ssl_context(map)
    if type(map) ~= "table" then
      error("ssl_context expects a table of options, got " .. type(map), 2)
    end
    return ssl_context(map)
  end

  return setmetatable(env, {
    __index = function(_, name)
      error(format("'%s' is not available in a config file", tostring(name)), 2)
    end,
  })
end

-- Runs a Lua config; returns the table it returns, or nil and a config error.
local function load_lua(path)
  local file, open_err = io_open(path, "rb")
  if not file then
    return nil, config_error("cannot open %s", open_err)
  end
  file:close()

  local chunk, load_err = loadfile(path, "t", sandbox())
  if not chunk then
    return nil, config_error("%s", name_file(path, load_err))
  end
  local ok, result = pcall(chunk)
  if not ok then
    return nil, config_error("%s", name_file(path, result))
  end
  if type(result) ~= "table" then
    return nil, config_error("%s: a config must return a table, but it returned %s",
      path, type(result) == "nil" and "nothing" or "a " .. type(result))
  end
  return result
end

local LOADERS = { edn = load_edn, lua = load_lua }

-- Loads the connection table in the file at path, chosen by its extension (.edn or
-- .lua, in any case).  Returns the table, or nil and an error {kind = "config",
-- message} whose tostring is the message.  Raises when path is not a string.
function config.load(path)
  if type(path) ~= "string" then
    error("bad argument #1 to 'load' (string expected, got " .. type(path) .. ")", 2)
  end
  local extension = match(path, "%.([^./\\]+)$")
  local loader = extension and LOADERS[lower(extension)]
  if not loader then
    return nil, config_error("cannot load %s: unsupported file type; "
      .. "a config file must end in .edn or .lua", path)
  end
  return loader(path)
end

return config
