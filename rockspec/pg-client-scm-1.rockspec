rockspec_format = "3.0"
package = "pg-client"
version = "scm-1"

source = {
  url = "git+https://example.invalid/pg-client.git",
}

description = {
  summary = "PostgreSQL client with its own wire protocol and GnuTLS-based TLS",
  detailed = [[
A PostgreSQL client for Lua 5.4.  Its C core speaks the PostgreSQL wire
protocol itself (no libpq), authenticates with trust, password, MD5,
SCRAM-SHA-256 and client certificates, and does TLS with GnuTLS.
]],
  license = "MIT",
}

dependencies = {
  "lua >= 5.4",
}

external_dependencies = {
  GNUTLS = {
    header = "gnutls/gnutls.h",
    library = "gnutls",
  },
}

build = {
  type = "builtin",
  modules = {
    ["pg"] = "lua/pg/init.lua",
    ["pg.options"] = "lua/pg/options.lua",
    ["pg.ssl"] = "lua/pg/ssl.lua",
    ["pg.edn"] = "lua/pg/edn.lua",
    ["pg.config"] = "lua/pg/config.lua",
    ["pg.conninfo"] = "lua/pg/conninfo.lua",
    ["pg.types"] = "lua/pg/types.lua",
    ["pg.core"] = {
      sources = {
        "csrc/buffer.c", "csrc/protocol.c", "csrc/auth.c", "csrc/tls.c",
        "csrc/socket.c", "csrc/conn.c", "csrc/binding.c",
        "csrc/binding_values.c",
      },
      defines = { "_GNU_SOURCE" },
      incdirs = { "csrc", "$(GNUTLS_INCDIR)" },
      libdirs = { "$(GNUTLS_LIBDIR)" },
      libraries = { "gnutls" },
    },
  },
}
