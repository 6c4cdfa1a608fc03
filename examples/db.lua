-- Connection settings for a server that authenticates clients by certificate, as a Lua
-- config file: the same settings as examples/db.edn.
--
-- Load with:
--   local config = require "pg.config"
--   local conn = pg.connect(assert(config.load("examples/db.lua")))
--
-- The file runs in an environment without os, io or require; ssl_context{...} stands
-- for the #pg/ssl-context tag of the EDN file.  The paths below are examples: point them
-- at your own files.
local certs = "/etc/pg/certs/"

return {
  host = "127.0.0.1",
  port = 5432,
  user = "certuser",           -- must match the CN of the client certificate
  database = "pgtest",

  -- Speak TLS and authenticate with the client certificate instead of a password.
  ssl = true,
  ssl_context = ssl_context {
    key_file = certs .. "client.key",
    cert_file = certs .. "client.crt",
    ca_cert_file = certs .. "root.crt", -- the CA that signed the server's certificate
  },
}
