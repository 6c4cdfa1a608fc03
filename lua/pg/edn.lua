-- pg.edn: a reader for EDN (extensible data notation), one of the two formats pg.config
-- reads connection settings from.  Pure Lua; it uses only the standard library
-- (io.open in read_file) and nothing else from pg, so it knows no reader tags of its own
-- apart from the built-in #inst and #uuid.
--
-- How EDN values become Lua values:
--   nil             edn.null, a unique read-only table whose tostring is "edn.null".  The
--                   sentinel is used at the top level too, so a nil first result always
--                   means failure.
--   true, false     booleans.
--   "text"          Lua string (UTF-8); \uXXXX escapes, surrogate pairs included, are
--                   encoded as UTF-8.
--   \c              a string of one character: \a -> "a", \newline -> "\n",
--                   \u00e9 -> "\u{e9}".
--   42, -7, 42N     Lua integer when the value fits in 64 bits, with or without N;
--                   otherwise a string of the digits, the minus sign kept and the N
--                   dropped: 123456789012345678901234567890N -> "123456789012345678901234567890".
--   1.5, 1e3, 2M    Lua float.  M (exact precision wanted) is accepted but not kept: the
--                   value is a double like any other float.
--   :kw, :ns/kw     string without the colon: :ssl? -> "ssl?", :ns/kw -> "ns/kw".
--   sym, ns/sym     table {symbol = "ns/sym"} with metatable edn.symbol_mt; tostring gives
--                   the name and == compares names.
--   (a b), [a b]    sequence tables with metatable edn.list_mt or edn.vector_mt, so # and
--                   ipairs work as usual.
--   {k v}           plain table (no metatable) with t[k] = v; a nil value is stored as
--                   edn.null so the key stays present.  A nil key is an error.
--   #{a b}          table {[a] = true, [b] = true} with metatable edn.set_mt; a nil element
--                   is the key edn.null.
--   #inst "..."     the string unchanged, once it is checked to be an RFC 3339 date-time
--                   (1985-04-12T23:20:50.52Z or with a +hh:mm / -hh:mm offset).
--   #uuid "..."     the string in lower case, once it is checked to be 8-4-4-4-12 hex.
--   #tag value      opts.readers[tag](value), else opts.default(tag, value), else an error
--                   naming the tag.  A reader may replace #inst and #uuid.  A handler that
--                   returns nil gives edn.null; one that returns nil plus a message, or
--                   raises, makes the read fail with that message.
--
-- Caveats:
--   * Keywords, strings and characters all become strings, and Lua stores a float key with
--     an integral value under the integer, so {:a 1 "a" 2} and {1 :x 1.0 :y} are reported
--     as duplicate keys although EDN would keep both.
--   * Collections and symbols used as map keys or set elements are Lua table keys, found by
--     identity only.  Duplicates among them are still detected by value; lists and vectors
--     with the same elements count as equal, as in Clojure.
--   * Elements skipped with #_ must be well formed, but their tags are not looked up and
--     their handlers are not called.
--   * A leading UTF-8 byte order mark is ignored.  Collections, tags and discards nest at
--     most MAX_DEPTH (500) levels deep.
--   * Bytes from 0x80 up count as letters in symbols and keywords.
--   * A float beyond the range of a double, such as 1e400, becomes math.huge.
--
-- Errors: edn.read and edn.read_file return nil and a table {kind = "config", message,
-- line, column} whose tostring is the message ("line 3, column 5: ...").  read_file adds
-- the field source (the path) and puts the path in front of the message; when the file
-- cannot be opened or read, the error has no line or column.  Bad arguments raise.

local byte, char, find, format = string.byte, string.char, string.find, string.format
local match, sub, lower = string.match, string.sub, string.lower
local concat, sort = table.concat, table.sort
local utf8_char, utf8_len = utf8.char, utf8.len
local math_type = math.type
local error, pcall, type, tostring, tonumber = error, pcall, type, tostring, tonumber
local setmetatable, getmetatable, rawequal = setmetatable, getmetatable, rawequal
local ipairs, pairs = ipairs, pairs
local io_open = io.open

