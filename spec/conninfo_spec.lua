-- Specs for pg.conninfo: connection strings, URIs, environment variables,
-- password files and service files, merged into pg.connect's option table.
-- No server is needed; files live in a private temporary directory, and pg.ssl
-- is replaced by a stub whose context reader hands back the map it was given.

local assert = assert
local describe = describe
local error = error
local getmetatable = getmetatable
local it = it
local ipairs = ipairs
local next = next
local package = package
local pairs = pairs
local setup = setup
local teardown = teardown
local tostring = tostring
local type = type

local io_open = io.open
local math_type = math.type
local os_execute = os.execute
local os_remove = os.remove
local os_tmpname = os.tmpname
local table_concat = table.concat

package.loaded["pg.ssl"] = {
  context_reader = function(map)
    return function() return map end
  end,
}
package.loaded["pg.conninfo"] = nil
local conninfo = require("pg.conninfo")
local H = require "support.helper"

-- A temporary directory for the files of these specs, removed at the end.
local tmpdir

local shell_quote = H.shell_quote

-- Writes `text` to `name` inside tmpdir with file mode `mode` ("600" unless
-- given) and returns the full path.
local function write_file(name, text, mode)
  local path = tmpdir .. "/" .. name
  local file = assert(io_open(path, "w"))
  file:write(text)
  file:close()
  assert(os_execute("chmod " .. (mode or "600") .. " " .. shell_quote(path)))
  return path
end

-- Returns a getenv function over the table `vars`.
local function fake_env(vars)
  return function(name) return vars[name] end
end

-- Asserts that the results `ok, err` of a call are a failure with a config
-- error whose message is `message` and whose option is `option`; returns err.
local function assert_config_error(message, option, ok, err)
  assert.is_nil(ok)
  assert.are.equal("table", type(err))
  assert.are.equal("config", err.kind)
  assert.are.equal(message, err.message)
  assert.are.equal(option, err.option)
  assert.are.equal(message, tostring(err))
  assert.are.equal(conninfo.error_mt, getmetatable(err))
  return err
end

setup(function()
  tmpdir = os_tmpname()
  os_remove(tmpdir)
  assert(os_execute("mkdir -m 700 " .. shell_quote(tmpdir)))
end)

teardown(function()
  os_execute("rm -rf " .. shell_quote(tmpdir))
end)

