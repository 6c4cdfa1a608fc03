-- ssl.lua: connect the way the PG project's SSL chapter does, with a
-- client certificate whose CN is the database user, and show what the
-- session looks like.
--
--   lua5.4 examples/ssl.lua HOST PORT CERT_DIR [USER] [DATABASE]
--
-- CERT_DIR holds root (ca.crt), the client certificate and key
-- (USER.crt, USER.key).  The server's pg_hba.conf says
-- "hostssl all all all cert" for this user.

local pg = require "pg"

local host, port, dir = arg[1], tonumber(arg[2]), arg[3]
local user, database = arg[4] or "certuser", arg[5] or "pgtest"
if not (host and port and dir) then
  io.stderr:write("usage: lua5.4 examples/ssl.lua HOST PORT CERT_DIR [USER] [DATABASE]\n")
  os.exit(2)
end

local conn <close>, err = pg.connect {
  host = host,
  port = port,
  user = user,
  database = database,
  ["ssl?"] = true,
  ["ssl-context"] = pg.ssl.context {
    ["key-file"] = dir .. "/" .. user .. ".key",
    ["cert-file"] = dir .. "/" .. user .. ".crt",
    ["ca-cert-file"] = dir .. "/ca.crt",
  },
}
if not conn then
  io.stderr:write("connection failed: ", tostring(err), "\n")
  os.exit(1)
end

local res = assert(conn:query("select current_user as who, version() as version"))
local tls = conn:tls_info()

print("connected as:   " .. res[1].who)
print("server:         " .. res[1].version)
print("TLS version:    " .. tls.version)
print("TLS cipher:     " .. tls.cipher)
print("server subject: " .. tls.peer_subject)
