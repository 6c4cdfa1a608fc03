-- Specs for pg.edn, the EDN reader used for configuration files.  Pure Lua: no server
-- and no compiled module are needed.

local edn = require "pg.edn"

local null = edn.null

-- Builders for the expected values of collections and symbols.
local function vec(...) return setmetatable({ ... }, edn.vector_mt) end
local function list(...) return setmetatable({ ... }, edn.list_mt) end
local function sym(name) return setmetatable({ symbol = name }, edn.symbol_mt) end
local function set(...)
  local s = {}
  for _, v in ipairs({ ... }) do
    s[v] = true
  end
  return setmetatable(s, edn.set_mt)
end

-- Checks that the metatables of actual and of the tables inside it (under non-table keys)
-- are those of expected; assert.same looks at contents only.
local function check_kinds(expected, actual)
  if type(expected) ~= "table" then
    return
  end
  assert.equal(getmetatable(expected), getmetatable(actual))
  for k, v in pairs(expected) do
    if type(k) ~= "table" then
      check_kinds(v, actual[k])
    end
  end
end

-- Asserts that actual is the same EDN value as expected: same contents, same kinds.
local function same(expected, actual)
  assert.same(expected, actual)
  check_kinds(expected, actual)
end

-- Reads text and fails the test with the reader's message if reading fails.
local function read(text, opts)
  local value, err = edn.read(text, opts)
  assert(err == nil, err and tostring(err))
  return value
end

-- Reads text that must fail; returns the error table.
local function read_error(text, opts)
  local value, err = edn.read(text, opts)
  assert(value == nil, "expected an error, got a value for " .. text)
  assert.is_table(err)
  return err
end

-- Returns the one element of the set t, checking that it has no other.
local function only_key(t)
  local key, value = next(t)
  assert.is_true(value)
  assert.is_nil(next(t, key))
  return key
end

