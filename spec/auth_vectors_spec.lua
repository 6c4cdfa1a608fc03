-- Known-answer tests of the C authentication code (csrc/auth.c): builds
-- spec/c/test_auth.c with csrc/auth.c, csrc/buffer.c and csrc/tls.c into
-- a temporary program, runs it and checks its "ok N - ..." lines.  Needs
-- gcc, pkg-config and the GnuTLS development files; no server.

local popen = io.popen
local remove = os.remove
local tmpname = os.tmpname
local concat = table.concat

local H = require "support.helper"

-- The repository root, found from this file's own path.
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."

local SOURCES = {
  "spec/c/test_auth.c",
  "csrc/auth.c",
  "csrc/buffer.c",
  "csrc/tls.c",
}

local shell_quote = H.shell_quote

-- Runs a shell command; returns true when it exited with status 0, and
-- everything it wrote to stdout and stderr.
local function run(command)
  local pipe = assert(popen(command .. " 2>&1", "r"))
  local output = pipe:read("a")
  local ok, how, code = pipe:close()
  return ok == true and how == "exit" and code == 0, output
end

-- The compiler command line that builds the test program at binary.
local function build_command(binary)
  local files = {}
  for i, source in ipairs(SOURCES) do
    files[i] = shell_quote(ROOT .. "/" .. source)
  end
  return concat({
    "gcc -Wall -Wextra -Werror",
    "-I" .. shell_quote(ROOT .. "/csrc"),
    concat(files, " "),
    "$(pkg-config --cflags --libs gnutls)",
    "-o", shell_quote(binary),
  }, " ")
end

describe("the SCRAM and MD5 code", function()
  local binary
  local built, build_output

  lazy_setup(function()
    binary = tmpname()
    built, build_output = run(build_command(binary))
  end)

  lazy_teardown(function()
    if binary then
      remove(binary)
    end
  end)

  it("builds the C unit tests", function()
    assert(built, "the build failed:\n" .. (build_output or ""))
  end)

  it("passes the SCRAM and MD5 known-answer tests", function()
    assert(built, "the C unit tests did not build")
    local ok, output = run(shell_quote(binary))
    local failed = output:match("\nnot ok [^\n]*") or output:match("^not ok [^\n]*")
    assert(ok and not failed, "the C unit tests failed:\n" .. output)
    assert(output:match("\n1%.%.%d+\n"), "no plan line in:\n" .. output)
  end)
end)