describe("conninfo.parse", function()
  -- Each URI and key/value string in a row mean the same libpq keywords.
  local same = {
    {"postgresql://", "", {}},
    {"postgres://", "   ", {}},
    {"postgresql://localhost", "host=localhost", {host = "localhost"}},
    {"postgresql://localhost:5433", "host=localhost port=5433",
      {host = "localhost", port = "5433"}},
    {"postgresql://localhost/mydb", "host=localhost dbname=mydb",
      {host = "localhost", dbname = "mydb"}},
    {"postgresql://user@localhost", "user=user host=localhost",
      {user = "user", host = "localhost"}},
    {"postgresql://user:secret@localhost", "user=user password=secret host=localhost",
      {user = "user", password = "secret", host = "localhost"}},
    {"postgresql://other@localhost/otherdb?connect_timeout=10&application_name=myapp",
      "user=other host=localhost dbname=otherdb connect_timeout=10 application_name=myapp",
      {user = "other", host = "localhost", dbname = "otherdb", connect_timeout = "10",
        application_name = "myapp"}},
    {"postgresql:///mydb?host=localhost&port=5433", "dbname=mydb host=localhost port=5433",
      {dbname = "mydb", host = "localhost", port = "5433"}},
    {"postgresql://[2001:db8::1234]/database", "host=2001:db8::1234 dbname=database",
      {host = "2001:db8::1234", dbname = "database"}},
    {"postgresql://[::1]:5432", "host=::1 port=5432", {host = "::1", port = "5432"}},
    {"postgresql://%2Fvar%2Frun%2Fpostgresql/dbname",
      "host=/var/run/postgresql dbname=dbname",
      {host = "/var/run/postgresql", dbname = "dbname"}},
    {"postgresql:///dbname?host=%2Ftmp", "dbname=dbname host=/tmp",
      {dbname = "dbname", host = "/tmp"}},
    {"postgres://a%40b:p%3Aw%2Fd%26@h/d%20b", "user=a@b password=p:w/d& host=h dbname='d b'",
      {user = "a@b", password = "p:w/d&", host = "h", dbname = "d b"}},
    {"postgresql://h/db?host=/tmp", "host=h dbname=db host=/tmp",
      {host = "/tmp", dbname = "db"}},
    {"postgresql://h?ssl=true", "host=h sslmode=require", {host = "h", sslmode = "require"}},
    {"postgresql://h/", "host=h", {host = "h"}},
    {"postgresql://u:@h", "user=u password='' host=h",
      {user = "u", password = "", host = "h"}},
    {"postgresql://h?options=-c%20search_path%3Dx", "host=h options='-c search_path=x'",
      {host = "h", options = "-c search_path=x"}},
  }

  for _, case in ipairs(same) do
    it("reads " .. case[1] .. " as the keywords of '" .. case[2] .. "'", function()
      assert.are.same(case[3], assert(conninfo.parse(case[1])))
      assert.are.same(case[3], assert(conninfo.parse(case[2])))
    end)
  end

  it("turns a URI and its key/value twin into equal option tables", function()
    local from_uri = assert(conninfo.to_options(assert(conninfo.parse(
      "postgresql://bob:pw@db.example.com:6543/app?sslmode=verify-full&connect_timeout=5"))))
    local from_kv = assert(conninfo.to_options(assert(conninfo.parse(
      "host=db.example.com port=6543 user=bob password=pw dbname=app sslmode=verify-full "
      .. "connect_timeout=5"))))
    assert.are.same(from_kv, from_uri)
    assert.are.same({host = "db.example.com", port = 6543, user = "bob", password = "pw",
      database = "app", ssl_mode = "verify-full", connect_timeout = 5}, from_uri)
  end)

  -- Key/value strings and the keywords they hold.
  local keyvalue = {
    {"host = localhost   port= 5432 dbname =mydb", {host = "localhost", port = "5432",
      dbname = "mydb"}},
    {"\thost=a\n\tport=1\r\n", {host = "a", port = "1"}},
    {"password='it\\'s a \\\\ secret'", {password = "it's a \\ secret"}},
    {"application_name='' host=x", {application_name = "", host = "x"}},
    {"password=a\\ b\\'c", {password = "a b'c"}},
    {"password=a'b", {password = "a'b"}},
    {"host='x'port=5", {host = "x", port = "5"}},
    {"options='-c geqo=off'", {options = "-c geqo=off"}},
    {"host=a host=b", {host = "b"}},
    {"host=", {host = ""}},
    {"host= port=5", {host = "port=5"}},
    {"password==x", {password = "=x"}},
  }

  for _, case in ipairs(keyvalue) do
    it("reads the key/value string " .. case[1]:gsub("%c", " "), function()
      assert.are.same(case[2], assert(conninfo.parse(case[1])))
    end)
  end

  it("keeps libpq keywords that to_options will refuse", function()
    assert.are.same({keepalives = "1"}, assert(conninfo.parse("keepalives=1")))
  end)

  -- Each row: input, the exact message, the option named by the error.
  local errors = {
    {"postgresql://h1:5432,h2:5433/db",
      "several hosts are not supported (connection option 'host' is 'h1:5432,h2:5433')",
      "host"},
    {"host=a,b", "several hosts are not supported (connection option 'host' is 'a,b')",
      "host"},
    {"postgresql:///db?host=a,b",
      "several hosts are not supported (connection option 'host' is 'a,b')", "host"},
    {"hostaddr=1.2.3.4,5.6.7.8",
      "several hosts are not supported (connection option 'hostaddr' is '1.2.3.4,5.6.7.8')",
      "hostaddr"},
    {"host=a port=5432,5433",
      "several hosts are not supported (connection option 'port' is '5432,5433')", "port"},
    {"postgresql://h/%zz", "invalid percent-encoding in connection URI: '%zz'", nil},
    {"postgresql://h/db%4", "invalid percent-encoding in connection URI: 'db%4'", nil},
    {"postgresql://us%2gr@h", "invalid percent-encoding in connection URI: 'us%2gr'", nil},
    {"postgresql://h/a%00b",
      "percent-encoded NUL byte (%00) in connection URI: 'a%00b'", nil},
    {"postgresql://[::1/db", "missing ']' after IPv6 address in connection URI", "host"},
    {"postgresql://[]/db", "empty IPv6 address in connection URI", "host"},
    {"postgresql://[::1]x/db",
      "unexpected character 'x' after IPv6 address in connection URI (expected ':' or '/')",
      "host"},
    {"postgresql://h?sslmode", "missing '=' in connection URI parameter 'sslmode'", nil},
    {"postgresql://h?a=b=c", "extra '=' in connection URI parameter 'a=b=c'", nil},
    {"postgresql://h?bogus=1", "unknown connection option 'bogus'", "bogus"},
    {"postgresql://h?ssl=false", "unknown connection option 'ssl'", "ssl"},
    {"host=a bogus=1", "unknown connection option 'bogus'", "bogus"},
    {"=x", "unknown connection option ''", ""},
    {"host", "missing '=' after 'host' in connection string", "host"},
    {"host localhost", "missing '=' after 'host' in connection string", "host"},
    {"mydb", "missing '=' after 'mydb' in connection string", "mydb"},
    {"host='abc", "unterminated quoted string in connection string", nil},
    {"host='abc\\'", "unterminated quoted string in connection string", nil},
  }

  for _, case in ipairs(errors) do
    it("rejects " .. case[1], function()
      assert_config_error(case[2], case[3], conninfo.parse(case[1]))
    end)
  end

  it("raises when given something other than a string", function()
    assert.has_error(function() conninfo.parse(nil) end,
      "bad argument #1 to 'parse' (string expected, got nil)")
  end)
end)