local edn = {}

-- Deepest nesting of collections and tagged elements a document may have.
local MAX_DEPTH = 500

-- The longest piece of source text quoted in an error message.
local MAX_QUOTE = 40

edn.null = setmetatable({}, {
  __tostring = function() return "edn.null" end,
  __newindex = function() error("edn.null is read-only", 2) end,
  __metatable = "edn.null",
})
local null = edn.null

edn.list_mt = { __name = "edn.list" }
edn.vector_mt = { __name = "edn.vector" }
edn.set_mt = { __name = "edn.set" }
edn.symbol_mt = {
  __name = "edn.symbol",
  __tostring = function(sym) return sym.symbol end,
  __eq = function(a, b)
    return getmetatable(a) == getmetatable(b) and a.symbol == b.symbol
  end,
}
local list_mt, vector_mt, set_mt, symbol_mt = edn.list_mt, edn.vector_mt, edn.set_mt,
  edn.symbol_mt

local error_mt = {
  __name = "edn.error",
  __tostring = function(err) return err.message end,
}

-- Byte values used by the scanner.
local QUOTE, BACKSLASH, HASH, COLON = 34, 92, 35, 58
local SEMICOLON, UNDERSCORE, PLUS, MINUS, DOT = 59, 95, 43, 45, 46
local OPEN_PAREN, CLOSE_PAREN = 40, 41
local OPEN_BRACKET, CLOSE_BRACKET = 91, 93
local OPEN_BRACE, CLOSE_BRACE = 123, 125

local CLOSER_OF = {
  [OPEN_PAREN] = CLOSE_PAREN, [OPEN_BRACKET] = CLOSE_BRACKET, [OPEN_BRACE] = CLOSE_BRACE,
}
local IS_CLOSER = { [CLOSE_PAREN] = true, [CLOSE_BRACKET] = true, [CLOSE_BRACE] = true }

-- A token runs until whitespace, a comma, a bracket, a quote, a semicolon or a backslash.
local TOKEN = "^[^%s,%(%)%[%]{}\"\\;]+"
local SYMBOL_CHARS = "^[%w%.%*%+!%-_%?%$%%&=<>:#\128-\255]+$"
local UTF8_CHAR = "^[%z\1-\127\194-\244][\128-\191]*"

local STRING_ESCAPES = {
  t = "\t", r = "\r", n = "\n", b = "\b", f = "\f",
  ["\\"] = "\\", ['"'] = '"', ["/"] = "/",
}

local CHARACTER_NAMES = {
  newline = "\n", ["return"] = "\r", space = " ", tab = "\t",
  formfeed = "\f", backspace = "\b",
}

local WHITESPACE_NAMES = {
  ["\n"] = "a newline", ["\r"] = "a carriage return", ["\t"] = "a tab", [" "] = "a space",
  ["\f"] = "a form feed", ["\v"] = "a vertical tab",
}

-- Marks errors raised inside the reader, so that read can tell them from bugs.
local syntax_error_mt = {}

---------------------------------------------------------------------------------------------
-- Positions and errors
---------------------------------------------------------------------------------------------

-- Returns the 1-based line and column of byte offset pos in text.  Columns count
-- characters, not bytes, as far as the line is valid UTF-8.
local function line_and_column(text, pos)
  local line, line_start = 1, 1
  while true do
    local nl = find(text, "\n", line_start, true)
    if not nl or nl >= pos then
      break
    end
    line, line_start = line + 1, nl + 1
  end
  local width = utf8_len(text, line_start, pos - 1) or (pos - line_start)
  return line, width + 1
end

-- Formats the position of byte offset pos as "line L, column C".
local function where(ctx, pos)
  local line, column = line_and_column(ctx.text, pos)
  return format("line %d, column %d", line, column)
