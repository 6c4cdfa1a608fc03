-- pg.conninfo: libpq-style connection configuration for pg.connect.
--
-- Reads connection URIs, key/value connection strings, the PG* environment
-- variables, the password file (.pgpass) and the connection service file
-- (pg_service.conf) by the rules of libpq's documentation, and turns them into
-- the option table that pg.connect takes. Plain Lua: it reads files and the
-- environment, uses LuaFileSystem when it is installed and otherwise runs
-- `stat` through io.popen to check a password file's mode. pg.ssl is loaded
-- only when a certificate, key, CA or CRL file is named.
--
-- Option tables produced here use the canonical names of pg.connect. When SSL
-- files are named, the table carries both `ssl_files` (the plain map, for
-- inspection) and `ssl_context` (what pg.ssl.context_reader made of that map).
--
-- Limits:
--   * One host only: host, hostaddr or port lists ("a,b") are refused.
--   * An empty value ("host=''") counts as not set, so it does not hide the
--     same setting from the environment or a service file as it would in libpq.
--   * connect_timeout=0 keeps libpq's meaning, "wait without limit"; pg.connect
--     has to read a 0 that way.
--   * Only the environment variables listed in ENVIRONMENT are read; PGTZ,
--     PGDATESTYLE, PGGEQO and variables for unsupported options are not.
--   * The client encoding is always UTF8; client_encoding accepts nothing else.

local error = error
local ipairs = ipairs
local next = next
local pairs = pairs
local pcall = pcall
local require = require
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type

local io_open = io.open
local io_popen = io.popen
local math_tointeger = math.tointeger
local math_type = math.type
local os_getenv = os.getenv
local string_char = string.char
local string_find = string.find
local string_format = string.format
local string_gsub = string.gsub
local string_lower = string.lower
local string_match = string.match
local string_sub = string.sub
local table_concat = table.concat
local table_sort = table.sort

local conninfo = {}