describe("conninfo.format", function()
  local round_trips = {
    {},
    {host = "localhost", port = "5432", dbname = "mydb"},
    {password = "it's a \\ secret", options = "-c a=b -c c=d"},
    {application_name = "", host = "/var/run/postgresql"},
    {password = "'", user = "\\", dbname = "tab\there"},
    {password = "a=b:c@d/e?f&g%h", sslmode = "verify-full"},
  }

  for i, kw in ipairs(round_trips) do
    it("writes strings that parse back to the same keywords (case " .. i .. ")", function()
      assert.are.same(kw, assert(conninfo.parse(conninfo.format(kw))))
    end)
  end

  it("quotes only values that need it, in keyword order", function()
    assert.are.equal("dbname='' host='a b' password='it\\'s\\\\' port=5432",
      conninfo.format({host = "a b", password = "it's\\", port = 5432, dbname = ""}))
  end)

  it("parses every parsed URI back to itself", function()
    local kw = assert(conninfo.parse("postgresql://u%20x:p%27w@[::1]:6000/d%5Cb?sslmode=require"))
    assert.are.same(kw, assert(conninfo.parse(conninfo.format(kw))))
  end)

  it("raises for a keyword that is not a word", function()
    assert.has_error(function() conninfo.format({["a b"] = "x"}) end,
      "bad connection keyword 'a b'")
  end)
end)