end

-- Describes what the scanner sees at pos, for "but found ..." in messages.
local function found_at(ctx, pos)
  local text = ctx.text
  if pos > #text then
    return "end of input"
  end
  local ch = match(text, UTF8_CHAR, pos) or sub(text, pos, pos)
  return WHITESPACE_NAMES[ch] or format("'%s'", ch)
end

-- Quotes source text from start to stop (inclusive), shortened when long.
local function quote(ctx, start, stop)
  local text = sub(ctx.text, start, stop)
  if #text > MAX_QUOTE then
    text = sub(text, 1, MAX_QUOTE) .. "..."
  end
  return text
end

-- Raises a syntax error at byte offset pos; read turns it into nil, err.
local function fail(pos, fmt, ...)
  error(setmetatable({ pos = pos, text = format(fmt, ...) }, syntax_error_mt), 0)
end

-- Makes the error table handed to callers.
local function new_error(message, line, column)
  return setmetatable({ kind = "config", message = message, line = line, column = column },
    error_mt)
end

---------------------------------------------------------------------------------------------
-- Symbols, numbers, built-in tags
---------------------------------------------------------------------------------------------

-- Tells whether p is a valid symbol without a slash: symbol characters only, not starting
-- with a digit, ':' or '#', and no digit right after a leading '+', '-' or '.'.
local function valid_symbol_part(p)
  if not find(p, SYMBOL_CHARS) then
    return false
  end
  local c1, c2 = byte(p, 1, 2)
  if (c1 >= 48 and c1 <= 57) or c1 == COLON or c1 == HASH then
    return false
  end
  if (c1 == PLUS or c1 == MINUS or c1 == DOT) and c2 and c2 >= 48 and c2 <= 57 then
    return false
  end
  return true
end

-- Tells whether s is a valid EDN symbol: "/" alone, a name, or prefix/name.
local function valid_symbol(s)
  if s == "/" then
    return true
  end
  local prefix, name = match(s, "^([^/]*)/(.*)$")
  if not prefix then
    return valid_symbol_part(s)
  end
  return prefix ~= "" and name ~= "" and not find(name, "/", 1, true)
    and valid_symbol_part(prefix) and valid_symbol_part(name)
end

