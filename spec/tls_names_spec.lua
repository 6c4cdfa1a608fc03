-- Specs for the host name rules of server certificate verification
-- (csrc/tls.c), which follow libpq's: subjectAltName dNSName and
-- iPAddress entries, the CN only when there is no subjectAltName of the
-- host's type, no case, a leading "*." for exactly one label, addresses
-- compared as addresses.  Builds spec/c/tls_names.c with csrc/tls.c and
-- csrc/buffer.c, makes certificates with openssl, and asks the program
-- whether each certificate names each host.  Needs gcc, pkg-config, the
-- GnuTLS development files and openssl; no server.

local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."

local H = require "support.helper"
local quote = H.shell_quote

-- Runs a shell command; returns whether it succeeded and its output.
local function run(command)
  local pipe = assert(io.popen(command .. " 2>&1", "r"))
  local output = pipe:read("a")
  local ok = pipe:close()
  return ok == true, output
end

-- Certificates by name: the subject CN (or nil) and subjectAltName text
-- for openssl (or nil for none).
local CERTS = {
  usual = { cn = "localhost", san = "DNS:localhost,IP:127.0.0.1" },
  cn_only = { cn = "db.example.com" },
  dns_and_cn = { cn = "b.example.com", san = "DNS:a.example.com" },
  wildcard = { cn = "x", san = "DNS:*.example.com" },
  wildcard_cn = { cn = "*.example.com" },
  partial_wildcard = { cn = "x", san = "DNS:f*.example.com" },
  bare_star = { cn = "x", san = "DNS:*" },
  ip_san = { cn = "10.0.0.2", san = "IP:10.0.0.1" },
  dns_san_ip_cn = { cn = "10.0.0.5", san = "DNS:db.example.com" },
  ip_san_dns_cn = { cn = "localhost", san = "IP:127.0.0.1" },
  ipv6 = { cn = "x", san = "IP:::1,IP:2001:db8::5" },
  ip_in_dns = { cn = "x", san = "DNS:192.0.2.1" },
  wildcard_ip = { cn = "x", san = "DNS:*.0.2.1" },
  ipv6_cn = { cn = "2001:db8::7" },
}

-- Cases: certificate, host, whether it matches.
local CASES = {
  { "usual", "localhost", true },
  { "usual", "LocalHost", true },
  { "usual", "127.0.0.1", true },
  { "usual", "::1", false },
  { "usual", "other.example.com", false },
  { "cn_only", "db.example.com", true },
  { "cn_only", "DB.Example.COM", true },
  { "cn_only", "db.example.org", false },
  { "dns_and_cn", "a.example.com", true },
  { "dns_and_cn", "b.example.com", false },
  { "wildcard", "x.example.com", true },
  { "wildcard", "X.EXAMPLE.com", true },
  { "wildcard", "example.com", false },
  { "wildcard", "a.b.example.com", false },
  { "wildcard", ".example.com", false },
  { "wildcard_cn", "x.example.com", true },
  { "wildcard_cn", "a.b.example.com", false },
  { "partial_wildcard", "foo.example.com", false },
  { "bare_star", "localhost", false },
  { "ip_san", "10.0.0.1", true },
  { "ip_san", "10.0.0.2", false },
  { "dns_san_ip_cn", "10.0.0.5", true },
  { "dns_san_ip_cn", "db.example.com", true },
  { "ip_san_dns_cn", "localhost", true },
  { "ip_san_dns_cn", "127.0.0.1", true },
  { "ipv6", "::1", true },
  { "ipv6", "0:0:0:0:0:0:0:1", true },
  { "ipv6", "2001:DB8:0::5", true },
  { "ipv6", "127.0.0.1", false },
  { "ip_in_dns", "192.0.2.1", true },
  { "wildcard_ip", "192.0.2.1", false },
  { "ipv6_cn", "2001:db8:0:0::7", true },
}

describe("host name verification", function()
  local dir, binary, built, build_output

  lazy_setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(run("mkdir -p " .. quote(dir)))
    binary = dir .. "/tls_names"
    built, build_output = run(table.concat({
      "gcc -Wall -Wextra -Werror -I" .. quote(ROOT .. "/csrc"),
      quote(ROOT .. "/spec/c/tls_names.c"), quote(ROOT .. "/csrc/tls.c"),
      quote(ROOT .. "/csrc/buffer.c"),
      "$(pkg-config --cflags --libs gnutls) -o", quote(binary),
    }, " "))
    local key = dir .. "/key.pem"
    assert(run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "
               .. quote(key)))
    for name, c in pairs(CERTS) do
      local ok, out = run(table.concat({
        "openssl req -x509 -days 30 -key", quote(key),
        "-subj", quote("/O=pg-client" .. (c.cn and "/CN=" .. c.cn or "")),
        c.san and "-addext " .. quote("subjectAltName=" .. c.san) or "",
        "-out", quote(dir .. "/" .. name .. ".pem"),
      }, " "))
      assert(ok, out)
    end
  end)

  lazy_teardown(function()
    if dir then os.execute("rm -rf " .. quote(dir)) end
  end)

  -- What the program says of cert and host: "match", "no ..." or "error ...".
  local function verdict(cert, host)
    assert(built, "the test program did not build:\n" .. tostring(build_output))
    local ok, out = run(quote(binary) .. " " .. quote(dir .. "/" .. cert .. ".pem") .. " "
                        .. quote(host))
    assert(ok, out)
    return (out:gsub("\n$", ""))
  end

  for _, case in ipairs(CASES) do
    local cert, host, matches = case[1], case[2], case[3]
    it(string.format("%s %s for a certificate with %s", matches and "accepts" or "rejects",
                     host, CERTS[cert].san and ("subjectAltName " .. CERTS[cert].san
                       .. " and CN " .. CERTS[cert].cn) or ("only the CN " .. CERTS[cert].cn)),
      function()
        local got = verdict(cert, host)
        if matches then
          assert.are.equal("match", got)
        else
          assert.matches("^no ", got)
        end
      end)
  end

  it("names the host and every name the certificate carries when they differ", function()
    assert.are.equal("no server certificate does not match host name 'other.example.com' "
                     .. "(it names DNS:localhost, IP:127.0.0.1, CN=localhost)",
                     verdict("usual", "other.example.com"))
  end)

  it("names IPv6 addresses in the message", function()
    assert.matches("IP:2001:db8::5", verdict("ipv6", "::2"), 1, true)
  end)
end)