-- The system-wide service file directory used when PGSYSCONFDIR is not set
-- (Debian's choice for its PostgreSQL packages).
local SYSCONFDIR = "/etc/postgresql-common"

-- Unix-socket directories that count as the default one: a password file line
-- for host "localhost" matches connections through them, as in libpq.
local DEFAULT_SOCKET_DIRS = {
  ["/run/postgresql"] = true,
  ["/var/run/postgresql"] = true,
  ["/tmp"] = true,
}

local DEFAULT_PORT = 5432

-- ---------------------------------------------------------------------------
-- Errors
-- ---------------------------------------------------------------------------

local error_mt = {
  __tostring = function(err) return err.message end,
}
conninfo.error_mt = error_mt

-- Builds a configuration error: a table with kind "config", the message, and
-- the option and value concerned when there is one.
local function config_error(message, option, value)
  return setmetatable({
    kind = "config",
    message = message,
    option = option,
    value = value,
  }, error_mt)
end

-- Raises a misuse error for argument `n` of function `fname`.
local function bad_argument(n, fname, expected, got)
  error(string_format("bad argument #%d to '%s' (%s expected, got %s)",
    n, fname, expected, type(got)), 3)
end

-- Returns `value` when it is a non-empty string, else nil.
local function nonempty(value)
  if type(value) == "string" and value ~= "" then
    return value
  end
  return nil
end

-- Returns the keys of `tbl` in sorted order.
local function sorted_keys(tbl)
  local keys = {}
  for key in pairs(tbl) do
    keys[#keys + 1] = key
  end
  table_sort(keys)
  return keys
end

-- Returns a shallow copy of `tbl`.
local function copy(tbl)
  local out = {}
  for key, value in pairs(tbl) do
    out[key] = value
  end
  return out
end

-- ---------------------------------------------------------------------------
-- Keywords and value checks
-- ---------------------------------------------------------------------------

-- Each check takes a non-empty string and returns the typed value, or nil and
-- a phrase saying what was expected.

-- Returns a check that accepts exactly one of `choices`; with `fold`, letters
-- are compared without case and the canonical spelling is returned.
local function check_choice(choices, fold)
  local set = {}
  for _, choice in ipairs(choices) do
    set[fold and string_lower(choice) or choice] = choice
  end
  local expected = "expected one of " .. table_concat(choices, ", ")
  return function(value)
    local found = set[fold and string_lower(value) or value]
    if found == nil then
      return nil, expected
    end
    return found
  end
end

-- Accepts any string as it is.
local function check_string(value)
  return value
end

-- Accepts a decimal TCP port number.
local function check_port(value)
  local number = string_match(value, "^%d+$") and tonumber(value)
  if not number or number < 1 or number > 65535 then
    return nil, "expected an integer from 1 to 65535"
  end
  return math_tointeger(number)
end

-- Accepts a whole number of seconds. libpq waits at least two seconds, so 1
-- becomes 2; 0 means no limit.
local function check_timeout(value)
  local seconds = string_match(value, "^%d+$") and math_tointeger(tonumber(value))
  if not seconds then
    return nil, "expected a non-negative integer number of seconds"
  end
  if seconds == 1 then
    seconds = 2
  end
  return seconds
end

-- Accepts libpq's boolean spelling, "1" or "0".
local function check_flag(value)
  if value == "1" then
    return true
  elseif value == "0" then
    return false
  end
  return nil, "expected 0 or 1"
end

-- Tells whether `text` is a dotted-quad IPv4 address.
local function is_ipv4(text)
  local parts = {string_match(text, "^(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)$")}
  if #parts ~= 4 then
    return false
  end
  for _, part in ipairs(parts) do
    if tonumber(part) > 255 then
      return false
    end
  end
  return true
end

-- Counts the 16-bit groups in a colon-separated run of IPv6 groups, the last
-- of which may be an IPv4 address when `v4_tail` is set. Returns nil when a
-- group is malformed.
local function ipv6_groups(text, v4_tail)
  if text == "" then
    return 0
  end
  local count, pos = 0, 1
  while true do
    local colon = string_find(text, ":", pos, true)
    local group = string_sub(text, pos, (colon or 0) - 1)
    if not colon and v4_tail and is_ipv4(group) then
      return count + 2
    elseif not string_match(group, "^%x%x?%x?%x?$") then
      return nil
    end
    count = count + 1
    if not colon then
      return count
    end
    pos = colon + 1
  end
end

-- Tells whether `text` is a numeric IPv6 address, with an optional zone.
local function is_ipv6(text)
  text = string_gsub(text, "%%[%w%._%-]+$", "", 1)
  if not string_find(text, ":", 1, true) then
    return false
  end
  local gap = string_find(text, "::", 1, true)
  if not gap then
    return ipv6_groups(text, true) == 8
  end
  local head, tail = string_sub(text, 1, gap - 1), string_sub(text, gap + 2)
  if string_find(tail, "::", 1, true) then
    return false
  end
  local before, after = ipv6_groups(head, false), ipv6_groups(tail, true)
  return before ~= nil and after ~= nil and before + after <= 7
end

-- Accepts a numeric IP address, as hostaddr requires.
local function check_hostaddr(value)
  if is_ipv4(value) or is_ipv6(value) then
    return value
  end
  return nil, "expected a numeric IPv4 or IPv6 address"
end

-- Accepts the UTF8 encoding under the names people write for it.
local function check_encoding(value)
  local lowered = string_lower(value)
  if lowered == "utf8" or lowered == "utf-8" then
    return value
  end
  return nil, "only UTF8 is supported"
end

local SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
local TLS_VERSIONS = {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"}

local TLS_RANK = {}
for rank, version in ipairs(TLS_VERSIONS) do
  TLS_RANK[version] = rank
end

-- Every libpq keyword. `name` is our option, `check` converts the value,
-- `ssl_file` is the field in the SSL file map, `fallback` marks
-- fallback_application_name. client_encoding is checked but sets nothing.
local KEYWORDS = {
  host = {name = "host", check = check_string},
  hostaddr = {name = "hostaddr", check = check_hostaddr},
  port = {name = "port", check = check_port},
  dbname = {name = "database", check = check_string},
  user = {name = "user", check = check_string},
  password = {name = "password", check = check_string},
  passfile = {name = "passfile", check = check_string},
  connect_timeout = {name = "connect_timeout", check = check_timeout},
  options = {name = "options", check = check_string},
  application_name = {name = "application_name", check = check_string},
  fallback_application_name = {fallback = true},
  client_encoding = {check = check_encoding},
  sslmode = {name = "ssl_mode", check = check_choice(SSL_MODES)},
  sslsni = {name = "ssl_sni", check = check_flag},
  channel_binding = {
    name = "channel_binding",
    check = check_choice({"disable", "prefer", "require"}),
  },
  ssl_min_protocol_version = {name = "ssl_min_protocol", check = check_choice(TLS_VERSIONS, true)},
  ssl_max_protocol_version = {name = "ssl_max_protocol", check = check_choice(TLS_VERSIONS, true)},
  sslnegotiation = {name = "ssl_negotiation", check = check_choice({"postgres", "direct"})},
  service = {name = "service", check = check_string},
  servicefile = {name = "service_file", check = check_string},
  sslcert = {ssl_file = "cert_file"},
  sslkey = {ssl_file = "key_file"},
  sslrootcert = {ssl_file = "ca_cert_file"},
  sslcrl = {ssl_file = "crl_file"},
  sslpassword = {ssl_file = "key_password"},
}

-- libpq keywords this client does not implement.
local UNSUPPORTED = {
  "gssdelegation", "gssencmode", "gsslib", "keepalives", "keepalives_count",
  "keepalives_idle", "keepalives_interval", "krbsrvname", "load_balance_hosts",
  "max_protocol_version", "min_protocol_version", "oauth_client_id",
  "oauth_client_secret", "oauth_issuer", "oauth_scope", "replication",
  "require_auth", "requirepeer", "requiressl", "scram_client_key",
  "scram_server_key", "sslcertmode", "sslcompression", "sslcrldir",
  "sslkeylogfile", "target_session_attrs", "tcp_user_timeout",
}
for _, keyword in ipairs(UNSUPPORTED) do
  KEYWORDS[keyword] = {unsupported = true}
end

-- Environment variables and the keyword each one sets.
local ENVIRONMENT = {
  {"PGHOST", "host"},
  {"PGHOSTADDR", "hostaddr"},
  {"PGPORT", "port"},
  {"PGDATABASE", "dbname"},
  {"PGUSER", "user"},
  {"PGPASSWORD", "password"},
  {"PGPASSFILE", "passfile"},
  {"PGSERVICE", "service"},
  {"PGSERVICEFILE", "servicefile"},
  {"PGOPTIONS", "options"},
  {"PGAPPNAME", "application_name"},
  {"PGCONNECT_TIMEOUT", "connect_timeout"},
  {"PGCLIENTENCODING", "client_encoding"},
  {"PGSSLMODE", "sslmode"},
  {"PGSSLCERT", "sslcert"},
  {"PGSSLKEY", "sslkey"},
  {"PGSSLROOTCERT", "sslrootcert"},
  {"PGSSLCRL", "sslcrl"},
  {"PGSSLSNI", "sslsni"},
  {"PGCHANNELBINDING", "channel_binding"},
  {"PGSSLMINPROTOCOLVERSION", "ssl_min_protocol_version"},
  {"PGSSLMAXPROTOCOLVERSION", "ssl_max_protocol_version"},
  {"PGSSLNEGOTIATION", "sslnegotiation"},
}

-- Builds the error for a keyword libpq does not know.
local function unknown_keyword(keyword, value)
  return config_error(string_format("unknown connection option '%s'", keyword), keyword,
    value)
end

-- Builds the error for a list of hosts or ports.
local function several_hosts(keyword, value)
  return config_error(string_format(
    "several hosts are not supported (connection option '%s' is '%s')", keyword, value),
    keyword, value)
end

-- Adds " (source)" to the message of `err` when a source is known.
local function with_source(err, source)
  if source then
    err.message = err.message .. " (" .. source .. ")"
  end
  return err
end

-- Sets kw[keyword] to value when keyword is one libpq knows. Returns true, or
-- nil and an error.
local function set_known(kw, keyword, value)
  if KEYWORDS[keyword] == nil then
    return nil, unknown_keyword(keyword, value)
  end
  kw[keyword] = value
  return true
end

-- Checks a keyword table for host, hostaddr or port lists. Returns true, or
-- nil and an error.
local function check_single_host(kw)
  for _, keyword in ipairs({"host", "hostaddr", "port"}) do
    local value = kw[keyword]
    if type(value) == "string" and string_find(value, ",", 1, true) then
      return nil, several_hosts(keyword, value)
    end
  end
  return true
end

-- Converts a keyword table (keyword -> string) into options with our names,
-- leaving out empty values. `sources` may map a keyword to a phrase naming
-- where it came from, added to error messages. Returns the options and the
-- fallback application name (or nil); on failure nil and an error. The result
-- has `ssl_files` but no `ssl_context` yet: finish() adds it.
local function convert(kw, sources)
  sources = sources or {}
  local ok, err = check_single_host(kw)
  if not ok then
    return nil, with_source(err, sources[err.option])
  end

  local opts, files, fallback = {}, {}, nil
  for _, keyword in ipairs(sorted_keys(kw)) do
    local value, spec = kw[keyword], KEYWORDS[keyword]
    if spec == nil then
      return nil, with_source(unknown_keyword(keyword, value), sources[keyword])
    elseif spec.unsupported then
      return nil, with_source(config_error(string_format(
        "connection option '%s' is not supported", keyword), keyword, value),
        sources[keyword])
    end

    if value ~= "" then
      if spec.ssl_file then
        files[spec.ssl_file] = value
      elseif spec.fallback then
        fallback = value
      else
        local converted, expected = spec.check(value)
        if converted == nil then
          return nil, with_source(config_error(string_format(
            "invalid value '%s' for connection option '%s': %s", value, keyword, expected),
            keyword, value), sources[keyword])
        end
        if spec.name then
          opts[spec.name] = converted
        end
      end
    end
  end

  if next(files) then
    opts.ssl_files = files
  end
  return opts, fallback
end

-- Applies the rules that concern several options together, then builds the
-- SSL context from `opts.ssl_files`. Modifies and returns `opts`, or returns
-- nil and an error.
local function finish(opts, fallback, given_table)
  if opts.application_name == nil then
    opts.application_name = fallback
  end
  if given_table then
    -- pg.connect checks how the options of its tables go together, and
    -- names them by its own option names.
    return opts
  end

  local files = opts.ssl_files
  if files and files.ca_cert_file == "system" then
    if opts.ssl_mode == nil then
      opts.ssl_mode = "verify-full"
    elseif opts.ssl_mode ~= "verify-full" then
      return nil, config_error(string_format(
        "invalid value '%s' for connection option 'sslmode': sslrootcert=system "
        .. "requires verify-full", opts.ssl_mode), "sslmode", opts.ssl_mode)
    end
  end

  local mode = opts.ssl_mode
  if opts.ssl_negotiation == "direct"
      and (mode == "disable" or mode == "allow" or mode == "prefer") then
    return nil, config_error(string_format(
      "invalid value '%s' for connection option 'sslmode': sslnegotiation=direct "
      .. "requires one of require, verify-ca, verify-full", mode), "sslmode", mode)
  end

  local low = TLS_RANK[opts.ssl_min_protocol]
  local high = TLS_RANK[opts.ssl_max_protocol]
  if low and high and low > high then
    return nil, config_error(string_format(
      "invalid value '%s' for connection option 'ssl_min_protocol_version': "
      .. "higher than ssl_max_protocol_version '%s'", opts.ssl_min_protocol,
      opts.ssl_max_protocol), "ssl_min_protocol_version", opts.ssl_min_protocol)
  end

  if files and next(files) then
    opts.ssl_context = require("pg.ssl").context_reader(files)
  end
  return opts
end

-- ---------------------------------------------------------------------------
-- Connection strings
-- ---------------------------------------------------------------------------

local URI_PREFIXES = {"postgresql://", "postgres://"}

-- Decodes %XY escapes in one part of a URI. Returns the text, or nil and an
-- error for a malformed escape or an encoded NUL byte.
local function percent_decode(text)
  if not string_find(text, "%", 1, true) then
    return text
  end
  local problem
  local decoded = string_gsub(text, "%%(.?.?)", function(hex)
    if not string_match(hex, "^%x%x$") then
      problem = problem or "invalid percent-encoding"
      return ""
    elseif hex == "00" then
      problem = problem or "percent-encoded NUL byte (%00)"
      return ""
    end
    return string_char(tonumber(hex, 16))
  end)
  if problem then
    return nil, config_error(string_format("%s in connection URI: '%s'", problem, text),
      nil, text)
  end
  return decoded
end

-- Stores the decoded `raw` under `keyword` in `kw` when it is not empty (or
-- always, with `keep_empty`). Returns true, or nil and an error.
local function store_decoded(kw, keyword, raw, keep_empty)
  local value, err = percent_decode(raw)
  if not value then
    return nil, err
  end
  if value ~= "" or keep_empty then
    kw[keyword] = value
  end
  return true
end

-- Parses the host and port part of a URI into `kw`. Returns true, or nil and
-- an error.
local function parse_uri_hostspec(kw, hostspec)
  local host, rest
  if string_sub(hostspec, 1, 1) == "[" then
    local close = string_find(hostspec, "]", 2, true)
    if not close then
      return nil, config_error("missing ']' after IPv6 address in connection URI", "host",
        hostspec)
    end
    host, rest = string_sub(hostspec, 2, close - 1), string_sub(hostspec, close + 1)
    if host == "" then
      return nil, config_error("empty IPv6 address in connection URI", "host", hostspec)
    end
    local after = string_sub(rest, 1, 1)
    if after ~= "" and after ~= ":" and after ~= "," then
      return nil, config_error(string_format(
        "unexpected character '%s' after IPv6 address in connection URI "
        .. "(expected ':' or '/')", after), "host", hostspec)
    end
  else
    local stop = string_find(hostspec, "[:,]") or #hostspec + 1
    host, rest = string_sub(hostspec, 1, stop - 1), string_sub(hostspec, stop)
  end

  if string_find(rest, ",", 1, true) then
    return nil, several_hosts("host", hostspec)
  end
  local ok, err = store_decoded(kw, "host", host)
  if ok and string_sub(rest, 1, 1) == ":" then
    ok, err = store_decoded(kw, "port", string_sub(rest, 2))
  end
  return ok, err
end

-- Parses the query part of a URI (after '?') into `kw`. Returns true, or nil
-- and an error.
local function parse_uri_query(kw, query)
  local pos = 1
  while pos <= #query do
    local amp = string_find(query, "&", pos, true) or #query + 1
    local param = string_sub(query, pos, amp - 1)
    pos = amp + 1

    local eq = string_find(param, "=", 1, true)
    if not eq then
      return nil, config_error(string_format(
        "missing '=' in connection URI parameter '%s'", param), nil, param)
    elseif string_find(param, "=", eq + 1, true) then
      return nil, config_error(string_format(
        "extra '=' in connection URI parameter '%s'", param), nil, param)
    end

    local keyword, err = percent_decode(string_sub(param, 1, eq - 1))
    if not keyword then
      return nil, err
    end
    local value
    value, err = percent_decode(string_sub(param, eq + 1))
    if not value then
      return nil, err
    end

    -- JDBC spelling, translated as libpq does.
    if keyword == "ssl" and value == "true" then
      keyword, value = "sslmode", "require"
    end
    local ok
    ok, err = set_known(kw, keyword, value)
    if not ok then
      return nil, err
    end
  end
  return true
end

-- Parses `postgresql://[user[:password]@][host][:port][/dbname][?params]`,
-- with `rest` being everything after the scheme. Returns a keyword table, or
-- nil and an error.
local function parse_uri(rest)
  local kw = {}
  local authority_end = string_find(rest, "[/?]") or #rest + 1
  local authority = string_sub(rest, 1, authority_end - 1)
  local tail = string_sub(rest, authority_end)

  local ok, err = true, nil
  local at = string_find(authority, "@", 1, true)
  if at then
    local userinfo = string_sub(authority, 1, at - 1)
    authority = string_sub(authority, at + 1)
    local colon = string_find(userinfo, ":", 1, true)
    ok, err = store_decoded(kw, "user", string_sub(userinfo, 1, (colon or 0) - 1))
    if ok and colon then
      ok, err = store_decoded(kw, "password", string_sub(userinfo, colon + 1), true)
    end
  end
  if ok then
    ok, err = parse_uri_hostspec(kw, authority)
  end
  if not ok then
    return nil, err
  end

  local query
  if string_sub(tail, 1, 1) == "/" then
    local mark = string_find(tail, "?", 2, true)
    ok, err = store_decoded(kw, "dbname", string_sub(tail, 2, (mark or 0) - 1))
    if not ok then
      return nil, err
    end
    query = mark and string_sub(tail, mark + 1)
  elseif tail ~= "" then
    query = string_sub(tail, 2)
  end

  if query then
    ok, err = parse_uri_query(kw, query)
    if not ok then
      return nil, err
    end
  end
  return kw
end

-- Reads one value of a key/value string starting at `pos`: either quoted
-- ('...' with \' and \\) or running to the next white space; a backslash
-- escapes the next character in both. Returns the value and the position after
-- it, or nil and an error.
local function read_value(str, pos)
  local parts = {}
  if string_sub(str, pos, pos) ~= "'" then
    while true do
      local stop = string_find(str, "[%s\\]", pos) or #str + 1
      parts[#parts + 1] = string_sub(str, pos, stop - 1)
      if string_sub(str, stop, stop) ~= "\\" then
        return table_concat(parts), stop + 1
      end
      parts[#parts + 1] = string_sub(str, stop + 1, stop + 1)
      pos = stop + 2
    end
  end

  pos = pos + 1
  while true do
    local stop = string_find(str, "[\\']", pos)
    if not stop or (string_sub(str, stop, stop) == "\\" and stop == #str) then
      return nil, config_error("unterminated quoted string in connection string", nil, str)
    end
    parts[#parts + 1] = string_sub(str, pos, stop - 1)
    if string_sub(str, stop, stop) == "'" then
      return table_concat(parts), stop + 1
    end
    parts[#parts + 1] = string_sub(str, stop + 1, stop + 1)
    pos = stop + 2
  end
end

-- Parses `keyword = value ...`. Returns a keyword table, or nil and an error.
local function parse_keyvalue(str)
  local kw = {}
  local pos = 1
  while true do
    pos = string_find(str, "%S", pos)
    if not pos then
      return kw
    end

    local key_end = string_find(str, "[%s=]", pos) or #str + 1
    local keyword = string_sub(str, pos, key_end - 1)
    pos = string_find(str, "%S", key_end) or #str + 1
    if string_sub(str, pos, pos) ~= "=" then
      return nil, config_error(string_format(
        "missing '=' after '%s' in connection string", keyword), keyword)
    end
    pos = string_find(str, "%S", pos + 1) or #str + 1

    local value, err = read_value(str, pos)
    if not value then
      return nil, err
    end
    pos = err
    local ok
    ok, err = set_known(kw, keyword, value)
    if not ok then
      return nil, err
    end
  end
end

-- Parses a connection URI or key/value connection string into a table of
-- libpq keywords and string values. Later settings replace earlier ones, and
-- URI query parameters replace the parts before them. Keywords libpq knows
-- but this client does not support are kept (to_options refuses them);
-- unknown keywords are an error. Returns the table, or nil and an error.
function conninfo.parse(str)
  if type(str) ~= "string" then
    bad_argument(1, "parse", "string", str)
  end

  local kw, err
  for _, prefix in ipairs(URI_PREFIXES) do
    if string_sub(str, 1, #prefix) == prefix then
      kw, err = parse_uri(string_sub(str, #prefix + 1))
      break
    end
  end
  if kw == nil and err == nil then
    kw, err = parse_keyvalue(str)
  end
  if not kw then
    return nil, err
  end

  local ok
  ok, err = check_single_host(kw)
  if not ok then
    return nil, err
  end
  return kw
end

-- Writes a table of libpq keywords as a key/value connection string, keywords
-- in sorted order, quoting values that are empty or hold white space, quotes
-- or backslashes. Keywords are not checked against libpq's list. Raises when
-- a keyword is not a word or a value is neither a string nor a number.
function conninfo.format(kw)
  if type(kw) ~= "table" then
    bad_argument(1, "format", "table", kw)
  end

  for keyword in pairs(kw) do
    if type(keyword) ~= "string" or not string_match(keyword, "^[%w_]+$") then
      error(string_format("bad connection keyword '%s'", tostring(keyword)), 2)
    end
  end

  local parts = {}
  for _, keyword in ipairs(sorted_keys(kw)) do
    local value = kw[keyword]
    if math_type(value) == "integer" then
      value = string_format("%d", value)
    elseif type(value) == "number" then
      value = tostring(value)
    elseif type(value) ~= "string" then
      error(string_format("bad value for connection keyword '%s' (%s)", keyword,
        type(value)), 2)
    end
    if value == "" or string_find(value, "[%s'\\]") then
      value = "'" .. string_gsub(value, "[\\']", "\\%0") .. "'"
    end
    parts[#parts + 1] = keyword .. "=" .. value
  end
  return table_concat(parts, " ")
end

-- Checks that every key of `kw` is a string and every value a string or a
-- number, and returns a copy with numbers written as strings. Raises on
-- anything else.
local function keyword_strings(kw, fname)
  if type(kw) ~= "table" then
    error(string_format("bad argument #1 to '%s' (table expected, got %s)", fname, type(kw)),
      3)
  end
  local out = {}
  for keyword, value in pairs(kw) do
    if type(keyword) ~= "string" then
      error(string_format("bad argument #1 to '%s' (keywords must be strings)", fname), 3)
    end
    if math_type(value) == "integer" then
      value = string_format("%d", value)
    elseif type(value) == "number" then
      value = tostring(value)
    elseif type(value) ~= "string" then
      error(string_format("bad argument #1 to '%s' (value of '%s' is a %s)", fname,
        keyword, type(value)), 3)
    end
    out[keyword] = value
  end
  return out
end

-- Turns a table of libpq keywords (as parse returns) into pg.connect's option
-- table: typed, validated, SSL files gathered into `ssl_files` with
-- `ssl_context` built from them. Values may be strings or numbers. Returns the
-- options, or nil and an error.
function conninfo.to_options(kw)
  local opts, fallback = convert(keyword_strings(kw, "to_options"))
  if not opts then
    return nil, fallback
  end
  return finish(opts, fallback)
end

-- ---------------------------------------------------------------------------
-- Environment
-- ---------------------------------------------------------------------------

-- Reads the PG* variables through `getenv` into a keyword table, skipping
-- empty ones. Returns the table and a map keyword -> "environment variable X".
local function env_keywords(getenv)
  local kw, sources = {}, {}
  for _, pair in ipairs(ENVIRONMENT) do
    local value = nonempty(getenv(pair[1]))
    if value then
      kw[pair[2]] = value
      sources[pair[2]] = "from environment variable " .. pair[1]
    end
  end
  return kw, sources
end

-- Returns `getenv`, or os.getenv when it is nil; raises for anything else.
local function check_getenv(getenv, n, fname)
  if getenv == nil then
    return os_getenv
  elseif type(getenv) ~= "function" then
    error(string_format("bad argument #%d to '%s' (function expected, got %s)",
      n, fname, type(getenv)), 3)
  end
  return getenv
end

-- Builds an option table from the environment variables that libpq reads
-- (see ENVIRONMENT); PGSERVICEFILE gives `service_file`. Empty variables count
-- as unset. `getenv` defaults to os.getenv. Returns the options, or nil and an
-- error naming the variable at fault.
function conninfo.from_env(getenv)
  getenv = check_getenv(getenv, 1, "from_env")
  local opts, fallback = convert(env_keywords(getenv))
  if not opts then
    return nil, fallback
  end
  return finish(opts, fallback)
end

-- ---------------------------------------------------------------------------
-- Service file
-- ---------------------------------------------------------------------------

-- Lists the service files to search, in order: `user_file` (PGSERVICEFILE)
-- or else ~/.pg_service.conf, then pg_service.conf in PGSYSCONFDIR (only when
-- `use_env`) or else in SYSCONFDIR.
local function service_files(user_file, getenv, use_env)
  local files = {}
  if user_file then
    files[1] = user_file
  else
    local home = nonempty(getenv("HOME"))
    if home then
      files[1] = home .. "/.pg_service.conf"
    end
  end
  local sysconfdir = use_env and nonempty(getenv("PGSYSCONFDIR")) or SYSCONFDIR
  files[#files + 1] = sysconfdir .. "/pg_service.conf"
  return files
end

-- Reads the first `[name]` section of the service file at `path`. Lines are
-- trimmed; blank lines and lines starting with '#' are skipped; white space
-- around '=' is ignored; the first setting of a keyword wins. Returns the
-- keyword table and a keyword -> source map, false when the file does not
-- exist or has no such section, or nil and an error.
local function read_service_section(name, path)
  local file, message, code = io_open(path, "r")
  if not file then
    if code == 2 then
      return false
    end
    return nil, config_error(string_format("could not read service file: %s", message),
      "service", name)
  end

  local kw, sources, found, number = {}, {}, false, 0
  for line in file:lines() do
    number = number + 1
    line = string_match(line, "^%s*(.-)%s*$")
    if string_sub(line, 1, 1) == "[" then
      if found then
        break
      end
      found = string_sub(line, 2, #name + 2) == name .. "]"
    elseif found and line ~= "" and string_sub(line, 1, 1) ~= "#" then
      local where = string_format("in service file '%s' line %d", path, number)
      local keyword, value = string_match(line, "^(.-)%s*=%s*(.*)$")
      local err
      if not keyword then
        err = config_error("syntax error: expected keyword=value (" .. where .. ")",
          "service", name)
      elseif keyword == "service" or keyword == "servicefile" then
        err = config_error(string_format("'%s' may not be set inside a service (%s)",
          keyword, where), keyword, value)
      elseif KEYWORDS[keyword] == nil then
        err = with_source(unknown_keyword(keyword, value), where)
      end
      if err then
        file:close()
        return nil, err
      end
      if kw[keyword] == nil then
        kw[keyword], sources[keyword] = value, where
      end
    end
  end
  file:close()

  if not found then
    return false
  end
  return kw, sources
end

-- Searches `files` in order for service `name`; the first file that defines
-- it is used alone. Returns the keyword table and sources, or nil and an error.
local function find_service(name, files)
  for _, path in ipairs(files) do
    local kw, sources = read_service_section(name, path)
    if kw then
      return kw, sources
    elseif kw == nil then
      return nil, sources
    end
  end
  return nil, config_error(string_format("service '%s' not found in %s", name,
    "'" .. table_concat(files, "', '") .. "'"), "service", name)
end

-- Builds an option table from the `[name]` section of a service file. With
-- `path`, only that file is read. Without it the search order is:
-- PGSERVICEFILE, or else ~/.pg_service.conf; then pg_service.conf in
-- PGSYSCONFDIR, or else in /etc/postgresql-common. The first file holding the
-- section wins. `getenv` (default os.getenv) reads those variables. Returns the
-- options, or nil and an error (a missing service names the files searched).
function conninfo.read_service(name, path, getenv)
  if type(name) ~= "string" then
    bad_argument(1, "read_service", "string", name)
  elseif path ~= nil and type(path) ~= "string" then
    bad_argument(2, "read_service", "string or nil", path)
  end
  getenv = check_getenv(getenv, 3, "read_service")

  local files = {path}
  if path == nil then
    files = service_files(nonempty(getenv("PGSERVICEFILE")), getenv, true)
  end
  local kw, sources = find_service(name, files)
  if not kw then
    return nil, sources
  end
  local opts, fallback = convert(kw, sources)
  if not opts then
    return nil, fallback
  end
  return finish(opts, fallback)
end

-- ---------------------------------------------------------------------------
-- Password file
-- ---------------------------------------------------------------------------

-- Quotes `text` for a POSIX shell.
local function shell_quote(text)
  return "'" .. string_gsub(text, "'", "'\\''") .. "'"
end

-- Turns an "rwxr-x---" permission string into a number.
local function permission_bits(text)
  local bits = 0
  for i = 1, 9 do
    bits = bits * 2
    local c = string_sub(text, i, i)
    if c ~= "-" and c ~= "" then
      bits = bits + 1
    end
  end
  return bits
end

-- Looks up `path` (following links). Returns whether it is a regular file and
-- its permission bits, or nil when it does not exist or cannot be examined.
local function file_status(path)
  local ok, lfs = pcall(require, "lfs")
  if ok and type(lfs) == "table" and lfs.attributes then
    local attributes = lfs.attributes(path)
    if not attributes then
      return nil
    end
    return attributes.mode == "file", permission_bits(attributes.permissions)
  end

  local pipe = io_popen("stat -L -c '%a %F' -- " .. shell_quote(path) .. " 2>/dev/null")
  if not pipe then
    return nil
  end
  local output = pipe:read("a")
  pipe:close()
  local mode, kind = string_match(output or "", "^([0-7]+) (.-)%s*$")
  if not mode then
    return nil
  end
  return kind == "regular file" or kind == "regular empty file", tonumber(mode, 8)
end

-- Splits a password file line at unescaped colons, removing the escapes.
-- Returns the fields; a field written as a bare '*' is returned as true.
local function pgpass_fields(line)
  local fields, parts, pos = {}, {}, 1
  while true do
    local stop = string_find(line, "[:\\]", pos)
    parts[#parts + 1] = string_sub(line, pos, (stop or 0) - 1)
    local c = stop and string_sub(line, stop, stop)
    if c == "\\" and stop < #line then
      parts[#parts + 1] = string_sub(line, stop + 1, stop + 1)
      pos = stop + 2
    elseif c == "\\" then
      parts[#parts + 1] = "\\"
      pos = stop + 1
    else
      local raw_star = #parts == 1 and parts[1] == "*"
      fields[#fields + 1] = raw_star or table_concat(parts)
      parts = {}
      if not stop then
        return fields
      end
      pos = stop + 1
    end
  end
end

-- Finds a password in a password file (.pgpass). Each line is
-- `hostname:port:database:username:password`; ':' and '\' inside a field are
-- escaped with '\'; '*' as a whole field matches anything; lines starting with
-- '#' are comments; the first matching line wins. The host looked up is `host`
-- (a string, or nil); an unset or empty host, or one of the default socket
-- directories /run/postgresql, /var/run/postgresql and /tmp, is looked up as
-- "localhost"; another socket directory is matched as written. `port`
-- defaults to 5432. `path` defaults to PGPASSFILE, else ~/.pgpass. A missing
-- file gives nil silently; a file that is not a regular file, or that group or
-- others may access, is ignored and `warn(message)` is called. Returns the
-- password, or nil when none matches, the password is empty, or the database
-- or user is unknown.
function conninfo.pgpass_lookup(path, host, port, database, user, warn)
  if path ~= nil and type(path) ~= "string" then
    bad_argument(1, "pgpass_lookup", "string or nil", path)
  elseif warn ~= nil and type(warn) ~= "function" then
    bad_argument(6, "pgpass_lookup", "function or nil", warn)
  end
  warn = warn or function() end

  if path == nil then
    local home = nonempty(os_getenv("HOME"))
    path = nonempty(os_getenv("PGPASSFILE")) or (home and home .. "/.pgpass")
  end
  database, user = nonempty(database), nonempty(user)
  if not path or not database or not user then
    return nil
  end
  host = nonempty(host)
  if host == nil or DEFAULT_SOCKET_DIRS[host] then
    host = "localhost"
  end
  port = tostring(port or DEFAULT_PORT)

  local regular, mode = file_status(path)
  if regular == nil then
    return nil
  elseif not regular then
    warn(string_format("password file '%s' is not a plain file and is ignored", path))
    return nil
  elseif mode & 63 ~= 0 then
    warn(string_format("password file '%s' is ignored: group or others may access it; "
      .. "its mode must be 0600 or less", path))
    return nil
  end

  local file = io_open(path, "r")
  if not file then
    return nil
  end
  local wanted = {host, port, database, user}
  for line in file:lines() do
    line = string_gsub(line, "[\r\n]+$", "")
    if line ~= "" and string_sub(line, 1, 1) ~= "#" then
      local fields = pgpass_fields(line)
      local matches = #fields >= 5
      for i = 1, 4 do
        matches = matches and (fields[i] == true or fields[i] == wanted[i])
      end
      if matches then
        file:close()
        local password = fields[5]
        if password == true then
          password = "*"
        end
        return nonempty(password)
      end
    end
  end
  file:close()
  return nil
end

-- ---------------------------------------------------------------------------
-- Putting it together
-- ---------------------------------------------------------------------------

-- Tells whether `given` (options with our names) already sets what `keyword`
-- would set, so that a lower source's value for it does not matter.
local function given_sets(given, keyword)
  local spec = KEYWORDS[keyword]
  if spec.ssl_file then
    if given.ssl_files ~= nil then
      return given.ssl_files[spec.ssl_file] ~= nil
    end
    return given.ssl_context ~= nil
  elseif spec.fallback then
    return given.application_name ~= nil
  elseif spec.name then
    return given[spec.name] ~= nil
  end
  return false
end

-- Merges the SSL file maps of `lower` and `given` (given wins) into a new map,
-- or returns nil when `given` brings its own context without a map.
local function merge_ssl_files(lower, given)
  if given.ssl_context ~= nil and given.ssl_files == nil then
    return nil
  end
  local files = copy(lower.ssl_files or {})
  for field, value in pairs(given.ssl_files or {}) do
    files[field] = value
  end
  if next(files) then
    return files
  end
  return nil
end

-- Looks up the password file for `merged` when it has no password, sending
-- warnings to `on_notice`. Sets merged.password when one is found.
local function apply_pgpass(merged, getenv, on_notice)
  if nonempty(merged.password) then
    return
  end
  local home = nonempty(getenv("HOME"))
  local path = nonempty(merged.passfile) or (home and home .. "/.pgpass")
  if not path then
    return
  end

  local warn
  if type(on_notice) == "function" then
    warn = function(message)
      on_notice({severity = "WARNING", message = message})
    end
  end
  local user = nonempty(merged.user) or nonempty(getenv("USER"))
  local host = nonempty(merged.host) or nonempty(merged.hostaddr)
  local password = conninfo.pgpass_lookup(path, host, merged.port or DEFAULT_PORT,
    nonempty(merged.database) or user, user, warn)
  if password then
    merged.password = password
  end
end

-- Builds the full option table for pg.connect from `given` (a connection
-- string, or a table with our option names whose other keys pass through
-- untouched), the connection service file, the environment and the password
-- file. Precedence, lowest first: the service (named by given.service, else
-- PGSERVICE), then environment variables, then `given`; no defaults are
-- added.  (libpq lets a service file override the environment; here the
-- environment wins, so that a variable set for one run can override a shared
-- service definition.) A value from a lower source that `given` overrides is
-- not validated. Without a password, .pgpass is searched (see pgpass_lookup)
-- in `passfile`, else PGPASSFILE, else ~/.pgpass, for the merged host, port,
-- database (default: the user) and user (default: $USER); warnings go to
-- given.on_notice when it is a function. `opts.env = false` reads no PG*
-- variable (HOME and USER still locate the user's files and default user);
-- `opts.getenv` replaces os.getenv. Returns the options, or nil and an error.
function conninfo.resolve(given, opts)
  if type(given) ~= "string" and type(given) ~= "table" then
    bad_argument(1, "resolve", "string or table", given)
  elseif opts ~= nil and type(opts) ~= "table" then
    bad_argument(2, "resolve", "table or nil", opts)
  end
  opts = opts or {}
  local use_env = opts.env ~= false
  local getenv = opts.getenv or os_getenv
  if type(getenv) ~= "function" then
    error("bad option 'getenv' to 'resolve' (function expected)", 2)
  end

  local given_opts, given_fallback, err = given, nil, nil
  if type(given) == "string" then
    local kw
    kw, err = conninfo.parse(given)
    if not kw then
      return nil, err
    end
    given_opts, given_fallback = convert(kw)
    if not given_opts then
      return nil, given_fallback
    end
  end

  local kw, sources = {}, {}
  if use_env then
    kw, sources = env_keywords(getenv)
  end
  local service = nonempty(given_opts.service) or kw.service
  if service then
    local user_file = nonempty(given_opts.service_file) or kw.servicefile
    local service_kw, service_sources = find_service(service,
      service_files(user_file, getenv, use_env))
    if not service_kw then
      return nil, service_sources
    end
    for keyword, value in pairs(service_kw) do
      if kw[keyword] == nil then
        kw[keyword], sources[keyword] = value, service_sources[keyword]
      end
    end
  end
  for keyword in pairs(copy(kw)) do
    if given_sets(given_opts, keyword) then
      kw[keyword] = nil
    end
  end

  local lower, lower_fallback = convert(kw, sources)
  if not lower then
    return nil, lower_fallback
  end
  local merged = copy(lower)
  for key, value in pairs(given_opts) do
    merged[key] = value
  end
  merged.ssl_files = merge_ssl_files(lower, given_opts)
  merged.service_file = nil

  local finished
  finished, err = finish(merged, given_fallback or lower_fallback, type(given) == "table")
  if not finished then
    return nil, err
  end
  apply_pgpass(merged, getenv, type(given) == "table" and given.on_notice or nil)
  return merged
end

return conninfo