describe("conninfo.to_options", function()
  it("maps every supported keyword to our option names and types", function()
    local opts = assert(conninfo.to_options({
      host = "db", hostaddr = "10.0.0.1", port = "5433", dbname = "app", user = "u",
      password = "p", passfile = "/x/pgpass", connect_timeout = "10", options = "-c x=y",
      application_name = "a", sslmode = "require", sslsni = "1", channel_binding = "require",
      ssl_min_protocol_version = "TLSv1.2", ssl_max_protocol_version = "tlsv1.3",
      sslnegotiation = "direct", service = "svc", client_encoding = "UTF8",
    }))
    assert.are.same({
      host = "db", hostaddr = "10.0.0.1", port = 5433, database = "app", user = "u",
      password = "p", passfile = "/x/pgpass", connect_timeout = 10, options = "-c x=y",
      application_name = "a", ssl_mode = "require", ssl_sni = true,
      channel_binding = "require", ssl_min_protocol = "TLSv1.2",
      ssl_max_protocol = "TLSv1.3", ssl_negotiation = "direct", service = "svc",
    }, opts)
    assert.are.equal("integer", math_type(opts.port))
  end)

  it("gathers SSL files into ssl_files and builds ssl_context from them", function()
    local opts = assert(conninfo.to_options({
      sslcert = "/c.crt", sslkey = "/c.key", sslrootcert = "/ca.crt", sslcrl = "/crl.pem",
      sslpassword = "pw", sslmode = "verify-ca",
    }))
    local map = {cert_file = "/c.crt", key_file = "/c.key", ca_cert_file = "/ca.crt",
      crl_file = "/crl.pem", key_password = "pw"}
    assert.are.same(map, opts.ssl_files)
    assert.are.same(map, opts.ssl_context())
    assert.are.equal("verify-ca", opts.ssl_mode)
  end)

  it("sets no ssl_context when no SSL file is named", function()
    local opts = assert(conninfo.to_options({sslmode = "require"}))
    assert.is_nil(opts.ssl_files)
    assert.is_nil(opts.ssl_context)
  end)

  it("makes sslrootcert=system imply verify-full", function()
    local opts = assert(conninfo.to_options({sslrootcert = "system"}))
    assert.are.equal("system", opts.ssl_files.ca_cert_file)
    assert.are.equal("verify-full", opts.ssl_mode)
  end)

  it("refuses a weaker sslmode with sslrootcert=system", function()
    assert_config_error("invalid value 'require' for connection option 'sslmode': "
      .. "sslrootcert=system requires verify-full", "sslmode",
      conninfo.to_options({sslrootcert = "system", sslmode = "require"}))
  end)

  it("refuses sslnegotiation=direct with a mode that allows plain text", function()
    assert_config_error("invalid value 'prefer' for connection option 'sslmode': "
      .. "sslnegotiation=direct requires one of require, verify-ca, verify-full", "sslmode",
      conninfo.to_options({sslnegotiation = "direct", sslmode = "prefer"}))
  end)

  it("refuses a minimum TLS version above the maximum", function()
    assert_config_error("invalid value 'TLSv1.3' for connection option "
      .. "'ssl_min_protocol_version': higher than ssl_max_protocol_version 'TLSv1.2'",
      "ssl_min_protocol_version", conninfo.to_options({
        ssl_min_protocol_version = "TLSv1.3", ssl_max_protocol_version = "TLSv1.2"}))
  end)

  it("uses fallback_application_name only without application_name", function()
    assert.are.same({application_name = "fb"},
      assert(conninfo.to_options({fallback_application_name = "fb"})))
    assert.are.same({application_name = "app"}, assert(conninfo.to_options({
      fallback_application_name = "fb", application_name = "app"})))
  end)

  it("accepts the UTF8 client encoding in its usual spellings and sets nothing", function()
    for _, name in ipairs({"UTF8", "utf8", "UTF-8"}) do
      assert.are.same({}, assert(conninfo.to_options({client_encoding = name})))
    end
  end)

  it("reads sslsni=0 as false", function()
    assert.is_false(assert(conninfo.to_options({sslsni = "0"})).ssl_sni)
  end)

  it("waits at least two seconds, as libpq does, and keeps 0 for no limit", function()
    assert.are.equal(2, assert(conninfo.to_options({connect_timeout = "1"})).connect_timeout)
    assert.are.equal(0, assert(conninfo.to_options({connect_timeout = "0"})).connect_timeout)
  end)

  it("treats empty values as not set", function()
    assert.are.same({}, assert(conninfo.to_options({host = "", port = "", sslmode = ""})))
  end)

  it("accepts numbers as values", function()
    assert.are.same({port = 5432, connect_timeout = 3},
      assert(conninfo.to_options({port = 5432, connect_timeout = 3})))
  end)

  it("accepts IPv4 and IPv6 literals as hostaddr", function()
    for _, addr in ipairs({"127.0.0.1", "::1", "::", "2001:db8::1", "fe80::1%eth0",
        "1:2:3:4:5:6:7:8", "::ffff:192.0.2.1", "1::"}) do
      assert.are.equal(addr, assert(conninfo.to_options({hostaddr = addr})).hostaddr)
    end
  end)

  -- Each row: keywords, the exact message, the option named by the error.
  local errors = {
    {{sslmode = "bogus"}, "invalid value 'bogus' for connection option 'sslmode': expected "
      .. "one of disable, allow, prefer, require, verify-ca, verify-full", "sslmode"},
    {{port = "abc"}, "invalid value 'abc' for connection option 'port': expected an integer "
      .. "from 1 to 65535", "port"},
    {{port = "70000"}, "invalid value '70000' for connection option 'port': expected an "
      .. "integer from 1 to 65535", "port"},
    {{port = "0"}, "invalid value '0' for connection option 'port': expected an integer "
      .. "from 1 to 65535", "port"},
    {{connect_timeout = "-1"}, "invalid value '-1' for connection option 'connect_timeout': "
      .. "expected a non-negative integer number of seconds", "connect_timeout"},
    {{connect_timeout = "1.5"}, "invalid value '1.5' for connection option "
      .. "'connect_timeout': expected a non-negative integer number of seconds",
      "connect_timeout"},
    {{sslsni = "yes"}, "invalid value 'yes' for connection option 'sslsni': expected 0 or 1",
      "sslsni"},
    {{channel_binding = "always"}, "invalid value 'always' for connection option "
      .. "'channel_binding': expected one of disable, prefer, require", "channel_binding"},
    {{ssl_max_protocol_version = "SSLv3"}, "invalid value 'SSLv3' for connection option "
      .. "'ssl_max_protocol_version': expected one of TLSv1, TLSv1.1, TLSv1.2, TLSv1.3",
      "ssl_max_protocol_version"},
    {{sslnegotiation = "tls"}, "invalid value 'tls' for connection option 'sslnegotiation': "
      .. "expected one of postgres, direct", "sslnegotiation"},
    {{client_encoding = "LATIN1"}, "invalid value 'LATIN1' for connection option "
      .. "'client_encoding': only UTF8 is supported", "client_encoding"},
    {{hostaddr = "db.example.com"}, "invalid value 'db.example.com' for connection option "
      .. "'hostaddr': expected a numeric IPv4 or IPv6 address", "hostaddr"},
    {{hostaddr = "1.2.3.256"}, "invalid value '1.2.3.256' for connection option "
      .. "'hostaddr': expected a numeric IPv4 or IPv6 address", "hostaddr"},
    {{hostaddr = "1::2::3"}, "invalid value '1::2::3' for connection option "
      .. "'hostaddr': expected a numeric IPv4 or IPv6 address", "hostaddr"},
    {{keepalives = "1"}, "connection option 'keepalives' is not supported", "keepalives"},
    {{target_session_attrs = "any"},
      "connection option 'target_session_attrs' is not supported", "target_session_attrs"},
    {{gssencmode = "disable"}, "connection option 'gssencmode' is not supported",
      "gssencmode"},
    {{bogus = "1"}, "unknown connection option 'bogus'", "bogus"},
    {{host = "a,b"}, "several hosts are not supported (connection option 'host' is 'a,b')",
      "host"},
  }

  for _, case in ipairs(errors) do
    it("rejects " .. conninfo.format(case[1]), function()
      local err = assert_config_error(case[2], case[3], conninfo.to_options(case[1]))
      local _, value = next(case[1])
      assert.are.equal(value, err.value)
    end)
  end

  it("raises when given something other than a table", function()
    assert.has_error(function() conninfo.to_options("host=x") end,
      "bad argument #1 to 'to_options' (table expected, got string)")
  end)
end)