describe("pg.edn", function()
  it("runs on Lua 5.4", function()
    assert.equal("Lua 5.4", _VERSION)
  end)

  describe("reads scalars", function()
    local cases = {
      { "nil", null },
      { "true", true },
      { "false", false },
      { '"hello"', "hello" },
      { '""', "" },
      { '"two\nlines"', "two\nlines" },
      { "0", 0 },
      { "42", 42 },
      { "-7", -7 },
      { "+7", 7 },
      { "-0", 0 },
      { "42N", 42 },
      { "9223372036854775807", math.maxinteger },
      { "-9223372036854775808", math.mininteger },
      { "9223372036854775808", "9223372036854775808" },
      { "-123456789012345678901234567890N", "-123456789012345678901234567890" },
      { "+123456789012345678901234567890", "123456789012345678901234567890" },
      { "1.5", 1.5 },
      { "-0.25", -0.25 },
      { "0.5", 0.5 },
      { "1e3", 1000.0 },
      { "1E+3", 1000.0 },
      { "2.5e-1", 0.25 },
      { "1.5M", 1.5 },
      { "7M", 7.0 },
      { ":fred", "fred" },
      { ":my/fred", "my/fred" },
      { ":ssl?", "ssl?" },
      { ":ssl-context", "ssl-context" },
      { ":a.b*c+d!e-f_g?h$i%j&k=l<m>n:o#p", "a.b*c+d!e-f_g?h$i%j&k=l<m>n:o#p" },
      { ":nil", "nil" },
      { "\\c", "c" },
      { "\\A", "A" },
      { "\\newline", "\n" },
      { "\\return", "\r" },
      { "\\space", " " },
      { "\\tab", "\t" },
      { "\\formfeed", "\f" },
      { "\\backspace", "\b" },
      { "\\u0041", "A" },
      { "\\u00e9", "\u{e9}" },
      { "\\u", "u" },
      { "\\\\", "\\" },
      { "\\(", "(" },
      { "\\\u{e9}", "\u{e9}" },
    }
    for _, case in ipairs(cases) do
      it(case[1] .. " exactly", function()
        local value = read(case[1])
        assert.equal(case[2], value)
        assert.equal(math.type(case[2]), math.type(value))
      end)
    end
  end)

  describe("reads string escapes", function()
    local cases = {
      { [["a\tb"]], "a\tb" },
      { [["a\rb"]], "a\rb" },
      { [["a\nb"]], "a\nb" },
      { [["a\\b"]], "a\\b" },
      { [["a\"b"]], 'a"b' },
      { [["a\bb"]], "a\bb" },
      { [["a\fb"]], "a\fb" },
      { [["a\/b"]], "a/b" },
      { [["\u0041\u00e9\u20AC"]], "A\u{e9}\u{20ac}" },
      { [["\uD83D\uDE00"]], "\u{1F600}" },
      { [["x\ud83d\ude00y"]], "x\u{1F600}y" },
      { '"caf\u{e9}"', "caf\u{e9}" },
    }
    for _, case in ipairs(cases) do
      it(case[1], function()
        assert.equal(case[2], read(case[1]))
      end)
    end
  end)

  describe("reads symbols", function()
    local names = { "foo", "my-namespace/foo", "+", "-", ".", "<>", "/", "a/b", "-a",
      "+a", ".a", "a1", "nil?", "*out*", "a#b", "a:b", "->x" }
    for _, name in ipairs(names) do
      it(name .. " as a symbol table", function()
        local value = read(name)
        assert.equal(edn.symbol_mt, getmetatable(value))
        assert.equal(name, value.symbol)
        assert.equal(name, tostring(value))
        assert.equal(sym(name), value)
      end)
    end
  end)

  describe("reads collections", function()
    it("a vector as a sequence with the vector metatable", function()
      local value = read("[a b 42]")
      assert.equal(edn.vector_mt, getmetatable(value))
      assert.equal(3, #value)
      same(vec(sym("a"), sym("b"), 42), value)
    end)

    it("a list as a sequence with the list metatable", function()
      local value = read("(a b 42)")
      assert.equal(edn.list_mt, getmetatable(value))
      same(list(sym("a"), sym("b"), 42), value)
    end)

    it("nil inside a vector as edn.null", function()
      local value = read("[1 nil 3]")
      assert.equal(3, #value)
      assert.equal(null, value[2])
    end)

    it("empty collections", function()
      same(vec(), read("[]"))
      same(list(), read("()"))
      same({}, read("{}"))
      assert.equal(edn.set_mt, getmetatable(read("#{}")))
      assert.is_nil(next(read("#{}")))
    end)

    it("a map with the README's mixed keys", function()
      local value = read('{:a 1, "foo" :bar, [1 2 3] four}')
      assert.is_nil(getmetatable(value))
      assert.equal(1, value.a)
      assert.equal("bar", value.foo)
      local vector_key
      for k in pairs(value) do
        if type(k) == "table" then
          vector_key = k
        end
      end
      same(vec(1, 2, 3), vector_key)
      assert.equal(sym("four"), value[vector_key])
    end)

    it("a map with number, boolean and character keys", function()
      same({ [1] = "one", [2.5] = "x", [true] = "yes", c = 3 },
        read('{1 "one" 2.5 "x" true "yes" \\c 3}'))
    end)

    it("a nil map value as edn.null so the key stays present", function()
      assert.equal(null, read("{:a nil}").a)
    end)

    it("a set as a table of its elements mapped to true", function()
      local value = read("#{1 :a \"b\" nil}")
      assert.equal(edn.set_mt, getmetatable(value))
      same(set(1, "a", "b", null), value)
    end)

    it("the README's set #{a b [1 2 3]}", function()
      local value = read("#{a b [1 2 3]}")
      local count, vector = 0, nil
      for k, v in pairs(value) do
        assert.is_true(v)
        count = count + 1
        if getmetatable(k) == edn.vector_mt then
          vector = k
        end
      end
      assert.equal(3, count)
      same(vec(1, 2, 3), vector)
    end)

    it("nested collections", function()
      local value = read('{:servers [{:host "a" :port 1} {:host "b" :port 2}]'
        .. ' :opts {:retry (1 2 #{3})}}')
      same(vec({ host = "a", port = 1 }, { host = "b", port = 2 }), value.servers)
      assert.equal(edn.list_mt, getmetatable(value.opts.retry))
      assert.equal(1, value.opts.retry[1])
      assert.equal(3, only_key(value.opts.retry[3]))
    end)

    it("collections without whitespace between them", function()
      same(vec(vec(1), list(2), { a = 3 }, "s", 4),
        read('[[1](2){:a 3}"s"4]'))
    end)
  end)

  describe("skips blanks", function()
    local cases = {
      { "[1,2,,3]", vec(1, 2, 3) },
      { "  \t\r\n 42 \n", 42 },
      { "; a comment\n42 ; another\n", 42 },
      { "[1 ; two\n 3]", vec(1, 3) },
      { "42;no newline at the end", 42 },
      { "[1 #_2 3]", vec(1, 3) },
      { "[a b #_foo 42]", vec(sym("a"), sym("b"), 42) },
      { "[1 #_ #_ 2 3 4]", vec(1, 4) },
      { "[1 #_2]", vec(1) },
      { "[#_1]", vec() },
      { "#_1 2", 2 },
      { "2 #_1", 2 },
      { "[1 #_[2 [3 #_4]] 5]", vec(1, 5) },
      { "[1 #_ ; comment\n 2 3]", vec(1, 3) },
      { "\239\187\19142", 42 },
    }
    for _, case in ipairs(cases) do
      it(string.format("%q", case[1]), function()
        same(case[2], read(case[1]))
      end)
    end

    it("discards a key and a value before the closing brace", function()
      same({ a = 1 }, read("{:a 1 #_:b #_2}"))
    end)

    it("does not call tag handlers inside a discarded element", function()
      local calls = 0
      local opts = { readers = { x = function(v) calls = calls + 1; return v end } }
      same(vec(2), read("[#_#x 1 #_#unknown 5 #x 2]", opts))
      assert.equal(1, calls)
    end)
  end)

  describe("reads tagged elements", function()
    it("with a reader given for the tag", function()
      local opts = { readers = { ["myapp/Person"] = function(m)
        return m.first .. " " .. m.last
      end } }
      assert.equal("Fred Mertz", read('#myapp/Person {:first "Fred" :last "Mertz"}', opts))
    end)

    it("with a reader for a tag without a namespace", function()
      local opts = { readers = { double = function(n) return n * 2 end } }
      same(vec(2, 4), read("[#double 1 #double\n 2]", opts))
    end)

    it("with nested tags applied from the inside out", function()
      local opts = { readers = { inc = function(n) return n + 1 end } }
      assert.equal(3, read("#inc #inc 1", opts))
    end)

    it("with the default handler for tags without a reader", function()
      local seen = {}
      local opts = {
        readers = { known = function(v) return "known:" .. v end },
        default = function(tag, value)
          seen[#seen + 1] = tag
          return { tag = tag, value = value }
        end,
      }
      local value = read('[#known "a" #other/thing 5]', opts)
      assert.equal("known:a", value[1])
      same({ tag = "other/thing", value = 5 }, value[2])
      same({ "other/thing" }, seen)
    end)

    it("giving edn.null when a handler returns nil", function()
      local opts = { readers = { gone = function() return nil end } }
      same(vec(1, null), read("[1 #gone 2]", opts))
    end)

    it("#inst as the unchanged string", function()
      local cases = {
        "1985-04-12T23:20:50.52Z",
        "1996-12-19T16:39:57-08:00",
        "1990-12-31T23:59:60Z",
        "2000-02-29T00:00:00+00:00",
        "1937-01-01T12:00:27.87+00:20",
      }
      for _, s in ipairs(cases) do
        assert.equal(s, read('#inst "' .. s .. '"'))
      end
    end)

    it("#uuid as the lower-case string", function()
      assert.equal("f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        read('#uuid "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"'))
      assert.equal("f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        read('#uuid "F81D4FAE-7DEC-11D0-A765-00A0C91E6BF6"'))
    end)

    it("#inst and #uuid with readers that replace the built-in ones", function()
      local opts = { readers = {
        inst = function(s) return { inst = s } end,
        uuid = function(s) return "id:" .. s end,
      } }
      same({ inst = "not checked" }, read('#inst "not checked"', opts))
      assert.equal("id:x", read('#uuid "x"', opts))
    end)

    it("the configuration of the certificate-auth example", function()
      local received
      local context = function() return "context" end
      local opts = { readers = { ["pg/ssl-context"] = function(map)
        received = map
        return context
      end } }
      local t = read('{:ssl? true :ssl-context #pg/ssl-context '
        .. '{:key-file "k" :cert-file "c"}}', opts)
      assert.is_true(t["ssl?"])
      assert.equal(context, t["ssl-context"])
      same({ ["key-file"] = "k", ["cert-file"] = "c" }, received)
    end)
  end)

  describe("reports errors", function()
    -- Each case: text, expected line, expected column, expected message.
    local cases = {
      { "", 1, 1, "expected an element but found end of input" },
      { "  ; only a comment\n", 2, 1, "expected an element but found end of input" },
      { '{:a\n  "unfinished', 2, 14, "unterminated string starting at line 2, column 3" },
      { "[1 2", 1, 5, "unterminated vector starting at line 1, column 1: "
        .. "expected ']' but found end of input" },
      { "{:a [1 2)}", 1, 9, "expected ']' to close the vector starting at line 1, "
        .. "column 5 but found ')'" },
      { "(1 2", 1, 5, "unterminated list starting at line 1, column 1: "
        .. "expected ')' but found end of input" },
      { "#{1", 1, 4, "unterminated set starting at line 1, column 2: "
        .. "expected '}' but found end of input" },
      { "]", 1, 1, "unexpected ']'" },
      { "1 2", 1, 3, "expected end of input after the element but found '2'" },
      { "{:a 1 :b}", 1, 1, "map literal must contain an even number of forms, found 3" },
      { "{:a 1\n :a 2}", 2, 2, "duplicate map key :a" },
      { '{:a 1 "a" 2}', 1, 7, 'duplicate map key "a"' },
      { "{1 :x 1.0 :y}", 1, 7, "duplicate map key 1.0" },
      { "{[1 2] 1 [1 2] 2}", 1, 10, "duplicate map key [1 2]" },
      { "{nil 1}", 1, 2, "map key cannot be nil" },
      { "#{1 2 1}", 1, 7, "duplicate set element 1" },
      { "#{[1 2] (1 2)}", 1, 9, "duplicate set element (1 2)" },
      { "#{{:a 1 :b 2} {:b 2 :a 1}}", 1, 15, "duplicate set element {:b 2 :a 1}" },
      { "[\n  #foo/bar 1]", 2, 3, "unknown tag #foo/bar" },
      { "#foo", 1, 5, "expected an element after #foo but found end of input" },
      { "[#foo]", 1, 6, "expected an element after #foo but found ']'" },
      { "#1 2", 1, 1, "expected '{', '_' or a tag name after '#' but found '1'" },
      { "# x", 1, 1, "expected '{', '_' or a tag name after '#' but found a space" },
      { "#_", 1, 3, "expected an element to discard after #_ but found end of input" },
      { "[1 #_]", 1, 6, "expected an element to discard after #_ but found ']'" },
      { "01", 1, 1, "invalid number 01" },
      { "1.", 1, 1, "invalid number 1." },
      { "1.5N", 1, 1, "invalid number 1.5N" },
      { "1e", 1, 1, "invalid number 1e" },
      { "0x10", 1, 1, "invalid number 0x10" },
      { "-01", 1, 1, "invalid number -01" },
      { "[1 2a]", 1, 4, "invalid number 2a" },
      { ".5", 1, 1, "invalid symbol .5" },
      { "a/b/c", 1, 1, "invalid symbol a/b/c" },
      { "a/", 1, 1, "invalid symbol a/" },
      { "/a", 1, 1, "invalid symbol /a" },
      { "[x @y]", 1, 4, "unexpected character '@'" },
      { ":", 1, 1, "invalid keyword :" },
      { "::a", 1, 1, "invalid keyword ::a" },
      { ":/", 1, 1, "invalid keyword :/" },
      { ":1a", 1, 1, "invalid keyword :1a" },
      { [["\q"]], 1, 2, "unknown escape \\q in string" },
      { [["\u12"]], 1, 2, "expected four hex digits after \\u but found '1'" },
      { [["\uD83D"]], 1, 2, "lone surrogate \\uD83D: a high surrogate must be followed by "
        .. "a low one (\\uDC00 to \\uDFFF)" },
      { [["\uDE00"]], 1, 2, "lone surrogate \\uDE00: a low surrogate must follow a high one" },
      { "\\abc", 1, 1, "unsupported character \\abc" },
      { "\\uD800", 1, 1, "character \\uD800 is a lone surrogate" },
      { "\\ x", 1, 1, "expected a character after \\ but found a space" },
      { '"\255"', 1, 2, "invalid UTF-8 byte 0xFF" },
      { '#inst "1985-04-12"', 1, 7, "#inst expects an RFC 3339 date-time such as "
        .. '1985-04-12T23:20:50.52Z but found "1985-04-12"' },
      { '#inst "1985-04-12T23:20:50"', 1, 7,
        '#inst "1985-04-12T23:20:50" needs a time zone: Z or +hh:mm / -hh:mm' },
      { '#inst "2001-02-29T00:00:00Z"', 1, 7,
        '#inst "2001-02-29T00:00:00Z" is not a valid date and time' },
      { "#inst 5", 1, 7, "#inst expects a string" },
      { '#uuid "f81d4fae-7dec-11d0-a765"', 1, 7, "#uuid expects a string of the form "
        .. 'xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx but found "f81d4fae-7dec-11d0-a765"' },
      { "[\u{e9}\u{e9} @]", 1, 5, "unexpected character '@'" },
    }
    for _, case in ipairs(cases) do
      local text, line, column, message = case[1], case[2], case[3], case[4]
      it(string.format("%q at line %d, column %d", text, line, column), function()
        local err = read_error(text)
        assert.equal("config", err.kind)
        assert.equal(line, err.line)
        assert.equal(column, err.column)
        assert.equal(string.format("line %d, column %d: %s", line, column, message),
          err.message)
        assert.equal(err.message, tostring(err))
      end)
    end

    it("when a reader raises, naming the tag", function()
      local opts = { readers = { bad = function() error("no good", 0) end } }
      local err = read_error("[1\n #bad 2]", opts)
      assert.equal("line 2, column 2: reader for #bad failed: no good", err.message)
    end)

    it("when a reader returns nil and a message", function()
      local opts = { readers = { bad = function() return nil, "cannot build it" end } }
      local err = read_error("#bad 2", opts)
      assert.equal("line 1, column 1: reader for #bad failed: cannot build it", err.message)
    end)

    it("when collections nest too deeply", function()
      local err = read_error(string.rep("[", 10000))
      assert.matches("nested deeper than", err.message)
    end)
  end)

  describe("read_file", function()
    local path = os.tmpname()
    teardown(function()
      os.remove(path)
    end)

    -- Writes text to the temporary file.
    local function write(text)
      local f = assert(io.open(path, "wb"))
      f:write(text)
      f:close()
    end

    it("reads the element in a file", function()
      write('; settings\n{:host "127.0.0.1" :port 5432}\n')
      same({ host = "127.0.0.1", port = 5432 }, edn.read_file(path))
    end)

    it("puts the path in front of syntax errors", function()
      write("{:host\n")
      local value, err = edn.read_file(path)
      assert.is_nil(value)
      assert.equal(path, err.source)
      assert.equal(2, err.line)
      assert.equal(1, err.column)
      assert.equal(path .. ": line 2, column 1: unterminated map starting at line 1, "
        .. "column 1: expected '}' but found end of input", tostring(err))
    end)

    it("names the path and the reason for a missing file", function()
      local value, err = edn.read_file("/nonexistent/db.edn")
      assert.is_nil(value)
      assert.equal("config", err.kind)
      assert.equal("cannot open /nonexistent/db.edn: No such file or directory",
        tostring(err))
    end)
  end)

  describe("raises on misuse", function()
    it("when text is not a string", function()
      assert.has_error(function() edn.read(42) end,
        "bad argument #1 to 'read' (string expected, got number)")
    end)

    it("when opts is not a table", function()
      assert.has_error(function() edn.read("1", "x") end,
        "bad argument #2 to 'read' (options must be a table, got string)")
    end)

    it("when a reader is not a function", function()
      assert.has_error(function() edn.read("1", { readers = { x = 1 } }) end,
        'bad argument #2 to \'read\' (options.readers["x"] must be a function, got number)')
    end)

    it("when read_file is given no path", function()
      assert.has_error(function() edn.read_file() end,
        "bad argument #1 to 'read_file' (string expected, got nil)")
    end)
  end)

  it("keeps edn.null read-only", function()
    assert.equal("edn.null", tostring(null))
    assert.has_error(function() null.x = 1 end)
  end)
end)