-- Converts a number token to its Lua value; returns nil when the token is not a number
-- by EDN's grammar (leading zeros, a bare '.', a missing exponent...).
local function parse_number(tok)
  local sign, digits, rest = match(tok, "^([+-]?)(%d+)(.*)$")
  if not digits or (#digits > 1 and byte(digits) == 48) then
    return nil
  end

  if rest == "" or rest == "N" then
    local n = tonumber(sign .. digits)
    if math_type(n) == "integer" then
      return n
    end
    return (sign == "-" and "-" or "") .. digits
  end

  local body, exact = match(rest, "^(.-)(M?)$")
  local numeral = sub(tok, 1, #tok - #exact)
  if body == "" then
    return tonumber(numeral .. ".0")
  end
  if find(body, "^%.%d+$") or find(body, "^[eE][+-]?%d+$")
    or find(body, "^%.%d+[eE][+-]?%d+$") then
    return tonumber(numeral) + 0.0
  end
  return nil
end

-- Days in each month of a common year.
local MONTH_DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

-- Checks that s is an RFC 3339 date-time; returns s, or nil and the reason.
local function read_inst(s)
  if type(s) ~= "string" then
    return nil, "#inst expects a string"
  end
  local y, mo, d, h, mi, sec, rest =
    match(s, "^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then
    return nil, format("#inst expects an RFC 3339 date-time such as "
      .. "1985-04-12T23:20:50.52Z but found %q", s)
  end
  local offset = match(rest, "^%.%d+(.*)$") or rest
  local oh, om
  if offset ~= "Z" and offset ~= "z" then
    oh, om = match(offset, "^[+-](%d%d):(%d%d)$")
    if not oh then
      return nil, format("#inst %q needs a time zone: Z or +hh:mm / -hh:mm", s)
    end
  end

  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  local days = MONTH_DAYS[mo]
  if mo == 2 and (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) then
    days = 29
  end
  if not days or d < 1 or d > days or tonumber(h) > 23 or tonumber(mi) > 59
    or tonumber(sec) > 60 or (oh and (tonumber(oh) > 23 or tonumber(om) > 59)) then
    return nil, format("#inst %q is not a valid date and time", s)
  end
  return s
end

-- Checks that s is a UUID in 8-4-4-4-12 hex form; returns it in lower case, or nil and
-- the reason.
local function read_uuid(s)
  if type(s) ~= "string"
    or not find(s, "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$")
  then
    return nil, format("#uuid expects a string of the form "
      .. "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx but found %s",
      type(s) == "string" and format("%q", s) or "a " .. type(s))
  end
  return lower(s)
end

local BUILTIN_TAGS = { inst = read_inst, uuid = read_uuid }

---------------------------------------------------------------------------------------------
-- Equality of keys
---------------------------------------------------------------------------------------------

-- Tells whether v is a table this read built (collection or symbol), whose value rather
-- than identity decides whether two keys are the same.
local function is_built(ctx, v)
  local mt = getmetatable(v)
  return ctx.maps[v] or mt == list_mt or mt == vector_mt or mt == set_mt or mt == symbol_mt
end

-- Returns a string that is equal for two values exactly when they are the same EDN value
-- (within the mapping above).  Tables the reader did not build are told apart by identity.
local function canonical(ctx, v)
  local t = type(v)
  if t == "string" then
    return format("%q", v)
  elseif t == "number" then
    return math_type(v) == "integer" and tostring(v) or format("%a", v)
  elseif t == "boolean" then
    return tostring(v)
  elseif rawequal(v, null) then
    return "nil"
  end

  if t ~= "table" or not is_built(ctx, v) then
    local id = ctx.ids[v]
    if not id then
      ctx.id_count = ctx.id_count + 1
      id = "@" .. ctx.id_count
      ctx.ids[v] = id
    end
    return id
  end

  local mt = getmetatable(v)
  if mt == symbol_mt then
    return "'" .. v.symbol
  end
  local parts = {}
  if mt == list_mt or mt == vector_mt then
    for i, item in ipairs(v) do
      parts[i] = canonical(ctx, item)
    end
    return "[" .. concat(parts, " ") .. "]"
  end
  for key, value in pairs(v) do
    if mt == set_mt then
      parts[#parts + 1] = canonical(ctx, key)
    else
      parts[#parts + 1] = canonical(ctx, key) .. " " .. canonical(ctx, value)
    end
  end
  sort(parts)
  return (mt == set_mt and "#{" or "{") .. concat(parts, ", ") .. "}"
end

-- Records key in seen; returns false when an equal key was recorded before.
local function remember_key(ctx, seen, key)
  if type(key) == "table" and not rawequal(key, null) and is_built(ctx, key) then
    key = canonical(ctx, key)
    if seen.built[key] then
      return false
    end
    seen.built[key] = true
    return true
  end
  if seen.plain[key] then
    return false
  end
  seen.plain[key] = true
  return true
end

---------------------------------------------------------------------------------------------
-- The reader
---------------------------------------------------------------------------------------------

local read_element

-- Moves ctx.pos past whitespace, commas, comments and #_ discarded elements.
local function skip(ctx)
  local text = ctx.text
  local pos = ctx.pos
  while true do
    local _, stop = find(text, "^[%s,]*", pos)
    pos = stop + 1
    local c = byte(text, pos)
    if c == SEMICOLON then
      local nl = find(text, "\n", pos, true)
      pos = nl and nl + 1 or #text + 1
    elseif c == HASH and byte(text, pos + 1) == UNDERSCORE then
      ctx.pos = pos + 2
      ctx.depth = ctx.depth + 1
      if ctx.depth > MAX_DEPTH then
        fail(pos, "elements nested deeper than %d levels", MAX_DEPTH)
      end
      skip(ctx)
      local at = ctx.pos
      local next_c = byte(text, at)
      if not next_c or IS_CLOSER[next_c] then
        fail(at, "expected an element to discard after #_ but found %s", found_at(ctx, at))
      end
      read_element(ctx, true)
      ctx.depth = ctx.depth - 1
      pos = ctx.pos
    else
      ctx.pos = pos
      return
    end
  end
end

-- Skips to the next element, failing with "expected <what>" at the end of input.
local function skip_to_element(ctx, what)
  skip(ctx)
  if ctx.pos > #ctx.text then
    fail(ctx.pos, "expected %s but found end of input", what)
  end
end

-- Reads a string literal whose opening quote is at start; returns the Lua string.
local function read_string(ctx, start)
  local text = ctx.text
  local parts, n = {}, 0
  local pos = start + 1
  while true do
    local s = find(text, '["\\]', pos)
    if not s then
      fail(#text + 1, "unterminated string starting at %s", where(ctx, start))
    end
    if s > pos then
      n = n + 1
      parts[n] = sub(text, pos, s - 1)
    end
    if byte(text, s) == QUOTE then
      ctx.pos = s + 1
      return concat(parts)
    end

    local e = sub(text, s + 1, s + 1)
    local piece
    if e == "u" then
      local hex = match(text, "^%x%x%x%x", s + 2)
      if not hex then
        fail(s, "expected four hex digits after \\u but found %s", found_at(ctx, s + 2))
      end
      local cp = tonumber(hex, 16)
      pos = s + 6
      if cp >= 0xD800 and cp <= 0xDBFF then
        local low = match(text, "^\\u([dD][c-fC-F]%x%x)", pos)
        if not low then
          fail(s, "lone surrogate \\u%s: a high surrogate must be followed by "
            .. "a low one (\\uDC00 to \\uDFFF)", hex)
        end
        cp = 0x10000 + (cp - 0xD800) * 0x400 + (tonumber(low, 16) - 0xDC00)
        pos = pos + 6
      elseif cp >= 0xDC00 and cp <= 0xDFFF then
        fail(s, "lone surrogate \\u%s: a low surrogate must follow a high one", hex)
      end
      piece = utf8_char(cp)
    elseif e == "" then
      fail(#text + 1, "unterminated string starting at %s", where(ctx, start))
    else
      piece = STRING_ESCAPES[e]
      if not piece then
        fail(s, "unknown escape \\%s in string", match(text, UTF8_CHAR, s + 1))
      end
      pos = s + 2
    end
    n = n + 1
    parts[n] = piece
  end
end

-- Reads a character literal whose backslash is at start; returns a one-character string.
local function read_character(ctx, start)
  local text = ctx.text
  local first = match(text, UTF8_CHAR, start + 1)
  if not first or find(first, "^%s") then
    fail(start, "expected a character after \\ but found %s", found_at(ctx, start + 1))
  end
  local name = first
  if not find(first, '^[%(%)%[%]{}"\\;,]') then
    name = first .. (match(text, TOKEN, start + 1 + #first) or "")
  end
  ctx.pos = start + 1 + #name

  if utf8_len(name) == 1 then
    return name
  end
  local named = CHARACTER_NAMES[name]
  if named then
    return named
  end
  local hex = match(name, "^u(%x%x%x%x)$")
  if hex then
    local cp = tonumber(hex, 16)
    if cp >= 0xD800 and cp <= 0xDFFF then
      fail(start, "character \\u%s is a lone surrogate", hex)
    end
    return utf8_char(cp)
  end
  fail(start, "unsupported character \\%s", quote(ctx, start + 1, ctx.pos - 1))
end

-- Reads the elements up to the closing bracket of the collection opened at start.
-- Returns the elements and, for error messages, where each starts and ends.
local function read_elements(ctx, start, kind, discarding)
  local text = ctx.text
  local opener = byte(text, start)
  local closer = CLOSER_OF[opener]
  local items, starts, stops, n = {}, {}, {}, 0

  ctx.depth = ctx.depth + 1
  if ctx.depth > MAX_DEPTH then
    fail(start, "collections nested deeper than %d levels", MAX_DEPTH)
  end
  while true do
    skip(ctx)
    local pos = ctx.pos
    local c = byte(text, pos)
    if c == closer then
      ctx.pos = pos + 1
      break
    elseif not c then
      fail(pos, "unterminated %s starting at %s: expected '%s' but found end of input",
        kind, where(ctx, start), char(closer))
    elseif IS_CLOSER[c] then
      fail(pos, "expected '%s' to close the %s starting at %s but found '%s'",
        char(closer), kind, where(ctx, start), char(c))
    end
    n = n + 1
    starts[n] = pos
    items[n] = read_element(ctx, discarding)
    stops[n] = ctx.pos - 1
  end
  ctx.depth = ctx.depth - 1
  return items, starts, stops, n
end

-- Reads a list or vector opened at start.
local function read_sequence(ctx, start, kind, mt, discarding)
  local items = read_elements(ctx, start, kind, discarding)
  return setmetatable(items, mt)
end

-- Reads a map opened at start; fails on an odd number of forms, a nil key or a
-- duplicate key.
local function read_map(ctx, start, discarding)
  local items, starts, stops, n = read_elements(ctx, start, "map", discarding)
  if n % 2 == 1 then
    fail(start, "map literal must contain an even number of forms, found %d", n)
  end
  if discarding then
    return null
  end

  local map, seen = {}, { plain = {}, built = {} }
  for i = 1, n, 2 do
    local key = items[i]
    if rawequal(key, null) then
      fail(starts[i], "map key cannot be nil")
    end
    if not remember_key(ctx, seen, key) then
      fail(starts[i], "duplicate map key %s", quote(ctx, starts[i], stops[i]))
    end
    map[key] = items[i + 1]
  end
  ctx.maps[map] = true
  return map
end

-- Reads a set whose '#' is at start; fails on a duplicate element.
local function read_set(ctx, start, discarding)
  local items, starts, stops, n = read_elements(ctx, start + 1, "set", discarding)
  if discarding then
    return null
  end

  local set, seen = {}, { plain = {}, built = {} }
  for i = 1, n do
    if not remember_key(ctx, seen, items[i]) then
      fail(starts[i], "duplicate set element %s", quote(ctx, starts[i], stops[i]))
    end
    set[items[i]] = true
  end
  return setmetatable(set, set_mt)
end

-- Calls a tag handler; returns its value, edn.null for nil, and fails (at the tag's
-- position) when the handler raises or returns nil and a message.
local function call_handler(start, tag, handler, ...)
  local ok, result, message = pcall(handler, ...)
  if not ok then
    fail(start, "reader for #%s failed: %s", tag, tostring(result))
  end
  if result == nil then
    if message ~= nil then
      fail(start, "reader for #%s failed: %s", tag, tostring(message))
    end
    return null
  end
  return result
end

-- Reads a tagged element whose '#' is at start and applies the tag's handler.
local function read_tagged(ctx, start, discarding)
  local text = ctx.text
  local tag = match(text, TOKEN, start + 1)
  if not tag or not find(tag, "^[%a\128-\255]") then
    fail(start, "expected '{', '_' or a tag name after '#' but found %s",
      found_at(ctx, start + 1))
  elseif not valid_symbol(tag) or tag == "/" then
    fail(start, "invalid tag #%s", tag)
  end
  ctx.pos = start + 1 + #tag

  ctx.depth = ctx.depth + 1
  if ctx.depth > MAX_DEPTH then
    fail(start, "elements nested deeper than %d levels", MAX_DEPTH)
  end
  skip_to_element(ctx, "an element after #" .. tag)
  local value_pos = ctx.pos
  if IS_CLOSER[byte(text, value_pos)] then
    fail(value_pos, "expected an element after #%s but found %s", tag,
      found_at(ctx, value_pos))
  end
  local value = read_element(ctx, discarding)
  ctx.depth = ctx.depth - 1
  if discarding then
    return null
  end

  local reader = ctx.readers[tag]
  if reader then
    return call_handler(start, tag, reader, value)
  end
  local builtin = BUILTIN_TAGS[tag]
  if builtin then
    local result, reason = builtin(value)
    if not result then
      fail(value_pos, "%s", reason)
    end
    return result
  end
  if ctx.default then
    return call_handler(start, tag, ctx.default, tag, value)
  end
  fail(start, "unknown tag #%s", tag)
end

-- Reads a keyword whose ':' is at start; returns its name without the colon.
local function read_keyword(ctx, start)
  local name = match(ctx.text, TOKEN, start + 1)
  if not name or byte(name) == COLON or name == "/" or not valid_symbol(name) then
    fail(start, "invalid keyword %s", quote(ctx, start, start + (name and #name or 0)))
  end
  ctx.pos = start + 1 + #name
  return name
end

-- Reads a number, nil, true, false or a symbol starting at start.
local function read_token(ctx, start)
  local text = ctx.text
  local tok = match(text, TOKEN, start)
  ctx.pos = start + #tok

  local c1, c2 = byte(tok, 1, 2)
  if (c1 >= 48 and c1 <= 57)
    or ((c1 == PLUS or c1 == MINUS) and c2 and c2 >= 48 and c2 <= 57) then
    local n = parse_number(tok)
    if n == nil then
      fail(start, "invalid number %s", quote(ctx, start, ctx.pos - 1))
    end
    return n
  end

  if tok == "nil" then
    return null
  elseif tok == "true" then
    return true
  elseif tok == "false" then
    return false
  elseif valid_symbol(tok) then
    return setmetatable({ symbol = tok }, symbol_mt)
  end

  local bad = find(tok, "[^%w%.%*%+!%-_%?%$%%&=<>:#/\128-\255]")
  if bad then
    fail(start + bad - 1, "unexpected character %s", found_at(ctx, start + bad - 1))
  end
  fail(start, "invalid symbol %s", quote(ctx, start, ctx.pos - 1))
end

-- Reads the element starting at ctx.pos, which skip has left on a non-blank character.
-- When discarding, the element is checked but tag handlers are not called.
function read_element(ctx, discarding)
  local text = ctx.text
  local pos = ctx.pos
  local c = byte(text, pos)

  if c == QUOTE then
    return read_string(ctx, pos)
  elseif c == OPEN_BRACKET then
    ctx.pos = pos + 1
    return read_sequence(ctx, pos, "vector", vector_mt, discarding)
  elseif c == OPEN_PAREN then
    ctx.pos = pos + 1
    return read_sequence(ctx, pos, "list", list_mt, discarding)
  elseif c == OPEN_BRACE then
    ctx.pos = pos + 1
    return read_map(ctx, pos, discarding)
  elseif c == HASH then
    if byte(text, pos + 1) == OPEN_BRACE then
      ctx.pos = pos + 2
      return read_set(ctx, pos, discarding)
    end
    return read_tagged(ctx, pos, discarding)
  elseif c == COLON then
    return read_keyword(ctx, pos)
  elseif c == BACKSLASH then
    return read_character(ctx, pos)
  elseif IS_CLOSER[c] then
    fail(pos, "unexpected '%s'", char(c))
  end
  return read_token(ctx, pos)
end

-- Reads the one element of ctx.text; only blanks, comments and discards may follow it.
local function read_document(ctx)
  local text = ctx.text
  local valid, bad = utf8_len(text)
  if not valid then
    fail(bad, "invalid UTF-8 byte 0x%02X", byte(text, bad))
  end
  if sub(text, 1, 3) == "\239\187\191" then
    ctx.pos = 4
  end

  skip_to_element(ctx, "an element")
  local value = read_element(ctx, false)
  skip(ctx)
  if ctx.pos <= #text then
    fail(ctx.pos, "expected end of input after the element but found %s",
      found_at(ctx, ctx.pos))
  end
  return value
end

---------------------------------------------------------------------------------------------
-- Public functions
---------------------------------------------------------------------------------------------

-- Tells whether f can be called.
local function callable(f)
  if type(f) == "function" then
    return true
  end
  local mt = getmetatable(f)
  return type(mt) == "table" and mt.__call ~= nil
end

-- Checks the options of read and read_file; returns a message describing the misuse, or
-- nil when they are fine.
local function check_options(opts)
  if opts == nil then
    return nil
  elseif type(opts) ~= "table" then
    return "options must be a table, got " .. type(opts)
  end
  local readers = opts.readers
  if readers ~= nil then
    if type(readers) ~= "table" then
      return "options.readers must be a table, got " .. type(readers)
    end
    for tag, reader in pairs(readers) do
      if type(tag) ~= "string" then
        return "options.readers keys must be tag names (strings), got " .. type(tag)
      elseif not callable(reader) then
        return format("options.readers[%q] must be a function, got %s", tag, type(reader))
      end
    end
  end
  if opts.default ~= nil and not callable(opts.default) then
    return "options.default must be a function, got " .. type(opts.default)
  end
  return nil
end

-- Reads text after the options have been checked; returns the value or nil, err.
local function read_text(text, opts)
  local ctx = {
    text = text, pos = 1, depth = 0,
    readers = opts and opts.readers or {}, default = opts and opts.default,
    maps = {}, ids = {}, id_count = 0,
  }
  local ok, result = pcall(read_document, ctx)
  if ok then
    return result
  end
  if getmetatable(result) ~= syntax_error_mt then
    error(result, 0)
  end
  local line, column = line_and_column(text, result.pos)
  return nil, new_error(format("line %d, column %d: %s", line, column, result.text),
    line, column)
end

-- Reads one EDN element from the string text.  opts (optional) holds readers, a table
-- from tag names to functions called with the tagged value, and default, a function
-- called as default(tag, value) for tags without a reader.  Returns the Lua value (see
-- the mapping at the top of this file), or nil and an error table.  Raises when text is
-- not a string or opts is malformed.
function edn.read(text, opts)
  if type(text) ~= "string" then
    error("bad argument #1 to 'read' (string expected, got " .. type(text) .. ")", 2)
  end
  local misuse = check_options(opts)
  if misuse then
    error("bad argument #2 to 'read' (" .. misuse .. ")", 2)
  end
  return read_text(text, opts)
end

-- Reads one EDN element from the file at path, with the same options and results as
-- edn.read.  A file that cannot be opened or read gives nil and an error naming the path
-- and the system's reason; syntax errors carry the path in message and in err.source.
function edn.read_file(path, opts)
  if type(path) ~= "string" then
    error("bad argument #1 to 'read_file' (string expected, got " .. type(path) .. ")", 2)
  end
  local misuse = check_options(opts)
  if misuse then
    error("bad argument #2 to 'read_file' (" .. misuse .. ")", 2)
  end

  local file, open_err = io_open(path, "rb")
  if not file then
    local err = new_error("cannot open " .. open_err)
    err.source = path
    return nil, err
  end
  local text, read_err = file:read("a")
  file:close()
  if not text then
    local err = new_error(format("cannot read %s: %s", path, read_err))
    err.source = path
    return nil, err
  end

  local value, err = read_text(text, opts)
  if err then
    err.source = path
    err.message = path .. ": " .. err.message
    return nil, err
  end
  return value
end

return edn