describe("conninfo.from_env", function()
  it("reads every supported PG* variable", function()
    local opts = assert(conninfo.from_env(fake_env({
      PGHOST = "h", PGHOSTADDR = "::1", PGPORT = "5439", PGUSER = "u", PGPASSWORD = "p",
      PGDATABASE = "d", PGAPPNAME = "a", PGCONNECT_TIMEOUT = "7", PGOPTIONS = "-c x=1",
      PGSSLMODE = "verify-ca", PGSSLCERT = "/c", PGSSLKEY = "/k", PGSSLROOTCERT = "/r",
      PGSSLCRL = "/l", PGSSLSNI = "0", PGCHANNELBINDING = "disable",
      PGSSLMINPROTOCOLVERSION = "TLSv1.2", PGSSLMAXPROTOCOLVERSION = "TLSv1.3",
      PGSSLNEGOTIATION = "postgres", PGPASSFILE = "/pf", PGSERVICE = "s",
      PGSERVICEFILE = "/sf", PGCLIENTENCODING = "UTF8",
    })))
    local ssl_files = {cert_file = "/c", key_file = "/k", ca_cert_file = "/r",
      crl_file = "/l"}
    assert.are.same(ssl_files, opts.ssl_context())
    opts.ssl_context = nil
    assert.are.same({
      host = "h", hostaddr = "::1", port = 5439, user = "u", password = "p", database = "d",
      application_name = "a", connect_timeout = 7, options = "-c x=1", ssl_mode = "verify-ca",
      ssl_files = ssl_files, ssl_sni = false, channel_binding = "disable",
      ssl_min_protocol = "TLSv1.2", ssl_max_protocol = "TLSv1.3",
      ssl_negotiation = "postgres", passfile = "/pf", service = "s", service_file = "/sf",
    }, opts)
  end)

  it("treats empty variables as unset", function()
    assert.are.same({host = "h"},
      assert(conninfo.from_env(fake_env({PGHOST = "h", PGPORT = "", PGSSLMODE = ""}))))
  end)

  it("names the variable that holds a bad value", function()
    assert_config_error("invalid value 'sometimes' for connection option 'sslmode': expected "
      .. "one of disable, allow, prefer, require, verify-ca, verify-full "
      .. "(from environment variable PGSSLMODE)", "sslmode",
      conninfo.from_env(fake_env({PGSSLMODE = "sometimes"})))
  end)

  it("raises when getenv is not a function", function()
    assert.has_error(function() conninfo.from_env({}) end,
      "bad argument #1 to 'from_env' (function expected, got table)")
  end)
end)

describe("conninfo.pgpass_lookup", function()
  local passfile

  setup(function()
    passfile = write_file("pgpass", table_concat({
      "# hostname:port:database:username:password",
      "",
      "db.example.com:5432:app:alice:first",
      "db.example.com:5432:app:alice:second",
      "db.example.com:*:*:bob:bob's",
      "host\\:with\\:colons:5432:*:carol:c\\:a\\\\r:ignored",
      "localhost:5432:*:dave:local",
      "/srv/sockets:5432:*:dave:custom socket",
      "10.0.0.1:5432:*:erin:by address",
      "\\*:5432:*:frank:literal star",
      "*:*:*:grace:",
      "*:*:*:heidi",
      "*:*:*:*:catch-all",
    }, "\n") .. "\r\n")
  end)

  it("returns the password of the first matching line", function()
    assert.are.equal("first",
      conninfo.pgpass_lookup(passfile, "db.example.com", 5432, "app", "alice"))
  end)

  it("matches '*' against any value", function()
    assert.are.equal("bob's",
      conninfo.pgpass_lookup(passfile, "db.example.com", 6000, "other", "bob"))
  end)

  it("undoes \\: and \\\\ escapes and stops the password at the next colon", function()
    assert.are.equal("c:a\\r",
      conninfo.pgpass_lookup(passfile, "host:with:colons", "5432", "x", "carol"))
  end)

  it("matches localhost for an unset host and the default socket directories", function()
    for _, host in ipairs({"localhost", "", "/var/run/postgresql", "/run/postgresql",
        "/tmp"}) do
      assert.are.equal("local", conninfo.pgpass_lookup(passfile, host, 5432, "d", "dave"))
    end
    assert.are.equal("local", conninfo.pgpass_lookup(passfile, nil, nil, "d", "dave"))
  end)

  it("matches another socket directory by its path", function()
    assert.are.equal("custom socket",
      conninfo.pgpass_lookup(passfile, "/srv/sockets", 5432, "d", "dave"))
  end)

  it("treats an escaped star as a literal star", function()
    assert.are.equal("literal star", conninfo.pgpass_lookup(passfile, "*", 5432, "d", "frank"))
    assert.are.equal("catch-all", conninfo.pgpass_lookup(passfile, "h", 5432, "d", "frank"))
  end)

  it("returns nil for an empty password", function()
    assert.is_nil(conninfo.pgpass_lookup(passfile, "h", 5432, "d", "grace"))
  end)

  it("skips lines with fewer than five fields", function()
    assert.are.equal("catch-all", conninfo.pgpass_lookup(passfile, "h", 5432, "d", "heidi"))
  end)

  it("returns nil without a database or user", function()
    assert.is_nil(conninfo.pgpass_lookup(passfile, "h", 5432, nil, "zed"))
    assert.is_nil(conninfo.pgpass_lookup(passfile, "h", 5432, "d", nil))
  end)

  it("returns nil silently for a missing file", function()
    local warnings = {}
    assert.is_nil(conninfo.pgpass_lookup(tmpdir .. "/absent", "h", 5432, "d", "u",
      function(message) warnings[#warnings + 1] = message end))
    assert.are.same({}, warnings)
  end)

  it("ignores a file that group or others may read, with a warning", function()
    local open = write_file("pgpass-open", "*:*:*:*:secret\n", "644")
    local warnings = {}
    assert.is_nil(conninfo.pgpass_lookup(open, "h", 5432, "d", "u",
      function(message) warnings[#warnings + 1] = message end))
    assert.are.same({"password file '" .. open .. "' is ignored: group or others may "
      .. "access it; its mode must be 0600 or less"}, warnings)
  end)

  it("accepts a file of mode 0400", function()
    local readonly = write_file("pgpass-ro", "*:*:*:*:secret\n", "400")
    assert.are.equal("secret", conninfo.pgpass_lookup(readonly, "h", 5432, "d", "u"))
  end)

  it("ignores a path that is not a regular file, with a warning", function()
    local warnings = {}
    assert.is_nil(conninfo.pgpass_lookup(tmpdir, "h", 5432, "d", "u",
      function(message) warnings[#warnings + 1] = message end))
    assert.are.same({"password file '" .. tmpdir .. "' is not a plain file and is ignored"},
      warnings)
  end)

  it("checks the mode with stat when LuaFileSystem is missing", function()
    local saved_loaded, saved_preload = package.loaded.lfs, package.preload.lfs
    package.loaded.lfs = nil
    package.preload.lfs = function() error("not installed") end
    local open = write_file("pgpass-open's", "*:*:*:*:secret\n", "640")
    local warnings = {}
    local found = conninfo.pgpass_lookup(open, "h", 5432, "d", "u",
      function(message) warnings[#warnings + 1] = message end)
    local ok = conninfo.pgpass_lookup(passfile, "db.example.com", 5432, "app", "alice")
    package.loaded.lfs, package.preload.lfs = saved_loaded, saved_preload
    assert.is_nil(found)
    assert.are.equal(1, #warnings)
    assert.are.equal("first", ok)
  end)
end)

describe("conninfo.read_service", function()
  local services

  setup(function()
    services = write_file("services.conf", table_concat({
      "# services for the specs",
      "stray=ignored outside any section",
      "[main]",
      "  host = db.example.com  ",
      "port=6432",
      "",
      "# a comment inside",
      "dbname=app",
      "port=7000",
      "[main-replica]",
      "host=replica",
      "[broken]",
      "this line has no equals sign",
      "[strange]",
      "bogus=1",
      "[nested]",
      "service=main",
      "[badmode]",
      "sslmode=sometimes",
      "[main]",
      "host=second definition",
    }, "\n") .. "\n")
  end)

  it("reads the first section of that name, first setting winning", function()
    assert.are.same({host = "db.example.com", port = 6432, database = "app"},
      assert(conninfo.read_service("main", services)))
  end)

  it("does not take a section whose name only starts with the service name", function()
    assert.are.same({host = "replica"}, assert(conninfo.read_service("main-replica",
      services)))
  end)

  it("names the service and the files searched when the service is missing", function()
    local err = assert_config_error("service 'absent' not found in '" .. services .. "'",
      "service", conninfo.read_service("absent", services))
    assert.are.equal("absent", err.value)
  end)

  it("reports a line without '=' with the file and line", function()
    assert_config_error("syntax error: expected keyword=value (in service file '"
      .. services .. "' line 13)", "service", conninfo.read_service("broken", services))
  end)

  it("reports an unknown keyword with the file and line", function()
    assert_config_error("unknown connection option 'bogus' (in service file '" .. services
      .. "' line 15)", "bogus", conninfo.read_service("strange", services))
  end)

  it("refuses a service inside a service", function()
    assert_config_error("'service' may not be set inside a service (in service file '"
      .. services .. "' line 17)", "service", conninfo.read_service("nested", services))
  end)

  it("reports a bad value with the file and line", function()
    assert_config_error("invalid value 'sometimes' for connection option 'sslmode': expected "
      .. "one of disable, allow, prefer, require, verify-ca, verify-full (in service file '"
      .. services .. "' line 19)", "sslmode", conninfo.read_service("badmode", services))
  end)

  describe("without a path", function()
    local home, sysconf

    setup(function()
      home = tmpdir .. "/home"
      sysconf = tmpdir .. "/sysconf"
      assert(os_execute("mkdir -p " .. shell_quote(home) .. " " .. shell_quote(sysconf)))
      write_file("home/.pg_service.conf", "[both]\nhost=user-file\n[user]\nhost=u\n")
      write_file("sysconf/pg_service.conf", "[both]\nhost=system-file\nport=1\n"
        .. "[system]\nhost=s\n")
      write_file("own.conf", "[own]\nhost=own\n")
    end)

    local function env(extra)
      local vars = {HOME = home, PGSYSCONFDIR = sysconf}
      for key, value in pairs(extra or {}) do
        vars[key] = value
      end
      return fake_env(vars)
    end

    it("prefers the whole section from ~/.pg_service.conf", function()
      assert.are.same({host = "user-file"},
        assert(conninfo.read_service("both", nil, env())))
    end)

    it("falls back to the system file", function()
      assert.are.same({host = "s"}, assert(conninfo.read_service("system", nil, env())))
    end)

    it("reads PGSERVICEFILE instead of ~/.pg_service.conf", function()
      local getenv = env({PGSERVICEFILE = tmpdir .. "/own.conf"})
      assert.are.same({host = "own"}, assert(conninfo.read_service("own", nil, getenv)))
      assert.are.same({host = "system-file", port = 1},
        assert(conninfo.read_service("both", nil, getenv)))
    end)

    it("names both files when the service is nowhere", function()
      assert_config_error("service 'none' not found in '" .. home .. "/.pg_service.conf', '"
        .. sysconf .. "/pg_service.conf'", "service",
        conninfo.read_service("none", nil, env()))
    end)

    it("uses /etc/postgresql-common without PGSYSCONFDIR", function()
      local _, err = conninfo.read_service("surely-not-defined-anywhere", nil,
        fake_env({HOME = home}))
      assert.are.equal("service 'surely-not-defined-anywhere' not found in '" .. home
        .. "/.pg_service.conf', '/etc/postgresql-common/pg_service.conf'", err.message)
    end)
  end)
end)

describe("conninfo.resolve", function()
  local home, services, passfile

  setup(function()
    home = tmpdir .. "/resolve-home"
    assert(os_execute("mkdir -p " .. shell_quote(home)))
    services = write_file("resolve-services.conf",
      "[svc]\nport=1111\napplication_name=from-service\nsslrootcert=/svc-ca.crt\n"
      .. "[other]\nport=3333\n")
    passfile = write_file("resolve-home/.pgpass", table_concat({
      "localhost:5432:alice:alice:home-pass",
      "db:5432:app:bob:bob-pass",
      "db:6000:app:bob:bob-6000",
    }, "\n") .. "\n")
  end)

  -- A getenv with HOME set to the spec's home and `vars` on top.
  local function env(vars)
    local all = {HOME = home, PGSYSCONFDIR = tmpdir .. "/nowhere"}
    for key, value in pairs(vars or {}) do
      all[key] = value
    end
    return fake_env(all)
  end

  it("parses a connection string", function()
    assert.are.same({host = "db", port = 5433, database = "app", user = "bob",
      password = "x"}, assert(conninfo.resolve("postgresql://bob:x@db:5433/app",
      {getenv = env()})))
  end)

  it("passes other keys of a table through untouched", function()
    local on_notice = function() end
    local rows, socket = {}, {}
    local opts = assert(conninfo.resolve({host = "db", password = "x", socket = socket,
      on_notice = on_notice, rows = rows, ssl = true}, {getenv = env()}))
    assert.are.equal(socket, opts.socket)
    assert.are.equal(on_notice, opts.on_notice)
    assert.are.equal(rows, opts.rows)
    assert.is_true(opts.ssl)
  end)

  it("does not change the table it is given", function()
    local given = {host = "db", password = "x"}
    conninfo.resolve(given, {getenv = env({PGPORT = "7777"})})
    assert.are.same({host = "db", password = "x"}, given)
  end)

  it("lets the environment beat the service and the given value beat both", function()
    local getenv = env({PGPORT = "2222", PGSERVICEFILE = services, PGPASSWORD = "x"})
    assert.are.equal(2222, assert(conninfo.resolve({}, {getenv = getenv})).port)
    assert.are.equal(2222,
      assert(conninfo.resolve({service = "svc"}, {getenv = getenv})).port)
    assert.are.equal(1111, assert(conninfo.resolve({service = "svc"},
      {getenv = env({PGSERVICEFILE = services, PGPASSWORD = "x"})})).port)
    assert.are.equal(4444,
      assert(conninfo.resolve({service = "svc", port = 4444}, {getenv = getenv})).port)
    assert.are.equal(4444,
      assert(conninfo.resolve("service=svc port=4444", {getenv = getenv})).port)
  end)

  it("takes the service from PGSERVICE", function()
    local opts = assert(conninfo.resolve({password = "x"}, {getenv = env({
      PGSERVICE = "other", PGSERVICEFILE = services})}))
    assert.are.equal(3333, opts.port)
    assert.is_nil(opts.service_file)
  end)

  it("prefers the given service to PGSERVICE", function()
    assert.are.equal(1111, assert(conninfo.resolve({service = "svc", password = "x"},
      {getenv = env({PGSERVICE = "other", PGSERVICEFILE = services})})).port)
  end)

  it("reports a service that cannot be found", function()
    assert_config_error("service 'absent' not found in '" .. services .. "', '" .. tmpdir
      .. "/nowhere/pg_service.conf'", "service", conninfo.resolve({service = "absent"},
      {getenv = env({PGSERVICEFILE = services})}))
  end)

  it("reads no PG* variable with env = false", function()
    local opts = assert(conninfo.resolve({password = "x"}, {env = false, getenv = env({
      PGHOST = "envhost", PGPORT = "2222", PGSERVICE = "svc", PGSERVICEFILE = services})}))
    assert.are.same({password = "x"}, opts)
  end)

  it("does not validate a variable that the given options override", function()
    local opts = assert(conninfo.resolve({ssl_mode = "require", password = "x"},
      {getenv = env({PGSSLMODE = "sometimes"})}))
    assert.are.equal("require", opts.ssl_mode)
  end)

  it("reports a bad variable that is used", function()
    assert_config_error("invalid value 'abc' for connection option 'port': expected an "
      .. "integer from 1 to 65535 (from environment variable PGPORT)", "port",
      conninfo.resolve({}, {getenv = env({PGPORT = "abc"})}))
  end)

  it("merges SSL files from every source, the given ones winning", function()
    local opts = assert(conninfo.resolve("service=svc sslkey=/given.key password=x",
      {getenv = env({PGSERVICEFILE = services, PGSSLCERT = "/env.crt",
        PGSSLKEY = "/env.key"})}))
    local map = {ca_cert_file = "/svc-ca.crt", cert_file = "/env.crt", key_file = "/given.key"}
    assert.are.same(map, opts.ssl_files)
    assert.are.same(map, opts.ssl_context())
  end)

  it("keeps a given ssl_context and ignores SSL files from elsewhere", function()
    local context = function() return "mine" end
    local opts = assert(conninfo.resolve({ssl_context = context, password = "x"},
      {getenv = env({PGSSLROOTCERT = "system"})}))
    assert.are.equal(context, opts.ssl_context)
    assert.is_nil(opts.ssl_files)
  end)

  it("lets PGAPPNAME beat a given fallback_application_name", function()
    local getenv = env({PGAPPNAME = "env-app", PGPASSWORD = "x"})
    assert.are.equal("env-app", assert(conninfo.resolve("fallback_application_name=fb",
      {getenv = getenv})).application_name)
    assert.are.equal("fb", assert(conninfo.resolve("fallback_application_name=fb",
      {getenv = env({PGPASSWORD = "x"})})).application_name)
  end)

  it("finds the password in ~/.pgpass, with database defaulting to the user", function()
    local opts = assert(conninfo.resolve({user = "alice"}, {getenv = env()}))
    assert.are.equal("home-pass", opts.password)
  end)

  it("defaults the user to $USER for the password file", function()
    local opts = assert(conninfo.resolve({}, {getenv = env({USER = "alice"})}))
    assert.are.equal("home-pass", opts.password)
    assert.is_nil(opts.user)
  end)

  it("matches the merged host, port and database", function()
    assert.are.equal("bob-6000", assert(conninfo.resolve("host=db dbname=app user=bob",
      {getenv = env({PGPORT = "6000"})})).password)
  end)

  it("reads the password file named by passfile or PGPASSFILE", function()
    local other = write_file("other-pgpass", "*:*:*:*:from-other\n")
    assert.are.equal("from-other", assert(conninfo.resolve({user = "alice", passfile = other},
      {getenv = env()})).password)
    assert.are.equal("from-other", assert(conninfo.resolve({user = "alice"},
      {getenv = env({PGPASSFILE = other})})).password)
  end)

  it("leaves a given password alone", function()
    assert.are.equal("given", assert(conninfo.resolve({user = "alice", password = "given"},
      {getenv = env()})).password)
  end)

  it("sends the warning about an open password file to on_notice", function()
    local open = write_file("open-pgpass", "*:*:*:*:secret\n", "604")
    local notices = {}
    local opts = assert(conninfo.resolve({user = "u", passfile = open,
      on_notice = function(notice) notices[#notices + 1] = notice end}, {getenv = env()}))
    assert.is_nil(opts.password)
    assert.are.same({{severity = "WARNING", message = "password file '" .. open
      .. "' is ignored: group or others may access it; its mode must be 0600 or less"}},
      notices)
  end)

  it("raises for arguments of the wrong type", function()
    assert.has_error(function() conninfo.resolve(42) end,
      "bad argument #1 to 'resolve' (string or table expected, got number)")
    assert.has_error(function() conninfo.resolve({}, "env") end,
      "bad argument #2 to 'resolve' (table or nil expected, got string)")
  end)

  it("returns parse errors", function()
    assert_config_error("unknown connection option 'bogus'", "bogus",
      conninfo.resolve("bogus=1", {getenv = env()}))
  end)

  it("looks for no password file without HOME or passfile", function()
    assert(passfile)
    local opts = assert(conninfo.resolve({user = "alice"}, {getenv = fake_env({})}))
    assert.is_nil(opts.password)
  end)
end)
