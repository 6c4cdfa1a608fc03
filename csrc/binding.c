/*
 * binding.c - the Lua face of the C core, and the only unit that
 * includes lua.h.  It defines three userdata types:
 *
 *   pg.core.context   TLS credentials (tls.h)
 *   pg.core.conn      a connection (conn.h) and its native socket
 *   error tables      plain tables with the metatable "pg.error"
 *
 * Results are built straight from DataRow bytes into Lua tables.  Two
 * drivers move bytes: a native one in C over socket.h, with waits bounded
 * by deadlines, and a step-wise one for transports written in Lua, where
 * each call processes what was fed and says what it needs next.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "binding_values.h"
#include "conn.h"
#include "protocol.h"
#include "socket.h"
#include "tls.h"

#define CONTEXT_MT "pg.core.context"
#define CONN_MT "pg.core.conn"
#define ERROR_MT "pg.error"

/* User values of a connection userdata. */
enum {
    UV_CONTEXT = 1,     /* the pg.core.context in use, kept alive */
    UV_NOTICE,          /* on_notice function */
    UV_RESULTS,         /* results of the query being run */
    UV_CURRENT,         /* the result being filled */
    UV_COLUMNS,         /* its row keys, in column order */
    UV_ERROR,           /* the first error of the query */
    UV_DECODERS,        /* type OID -> decoder function */
    UV_JSON_DECODE,     /* JSON decoder, or nil to keep JSON text */
    UV_JSON_ENCODE,     /* JSON encoder, or nil */
    UV_PARAMS,          /* ParameterDescription of a prepared statement */
    UV_FAILURE,         /* the error that ended the connection */
    UV_LAST_COLUMNS,    /* columns of the last RowDescription, for reuse */
    UV_LAST_FIELDS,     /* and its fields */
    UV_ARRAYS,          /* array type OID -> element OID, from the catalog */
    UV_FIELDS,          /* the fields of the result being filled */
    UV_LAST_MT,         /* metatable of the last result shape, for reuse */
    UV_EMPTY_COLUMNS,   /* columns of results without rows (INSERT, ...) */
    UV_EMPTY_FIELDS,    /* and their fields */
    UV_TAG_SHAPES,      /* command tag -> metatable, for results without
                           columns (see set_shape) */
    UV_COUNT = UV_TAG_SHAPES
};

/* What the operation in progress is. */
enum op { OP_NONE, OP_QUERY, OP_EXECUTE, OP_BATCH, OP_PREPARE, OP_CLOSE };

typedef struct context {
    pgc_tls_ctx *ctx;
    char system_error[PGC_TLS_ERRLEN];  /* why system trust failed */
} context;

typedef struct binding {
    pgc_conn *c;
    lua_State *L;          /* the state running the current call */
    int fd;
    int64_t deadline;      /* for the startup, 0 for none */
    lua_Number timeout;    /* seconds each later wait may take, 0: none */
    int may_cancel;        /* a timed-out wait may send a CancelRequest */
    int cancel_sent;       /* one was sent for the operation in progress */
    int started;           /* startup finished */
    int closed;
    /* decoding settings */
    int rows_arrays;       /* connection default: rows as arrays */
    int numeric_number;    /* numeric values as Lua numbers */
    int c_decimal_point;   /* strtod reads '.': checked per description */
    /* the operation in progress */
    enum op op;
    int op_rows_arrays;
    int has_columns;
    int ncolumns;
    pgc_column *columns;
    lua_Integer nrows;
    lua_Integer nresults;
    int copy_out;
    /* what the Lua layer said, for the fast paths (see fast_ready) */
    int dirty;             /* work is pending before the next operation */
    int has_encoders;      /* registered encoders apply to parameters */
    lua_Integer types_synced;    /* type registry version synced, or -1 */
    int has_error;         /* UV_ERROR is set */
    int has_params;        /* UV_PARAMS is set */
    int names_missing;     /* a result's column type has no name known
                              here; for all results of the operation,
                              kept after it until the next one begins */
    int last_names_missing;      /* that of UV_LAST_COLUMNS/FIELDS */
    pgc_decode_env env;    /* for the slots of process(): load_slots */
    pgc_buf scratch;       /* decoding and Bind encoding */
    pgc_buf last_desc;     /* body of the last RowDescription */
    unsigned long desc_gen;      /* counts column descriptions made */
    unsigned long cur_gen;       /* the current result's; 0: no columns */
    unsigned long last_desc_gen; /* that of UV_LAST_COLUMNS/FIELDS */
    unsigned long shape_gen;     /* that of UV_LAST_MT */
    int shape_valid;
    int tag_shapes;        /* entries in UV_TAG_SHAPES */
    pgc_buf shape_tag;     /* the command tag of UV_LAST_MT */
    pgc_buf formats;       /* result format codes for Bind */
    pgc_buf batch;         /* the messages of a batch being encoded */
    pgc_buf bind;          /* parameter values being encoded */
} binding;

/* ------------------------------------------------------------------ */
/* errors                                                              */
/* ------------------------------------------------------------------ */

static const char *kind_name(int kind)
{
    switch (kind) {
    case PGC_ERR_CONFIG:
        return "config";
    case PGC_ERR_TLS:
        return "tls";
    case PGC_ERR_AUTH:
        return "auth";
    case PGC_ERR_SERVER:
        return "server";
    case PGC_ERR_PROTOCOL:
        return "protocol";
    default:
        return "io";
    }
}

/* The error table field for an ErrorResponse/NoticeResponse field code,
 * or NULL for codes this client does not know. */
static const char *field_name(int code)
{
    switch (code) {
    case 'S': return "severity_localized";
    case 'V': return "severity";
    case 'C': return "code";
    case 'M': return "message";
    case 'D': return "detail";
    case 'H': return "hint";
    case 'P': return "position";
    case 'p': return "internal_position";
    case 'q': return "internal_query";
    case 'W': return "where";
    case 's': return "schema";
    case 't': return "table";
    case 'c': return "column";
    case 'd': return "data_type";
    case 'n': return "constraint";
    case 'F': return "file";
    case 'L': return "line";
    case 'R': return "routine";
    default: return NULL;
    }
}

/*
 * Sets the server's fields from an ErrorResponse or NoticeResponse body
 * on the table at the top of the stack.  Positions and line numbers
 * become integers; severity falls back to the localized one.
 */
static void set_server_fields(lua_State *L, const char *body, size_t len)
{
    pgc_reader r;

    pgc_reader_init(&r, body, len);
    while (r.left > 0) {
        int code = pgc_read_u8(&r);
        size_t vlen;
        const char *value, *name;

        if (code == 0)
            break;
        value = pgc_read_cstr(&r, &vlen);
        if (value == NULL)
            break;
        name = field_name(code);
        if (name == NULL)
            continue;
        if (code == 'P' || code == 'p' || code == 'L')
            lua_pushinteger(L, (lua_Integer)strtoll(value, NULL, 10));
        else
            lua_pushlstring(L, value, vlen);
        lua_setfield(L, -2, name);
        if (code == 'S') {
            lua_getfield(L, -1, "severity");
            if (lua_isnil(L, -1)) {
                lua_pushlstring(L, value, vlen);
                lua_setfield(L, -3, "severity");
            }
            lua_pop(L, 1);
        }
    }
}

/* Pushes a new error table of the given kind and message. */
static void push_error(lua_State *L, const char *kind, const char *message)
{
    lua_createtable(L, 0, 4);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, message);
    lua_setfield(L, -2, "message");
    luaL_setmetatable(L, ERROR_MT);
}

/* Pushes the connection's current error as an error table. */
static void push_conn_error(lua_State *L, binding *b)
{
    const pgc_error *e = pgc_conn_error(b->c);

    push_error(L, kind_name(e->kind), e->message);
    if (e->fields != NULL)
        set_server_fields(L, e->fields, e->fields_len);
}

/* Returns nil, err for the connection's error. */
static int fail_conn(lua_State *L, binding *b)
{
    lua_pushnil(L);
    push_conn_error(L, b);
    return 2;
}

/* __tostring for error tables: "ERROR 42P01: message" for server errors,
 * else the message. */
static int error_tostring(lua_State *L)
{
    const char *severity, *code, *message;

    lua_getfield(L, 1, "severity");
    lua_getfield(L, 1, "code");
    lua_getfield(L, 1, "message");
    severity = lua_tostring(L, -3);
    code = lua_tostring(L, -2);
    message = lua_tostring(L, -1);
    if (message == NULL)
        message = "unknown error";
    if (severity != NULL && code != NULL)
        lua_pushfstring(L, "%s %s: %s", severity, code, message);
    else
        lua_pushstring(L, message);
    return 1;
}

/* ------------------------------------------------------------------ */
/* contexts                                                            */
/* ------------------------------------------------------------------ */

static context *check_context(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, CONTEXT_MT);
}

/* Reads an optional string field of the table at idx. */
static const char *opt_field(lua_State *L, int idx, const char *name)
{
    const char *s;

    lua_getfield(L, idx, name);
    s = lua_tostring(L, -1);
    lua_pop(L, 1);          /* the table still holds the string */
    return s;
}

/*
 * Reads the source of a certificate, key or CA list from the table at
 * idx: the file field, else the PEM text field.  Returns 1 when one is
 * given, 0 when neither is.  The strings stay in the table.
 */
static int opt_source(lua_State *L, int idx, const char *file_field,
                      const char *pem_field, pgc_tls_source *src)
{
    src->path = opt_field(L, idx, file_field);
    src->pem = NULL;
    src->len = 0;
    if (src->path != NULL)
        return 1;
    lua_getfield(L, idx, pem_field);
    src->pem = lua_tolstring(L, -1, &src->len);
    lua_pop(L, 1);
    return src->pem != NULL;
}

/*
 * Loads the trust anchors of a new context: ca_cert_file (a file, or
 * "system" for the system store by name), ca_cert (PEM text), or, when
 * neither is given, the system store.  A system store that cannot be
 * loaded without being asked for is not an error here: its reason is
 * kept and reported if a connection must check the chain.  Returns 0,
 * or -1 with err.
 */
static int load_trust(lua_State *L, context *x, char *err, size_t errlen)
{
    pgc_tls_source ca;
    int given = opt_source(L, 1, "ca_cert_file", "ca_cert", &ca);

    if (given && (ca.path == NULL || strcmp(ca.path, "system") != 0))
        return pgc_tls_ctx_trust(x->ctx, &ca, err, errlen);
    if (pgc_tls_ctx_trust_system(x->ctx, given, err, errlen) == 0)
        return 0;
    if (given)
        return -1;
    snprintf(x->system_error, sizeof x->system_error, "%s", err);
    return 0;
}

/*
 * core.new_context{cert_file= or cert=, key_file= or key=, ca_cert_file=
 * or ca_cert=, key_password=, crl_file=}: the *_file fields name files,
 * cert, key and ca_cert hold PEM text.  Returns a context, or nil, err
 * (kind "tls") naming the file at fault.  The Lua layer has checked the
 * option names, types and combinations.
 */
static int core_new_context(lua_State *L)
{
    pgc_tls_source cert, key;
    const char *password, *crl;
    char err[PGC_TLS_ERRLEN];
    context *x;

    luaL_checktype(L, 1, LUA_TTABLE);
    password = opt_field(L, 1, "key_password");
    crl = opt_field(L, 1, "crl_file");

    x = lua_newuserdatauv(L, sizeof *x, 0);
    x->ctx = NULL;
    x->system_error[0] = 0;
    luaL_setmetatable(L, CONTEXT_MT);
    x->ctx = pgc_tls_ctx_new(err, sizeof err);
    if (x->ctx == NULL)
        goto fail;

    if (load_trust(L, x, err, sizeof err) < 0)
        goto fail;
    if (crl != NULL &&
        pgc_tls_ctx_crl_file(x->ctx, crl, err, sizeof err) < 0)
        goto fail;
    if (opt_source(L, 1, "cert_file", "cert", &cert) &&
        opt_source(L, 1, "key_file", "key", &key) &&
        pgc_tls_ctx_key_pair(x->ctx, &cert, &key, password, err,
                             sizeof err) < 0)
        goto fail;
    return 1;

fail:
    lua_pushnil(L);
    push_error(L, "tls", err);
    return 2;
}

static int context_gc(lua_State *L)
{
    context *x = check_context(L, 1);

    pgc_tls_ctx_unref(x->ctx);
    x->ctx = NULL;
    return 0;
}

static int context_tostring(lua_State *L)
{
    context *x = check_context(L, 1);

    if (x->ctx == NULL)
        lua_pushstring(L, "pg.ssl.context (released)");
    else
        lua_pushfstring(L, "pg.ssl.context (%s client certificate)",
                        pgc_tls_ctx_has_key(x->ctx) ? "with" : "no");
    return 1;
}

/* ------------------------------------------------------------------ */
/* connections: creation and life cycle                                */
/* ------------------------------------------------------------------ */

static binding *check_binding(lua_State *L)
{
    binding *b = luaL_checkudata(L, 1, CONN_MT);

    b->L = L;
    return b;
}

/* Like check_binding, but raises if the connection is closed. */
static binding *check_open(lua_State *L)
{
    binding *b = check_binding(L);

    if (b->closed || b->c == NULL)
        luaL_error(L, "attempt to use a closed connection");
    return b;
}

/* The notice callback runs this under lua_pcall: builds the notice table
 * and calls on_notice with it.  Upvalue-free; arguments are the function,
 * a light userdata pointing at the message, and the message length. */
static int notice_call(lua_State *L)
{
    const char *body = lua_touserdata(L, 2);
    size_t len = (size_t)lua_tointeger(L, 3);

    lua_settop(L, 1);
    lua_createtable(L, 0, 6);
    set_server_fields(L, body, len);
    lua_call(L, 1, 0);
    return 0;
}

/*
 * Delivers a NoticeResponse to on_notice.  Errors raised by on_notice are
 * discarded: a notice must not break the protocol exchange in progress.
 */
static void on_notice(void *ud, const char *body, size_t len)
{
    binding *b = ud;
    lua_State *L = b->L;

    if (L == NULL || !lua_checkstack(L, 6))
        return;
    lua_getiuservalue(L, 1, UV_NOTICE);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_pushcfunction(L, notice_call);
    lua_insert(L, -2);
    lua_pushlightuserdata(L, (void *)body);
    lua_pushinteger(L, (lua_Integer)len);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK)
        lua_pop(L, 1);
}

/* Adds each name = value of the table at idx as a startup parameter. */
static int add_startup_params(lua_State *L, binding *b, int idx)
{
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        const char *name = lua_tostring(L, -2);
        const char *value = lua_tostring(L, -1);

        if (name == NULL || value == NULL)
            return luaL_error(L, "startup parameters must be strings");
        if (pgc_conn_add_param(b->c, name, value) < 0)
            return luaL_error(L, "out of memory");
        lua_pop(L, 1);
    }
    return 0;
}

/* The channel_binding option as PGC_CBIND_*; "prefer" by default. */
static int channel_binding_mode(lua_State *L)
{
    const char *mode = opt_field(L, 1, "channel_binding");

    if (mode != NULL && strcmp(mode, "disable") == 0)
        return PGC_CBIND_DISABLE;
    if (mode != NULL && strcmp(mode, "require") == 0)
        return PGC_CBIND_REQUIRE;
    return PGC_CBIND_PREFER;
}

/* Reads an integer field of the table at idx, or dflt when absent. */
static int opt_int(lua_State *L, int idx, const char *name, int dflt)
{
    int v;

    lua_getfield(L, idx, name);
    v = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

/* Reads a boolean field of the table at idx. */
static int opt_bool(lua_State *L, int idx, const char *name)
{
    int v;

    lua_getfield(L, idx, name);
    v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/*
 * Configures TLS from the tls table at index t (see core_new_conn).
 * Returns 0, or pushes nil, err and returns 2: a config error for a bad
 * priority string, a tls error when the chain must be checked and the
 * context has no trust anchors.
 */
static int configure_tls(lua_State *L, binding *b, int t)
{
    char priority[PGC_TLS_PRIORITY_MAX], err[PGC_TLS_ERRLEN];
    const char *base = opt_field(L, t, "priority");
    int min = opt_int(L, t, "min_version", PGC_TLS_V1_2);
    int max = opt_int(L, t, "max_version", PGC_TLS_V1_3);
    pgc_tls_options o;
    context *x;

    lua_getfield(L, t, "context");
    x = check_context(L, -1);
    lua_setiuservalue(L, 2, UV_CONTEXT);

    memset(&o, 0, sizeof o);
    o.check_chain = opt_bool(L, t, "check_chain") ||
                    (opt_bool(L, t, "chain_if_ca") &&
                     pgc_tls_ctx_has_explicit_trust(x->ctx));
    o.verify_host = opt_field(L, t, "host");
    o.sni = opt_field(L, t, "sni");
    if (o.sni != NULL && pgc_sock_is_ip_literal(o.sni))
        o.sni = NULL;
    o.direct = opt_bool(L, t, "direct");
    o.allow_plain = opt_bool(L, t, "allow_plain");

    if (base != NULL || min != PGC_TLS_V1_2 || max != PGC_TLS_V1_3) {
        if (pgc_tls_priority(base, min, max, priority, sizeof priority,
                             err, sizeof err) < 0) {
            lua_pushnil(L);
            push_error(L, "config", err);
            lua_pushstring(L, base != NULL ? "ssl_priority"
                                           : "ssl_min_protocol");
            lua_setfield(L, -2, "option");
            return 2;
        }
        o.priority = priority;
    }
    if (o.check_chain && !pgc_tls_ctx_has_trust(x->ctx)) {
        lua_pushnil(L);
        push_error(L, "tls", x->system_error[0] ? x->system_error
                   : "no CA certificates to verify the server with");
        return 2;
    }
    if (pgc_conn_use_tls(b->c, x->ctx, &o) < 0)
        return luaL_error(L, "out of memory");
    return 0;
}

/*
 * core.new_conn(opts) creates a connection in its initial state.  opts
 * (checked by the Lua layer) has: startup (table of startup parameters),
 * password, on_notice, max_message, channel_binding ("disable",
 * "prefer", "require"), and when TLS is wanted tls = {context=,
 * check_chain=, chain_if_ca= (check it when the context has an explicit
 * CA), host= (the name to verify), sni=, priority=, min_version=,
 * max_version= (PGC_TLS_V*: 12 for TLS 1.2), direct=, allow_plain=}.
 * Returns the connection, or nil, err when TLS cannot be set up as
 * asked.
 */
static int core_new_conn(lua_State *L)
{
    binding *b;
    const char *password;

    luaL_checktype(L, 1, LUA_TTABLE);
    b = lua_newuserdatauv(L, sizeof *b, UV_COUNT);
    memset(b, 0, sizeof *b);
    b->fd = -1;
    b->closed = 1;              /* until the core exists */
    luaL_setmetatable(L, CONN_MT);
    b->c = pgc_conn_new();
    if (b->c == NULL)
        return luaL_error(L, "out of memory");
    b->closed = 0;
    b->types_synced = -1;
    pgc_conn_set_notice(b->c, on_notice, b);

    lua_getfield(L, 1, "startup");
    if (lua_istable(L, -1))
        add_startup_params(L, b, lua_gettop(L));
    lua_pop(L, 1);

    password = opt_field(L, 1, "password");
    if (pgc_conn_set_password(b->c, password) < 0)
        return luaL_error(L, "out of memory");

    lua_getfield(L, 1, "on_notice");
    lua_setiuservalue(L, 2, UV_NOTICE);

    lua_getfield(L, 1, "max_message");
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0)
        pgc_conn_set_max_message(b->c, (size_t)lua_tointeger(L, -1));
    lua_pop(L, 1);

    pgc_conn_set_channel_binding(b->c, channel_binding_mode(L));
    lua_getfield(L, 1, "tls");
    if (lua_istable(L, -1) && configure_tls(L, b, lua_gettop(L)) != 0)
        return 2;
    lua_pop(L, 1);

    lua_settop(L, 2);
    return 1;
}

/* Closes the native socket, if any. */
static void close_socket(binding *b)
{
    pgc_sock_close(b->fd);
    b->fd = -1;
}

/*
 * Writes what raw_out holds to the native socket before the deadline.
 * Returns 0, or -1 with the connection failed.  A peer that reset the
 * connection is not reported here: what it sent before is still read.
 */
static int native_flush(binding *b, int64_t deadline)
{
    pgc_buf *out = pgc_conn_raw_out(b->c);

    while (pgc_buf_len(out) > 0) {
        ssize_t n = pgc_sock_write(b->fd, pgc_buf_head(out),
                                   pgc_buf_len(out));
        int rc;

        if (n > 0) {
            pgc_buf_consume(out, (size_t)n);
            continue;
        }
        if (errno == EPIPE || errno == ECONNRESET) {
            pgc_buf_clear(out);
            return 0;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            pgc_conn_fail(b->c, PGC_ERR_IO, "could not send data to the "
                          "server: %s", strerror(errno));
            return -1;
        }
        rc = pgc_sock_wait(b->fd, 1, deadline);
        if (rc == 0) {
            pgc_conn_fail(b->c, PGC_ERR_IO, "timeout while sending to "
                          "the server");
            return -1;
        }
        if (rc < 0) {
            pgc_conn_fail(b->c, PGC_ERR_IO, "poll failed: %s",
                          strerror(errno));
            return -1;
        }
    }
    return 0;
}

/*
 * Flushes output, then waits for and reads one chunk of input into
 * raw_in (or records end of stream).  Returns 0, or -1 with the
 * connection failed; 1 when the wait for input timed out and
 * b->may_cancel allows the caller to cancel instead of failing.
 */
static int native_io(binding *b, int64_t deadline)
{
    pgc_buf *in = pgc_conn_raw_in(b->c);
    /* Right after a request went out, the answer cannot be there yet:
     * wait first instead of trying a read that would fail. */
    int wait_first = pgc_buf_len(pgc_conn_raw_out(b->c)) > 0;

    if (native_flush(b, deadline) < 0)
        return -1;
    for (;;) {
        char *w = pgc_buf_reserve(in, 65536);
        ssize_t n;
        int rc;

        if (w == NULL) {
            pgc_conn_fail(b->c, PGC_ERR_IO, "out of memory");
            return -1;
        }
        if (wait_first) {
            wait_first = 0;
            goto wait;
        }
        n = pgc_sock_read(b->fd, w, 65536);
        if (n > 0) {
            in->end += (size_t)n;
            return 0;
        }
        if (n == 0 || errno == ECONNRESET) {
            pgc_conn_eof(b->c);
            return 0;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            pgc_conn_fail(b->c, PGC_ERR_IO, "could not receive data from "
                          "the server: %s", strerror(errno));
            return -1;
        }
wait:
        rc = pgc_sock_wait(b->fd, 0, deadline);
        if (rc == 0 && b->may_cancel) {
            /* The caller sends a CancelRequest and waits again. */
            return 1;
        }
        if (rc == 0) {
            pgc_conn_fail(b->c, PGC_ERR_IO, "timeout waiting for the "
                          "server%s", b->cancel_sent ? " (it did not answer "
                          "a cancel request either)" : "");
            return -1;
        }
        if (rc < 0) {
            pgc_conn_fail(b->c, PGC_ERR_IO, "poll failed: %s",
                          strerror(errno));
            return -1;
        }
    }
}

/* Deadline from a timeout in seconds (0 or less: none). */
static int64_t deadline_after(lua_Number seconds)
{
    if (!(seconds > 0))
        return 0;
    if (seconds > 1e9)
        seconds = 1e9;
    return pgc_now_ms() + (int64_t)(seconds * 1000.0);
}

/*
 * c:connect_native(host, port, connect_timeout, timeout) opens the native
 * socket.  connect_timeout bounds the whole startup that follows; timeout
 * bounds each wait for the server afterwards (both in seconds, 0 for
 * none).  Returns true, or nil, err (kind "io").
 */
static int conn_connect_native(lua_State *L)
{
    binding *b = check_open(L);
    const char *host = luaL_checkstring(L, 2);
    int port = (int)luaL_checkinteger(L, 3);
    char err[PGC_ERRLEN];

    b->deadline = deadline_after(luaL_optnumber(L, 4, 0));
    b->timeout = luaL_optnumber(L, 5, 0);
    b->fd = pgc_sock_connect(host, port, b->deadline, err, sizeof err);
    if (b->fd < 0) {
        pgc_conn_fail(b->c, PGC_ERR_IO, "%s", err);
        return fail_conn(L, b);
    }
    return (lua_pushboolean(L, 1), 1);
}

/* c:startup_native() runs the whole startup over the native socket.
 * Returns true, or nil, err. */
static int conn_startup_native(lua_State *L)
{
    binding *b = check_open(L);

    for (;;) {
        int rc = pgc_conn_startup(b->c);

        if (rc == PGC_DONE) {
            if (native_flush(b, b->deadline) < 0)
                break;
            b->started = 1;
            return (lua_pushboolean(L, 1), 1);
        }
        if (rc == PGC_FAIL || native_io(b, b->deadline) < 0)
            break;
    }
    close_socket(b);
    return fail_conn(L, b);
}

/* Takes the bytes a step function was given as argument 2, if any. */
static void feed_arg(lua_State *L, binding *b)
{
    size_t len;
    const char *p;

    if (lua_type(L, 2) != LUA_TSTRING)
        return;
    p = lua_tolstring(L, 2, &len);
    if (pgc_buf_append(pgc_conn_raw_in(b->c), p, len) < 0)
        luaL_error(L, "out of memory");
}

/* What a step function returns when it needs bytes: "read", how many
 * are sure to come (pgc_conn_read_hint), and what is to be sent first, if
 * anything (c:take_output). */
static int want_read(lua_State *L, binding *b)
{
    pgc_buf *out = pgc_conn_raw_out(b->c);

    lua_settop(L, 1);
    lua_pushliteral(L, "read");
    lua_pushinteger(L, (lua_Integer)pgc_conn_read_hint(b->c));
    if (pgc_buf_len(out) == 0)
        return 2;
    lua_pushlstring(L, pgc_buf_head(out), pgc_buf_len(out));
    pgc_buf_clear(out);
    return 3;
}

/* c:startup_step([data]) advances the startup over the bytes fed so far
 * and data.  Returns true when done, "read", hint [, output] (want_read)
 * when more bytes are needed, or nil, err. */
static int conn_startup_step(lua_State *L)
{
    binding *b = check_open(L);
    int rc;

    feed_arg(L, b);
    rc = pgc_conn_startup(b->c);
    if (rc == PGC_DONE) {
        b->started = 1;
        return (lua_pushboolean(L, 1), 1);
    }
    if (rc == PGC_WANT_READ)
        return want_read(L, b);
    return fail_conn(L, b);
}

/* c:take_output() returns the bytes waiting to be sent, or nil. */
static int conn_take_output(lua_State *L)
{
    binding *b = check_binding(L);
    pgc_buf *out;

    if (b->c == NULL)
        return 0;
    out = pgc_conn_raw_out(b->c);
    if (pgc_buf_len(out) == 0)
        return 0;
    lua_pushlstring(L, pgc_buf_head(out), pgc_buf_len(out));
    pgc_buf_clear(out);
    return 1;
}

/* c:feed(bytes) hands received bytes to the core; c:feed() with no
 * argument (or nil) says the stream ended. */
static int conn_feed(lua_State *L)
{
    binding *b = check_open(L);
    size_t len;
    const char *p = luaL_optlstring(L, 2, NULL, &len);

    if (p == NULL)
        pgc_conn_eof(b->c);
    else if (pgc_buf_append(pgc_conn_raw_in(b->c), p, len) < 0)
        return luaL_error(L, "out of memory");
    return 0;
}

/* c:fail_io(message) records a transport failure. */
static int conn_fail_io(lua_State *L)
{
    binding *b = check_open(L);

    pgc_conn_fail(b->c, PGC_ERR_IO, "%s", luaL_checkstring(L, 2));
    return 0;
}

/*
 * Releases everything the connection holds.  When the connection was
 * started, Terminate is queued first; on a native socket it is sent
 * without waiting.  Idempotent.
 */
static void release(binding *b)
{
    if (b->c != NULL && !b->closed) {
        pgc_conn_terminate(b->c);
        if (b->fd >= 0) {
            pgc_buf *out = pgc_conn_raw_out(b->c);

            if (pgc_buf_len(out) > 0)
                (void)pgc_sock_write(b->fd, pgc_buf_head(out),
                                     pgc_buf_len(out));
        }
    }
    b->closed = 1;
    close_socket(b);
}

/* c:close() for a native connection sends Terminate and closes the socket;
 * for a Lua transport it returns the last bytes to send (or nil). */
static int conn_close(lua_State *L)
{
    binding *b = check_binding(L);
    int native = b->fd >= 0;

    if (b->closed)
        return 0;
    release(b);
    if (!native)
        return conn_take_output(L);
    return 0;
}

static int conn_gc(lua_State *L)
{
    binding *b = check_binding(L);

    release(b);
    pgc_conn_free(b->c);
    b->c = NULL;
    free(b->columns);
    b->columns = NULL;
    pgc_buf_free(&b->scratch);
    pgc_buf_free(&b->bind);
    pgc_buf_free(&b->last_desc);
    pgc_buf_free(&b->shape_tag);
    pgc_buf_free(&b->formats);
    pgc_buf_free(&b->batch);
    b->L = NULL;
    return 0;
}

static int conn_tostring(lua_State *L)
{
    binding *b = check_binding(L);
    const char *state;

    if (b->closed)
        state = "closed";
    else if (pgc_conn_is_failed(b->c))
        state = "failed";
    else if (pgc_conn_is_ready(b->c))
        state = "ready";
    else if (b->started)
        state = "busy";
    else
        state = "connecting";
    lua_pushfstring(L, "pg.connection (%s%s)", state,
                    b->c && pgc_conn_tls(b->c) != NULL ? ", TLS" : "");
    return 1;
}

/* ------------------------------------------------------------------ */
/* operations: simple and extended query cycles                        */
/* ------------------------------------------------------------------ */

/* Stack slots used while messages are processed (see process). */
#define SLOT_RESULTS 2
#define SLOT_CURRENT 3
#define SLOT_COLUMNS 4
#define SLOT_DECODERS 5
#define SLOT_JSON 6
#define SLOT_PARAMS 7
#define SLOT_ARRAYS 8
#define SLOT_FIELDS 9

/* Clears the state of the operation and its user values. */
static void op_reset(lua_State *L, binding *b)
{
    static const int uvs[] = { UV_RESULTS, UV_CURRENT, UV_COLUMNS,
                               UV_FIELDS };
    size_t i;

    b->op = OP_NONE;
    b->has_columns = 0;
    b->ncolumns = 0;
    b->nrows = 0;
    b->nresults = 0;
    b->copy_out = 0;
    for (i = 0; i < sizeof uvs / sizeof uvs[0]; i++) {
        lua_pushnil(L);
        lua_setiuservalue(L, 1, uvs[i]);
    }
    if (b->has_error) {
        lua_pushnil(L);
        lua_setiuservalue(L, 1, UV_ERROR);
        b->has_error = 0;
    }
    if (b->has_params) {
        lua_pushnil(L);
        lua_setiuservalue(L, 1, UV_PARAMS);
        b->has_params = 0;
    }
}

/* The decoding environment for the slots of process(). */
static pgc_decode_env decode_env(lua_State *L, binding *b)
{
    pgc_decode_env env;

    env.json_idx = lua_isfunction(L, SLOT_JSON) ? SLOT_JSON : 0;
    env.custom_idx = lua_istable(L, SLOT_DECODERS) ? SLOT_DECODERS : 0;
    env.arrays_idx = lua_istable(L, SLOT_ARRAYS) ? SLOT_ARRAYS : 0;
    env.numeric_number = b->numeric_number;
    env.c_decimal_point = b->c_decimal_point;
    env.scratch = &b->scratch;
    return env;
}

/* Puts the table at the top in a stack slot and its user value. */
static void set_slot(lua_State *L, int slot, int uv)
{
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, uv);
    lua_replace(L, slot);
}

/*
 * Starts a new result: an empty rows table, and new columns and fields
 * tables for ncolumns columns, in their slots.  The result's metadata is
 * attached when its CommandComplete arrives (set_shape).
 */
static void new_result(lua_State *L, binding *b, int ncolumns)
{
    lua_createtable(L, 1, 0);         /* room for one row */
    set_slot(L, SLOT_CURRENT, UV_CURRENT);
    lua_createtable(L, ncolumns, 0);
    set_slot(L, SLOT_COLUMNS, UV_COLUMNS);
    lua_createtable(L, ncolumns, 0);
    set_slot(L, SLOT_FIELDS, UV_FIELDS);
    b->cur_gen = ++b->desc_gen;
}

/* Starts a result that has no columns (INSERT, CREATE, ...): its empty
 * columns and fields tables are the same for all such results. */
static void new_result_without_columns(lua_State *L, binding *b)
{
    lua_createtable(L, 0, 0);
    set_slot(L, SLOT_CURRENT, UV_CURRENT);
    if (lua_getiuservalue(L, 1, UV_EMPTY_COLUMNS) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, UV_EMPTY_COLUMNS);
    }
    set_slot(L, SLOT_COLUMNS, UV_COLUMNS);
    if (lua_getiuservalue(L, 1, UV_EMPTY_FIELDS) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, UV_EMPTY_FIELDS);
    }
    set_slot(L, SLOT_FIELDS, UV_FIELDS);
    b->cur_gen = 0;
}

/*
 * Pushes the row key for column i named name: the name itself, unless an
 * earlier column has it, in which case "name_N" with N the column's
 * position.  Keys are in SLOT_COLUMNS for earlier columns.
 */
static void push_column_key(lua_State *L, int i, const char *name,
                            size_t len)
{
    int j;

    lua_pushlstring(L, name, len);
    for (j = 1; j <= i; j++) {
        int same;

        lua_rawgeti(L, SLOT_COLUMNS, j);
        same = lua_rawequal(L, -1, -2);
        lua_pop(L, 1);
        if (same) {
            lua_pop(L, 1);
            lua_pushfstring(L, "%s_%d", name, i + 1);
            return;
        }
    }
}

/* Handles RowDescription: a new result with columns and fields.  Returns
 * 0, or -1 if the message is malformed. */
static int row_description(lua_State *L, binding *b, const pgc_msg *m)
{
    pgc_decode_env *env = &b->env;
    pgc_reader r;
    pgc_column *cols;
    int n, i;

    pgc_reader_init(&r, m->body, m->len);
    n = pgc_read_i16(&r);
    if (r.bad || n < 0)
        return -1;

    /* The same description as last time (a statement run again): its
     * columns and fields tables serve again, and so do b->columns. */
    if (pgc_buf_len(&b->last_desc) == m->len && m->len > 0 &&
        memcmp(pgc_buf_head(&b->last_desc), m->body, m->len) == 0 &&
        lua_getiuservalue(L, 1, UV_LAST_COLUMNS) == LUA_TTABLE &&
        lua_getiuservalue(L, 1, UV_LAST_FIELDS) == LUA_TTABLE) {
        set_slot(L, SLOT_FIELDS, UV_FIELDS);
        set_slot(L, SLOT_COLUMNS, UV_COLUMNS);
        lua_createtable(L, 1, 0);
        set_slot(L, SLOT_CURRENT, UV_CURRENT);
        b->cur_gen = b->last_desc_gen;
        b->names_missing |= b->last_names_missing;
        b->ncolumns = n;
        b->has_columns = 1;
        b->nrows = 0;
        return 0;
    }
    lua_settop(L, SLOT_FIELDS);
    pgc_buf_clear(&b->last_desc);

    cols = realloc(b->columns, (n > 0 ? (size_t)n : 1) * sizeof *cols);
    if (cols == NULL)
        return luaL_error(L, "out of memory");
    b->columns = cols;

    /* Results of this description are decoded under the locale of now.
     * (A stale "yes" is harmless: strtod then stops early and the value
     * goes through Lua's own reader.) */
    b->c_decimal_point = pgc_values_c_decimal_point();
    env->c_decimal_point = b->c_decimal_point;
    b->last_names_missing = 0;
    new_result(L, b, n);
    for (i = 0; i < n; i++) {
        size_t len;
        const char *name = pgc_read_cstr(&r, &len);
        uint32_t table = (uint32_t)pgc_read_i32(&r);
        int attnum = pgc_read_i16(&r);
        uint32_t type = (uint32_t)pgc_read_i32(&r);
        int typmod;
        int format;
        const char *tname;

        pgc_read_i16(&r);               /* type size */
        typmod = pgc_read_i32(&r);
        format = pgc_read_i16(&r);
        if (r.bad || (format != 0 && format != 1))
            return -1;
        pgc_values_describe(L, env, &cols[i], type, format);

        push_column_key(L, i, name, len);
        lua_createtable(L, 0, 7);
        lua_pushlstring(L, name, len);
        lua_setfield(L, -2, "name");
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "key");
        lua_pushinteger(L, (lua_Integer)type);
        lua_setfield(L, -2, "oid");
        tname = pgc_values_type_name(type);
        if (tname != NULL) {
            lua_pushstring(L, tname);
            lua_setfield(L, -2, "type");
        } else {
            b->last_names_missing = 1;
        }
        lua_pushinteger(L, typmod);
        lua_setfield(L, -2, "modifier");
        if (table != 0) {
            lua_pushinteger(L, (lua_Integer)table);
            lua_setfield(L, -2, "table_oid");
            lua_pushinteger(L, attnum);
            lua_setfield(L, -2, "column_number");
        }
        lua_pushstring(L, format ? "binary" : "text");
        lua_setfield(L, -2, "format");
        lua_rawseti(L, SLOT_FIELDS, i + 1);
        lua_rawseti(L, SLOT_COLUMNS, i + 1);
    }
    lua_pushvalue(L, SLOT_FIELDS);
    lua_setiuservalue(L, 1, UV_LAST_FIELDS);
    lua_pushvalue(L, SLOT_COLUMNS);
    lua_setiuservalue(L, 1, UV_LAST_COLUMNS);
    b->last_desc_gen = b->cur_gen;
    b->names_missing |= b->last_names_missing;
    if (pgc_buf_append(&b->last_desc, m->body, m->len) < 0)
        pgc_buf_clear(&b->last_desc);
    b->ncolumns = n;
    b->has_columns = 1;
    b->nrows = 0;
    return 0;
}

/* Keeps the first error of an operation in UV_ERROR. */
static void keep_error(lua_State *L, binding *b, const char *kind,
                       const char *message, const pgc_msg *server)
{
    if (b->has_error)
        return;
    push_error(L, kind, message);
    if (server != NULL)
        set_server_fields(L, server->body, server->len);
    lua_setiuservalue(L, 1, UV_ERROR);
    b->has_error = 1;
}

/*
 * Handles DataRow: one table keyed by column name (or an array of values
 * in column order), SQL NULL as the light userdata NULL (pg.null).
 * Returns 0; -1 when the message is malformed.  A value that does not
 * decode is kept as the operation's error and the row is dropped.
 */
static int data_row(lua_State *L, binding *b, const pgc_msg *m)
{
    pgc_decode_env *env = &b->env;
    int arrays = b->op_rows_arrays;
    pgc_reader r;
    int n, i;

    if (!b->has_columns)
        return -1;
    pgc_reader_init(&r, m->body, m->len);
    n = pgc_read_i16(&r);
    if (r.bad || n != b->ncolumns)
        return -1;

    if (arrays)
        lua_createtable(L, n, 0);
    else
        lua_createtable(L, 0, n);
    for (i = 0; i < n; i++) {
        int32_t len = pgc_read_i32(&r);
        const char *p = NULL;
        char err[256];

        if (len < -1 || (len >= 0 &&
                         (p = pgc_read_bytes(&r, (size_t)len)) == NULL)) {
            lua_pop(L, 1);
            return -1;
        }
        if (!arrays)
            lua_rawgeti(L, SLOT_COLUMNS, i + 1);
        if (len == -1) {
            lua_pushlightuserdata(L, NULL);
        } else if (pgc_values_push(L, env, &b->columns[i], p,
                                   (size_t)len, err, sizeof err) < 0) {
            lua_pop(L, arrays ? 1 : 2);
            lua_rawgeti(L, SLOT_COLUMNS, i + 1);
            lua_pushfstring(L, "cannot decode column '%s': %s",
                            lua_tostring(L, -1), err);
            keep_error(L, b, "protocol", lua_tostring(L, -1), NULL);
            lua_pop(L, 2);
            return 0;
        }
        if (arrays)
            lua_rawseti(L, -2, i + 1);
        else
            lua_rawset(L, -3);
    }
    if (r.left != 0) {
        lua_pop(L, 1);
        return -1;
    }
    lua_rawseti(L, SLOT_CURRENT, ++b->nrows);
    return 0;
}

/*
 * Adds the current result to the operation's results: to the list in
 * SLOT_RESULTS, or, for execute, which has one result, as the value of
 * UV_RESULTS itself (no list is made).
 */
static void add_result(lua_State *L, binding *b)
{
    if (b->op == OP_EXECUTE) {
        lua_pushvalue(L, SLOT_CURRENT);
        lua_setiuservalue(L, 1, UV_RESULTS);
        b->nresults = 1;
        return;
    }
    lua_pushvalue(L, SLOT_CURRENT);
    lua_rawseti(L, SLOT_RESULTS, ++b->nresults);
}

/*
 * Attaches the current result's metadata through its metatable: a table
 * holding columns, fields, command, tag and affected (or empty = true),
 * shared by the results of one shape, that is of the same column
 * description and command tag, so that a statement run again costs no
 * new metadata.
 */
static void set_shape(lua_State *L, binding *b, const char *tag, size_t len,
                      int empty)
{
    const char *space, *last;
    int by_tag = !empty && b->cur_gen == 0;

    if (!empty && b->shape_valid && b->shape_gen == b->cur_gen &&
        pgc_buf_len(&b->shape_tag) == len &&
        memcmp(pgc_buf_head(&b->shape_tag), tag, len) == 0) {
        if (lua_getiuservalue(L, 1, UV_LAST_MT) == LUA_TTABLE) {
            lua_setmetatable(L, SLOT_CURRENT);
            return;
        }
        lua_pop(L, 1);
    }
    /* A result without columns is its tag alone: BEGIN, COMMIT and
     * INSERT 0 1 in turn find theirs in UV_TAG_SHAPES. */
    if (by_tag) {
        if (lua_getiuservalue(L, 1, UV_TAG_SHAPES) == LUA_TTABLE) {
            lua_pushlstring(L, tag, len);
            if (lua_rawget(L, -2) == LUA_TTABLE) {
                lua_setmetatable(L, SLOT_CURRENT);
                lua_pop(L, 1);
                return;
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }

    lua_createtable(L, 0, 2);               /* the metatable */
    lua_createtable(L, 0, 5);               /* what it serves */
    lua_pushvalue(L, SLOT_COLUMNS);
    lua_setfield(L, -2, "columns");
    lua_pushvalue(L, SLOT_FIELDS);
    lua_setfield(L, -2, "fields");
    if (empty) {
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "empty");
    } else {
        space = memchr(tag, ' ', len);
        lua_pushlstring(L, tag, space ? (size_t)(space - tag) : len);
        lua_setfield(L, -2, "command");
        lua_pushlstring(L, tag, len);
        lua_setfield(L, -2, "tag");

        /* The row count is the last word when it is a number. */
        last = tag + len;
        while (last > tag && last[-1] >= '0' && last[-1] <= '9')
            last--;
        if (last < tag + len && last > tag && last[-1] == ' ') {
            lua_Integer count = 0;
            const char *d;

            for (d = last; d < tag + len && count < LUA_MAXINTEGER / 10; d++)
                count = count * 10 + (*d - '0');
            lua_pushinteger(L, count);
            lua_setfield(L, -2, "affected");
        }
    }
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "pg.result");
    lua_setfield(L, -2, "__name");
    if (!empty) {
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, UV_LAST_MT);
        pgc_buf_clear(&b->shape_tag);
        b->shape_valid = pgc_buf_append(&b->shape_tag, tag, len) == 0;
        b->shape_gen = b->cur_gen;
    }
    if (by_tag) {
        /* Tags with row counts are many: the cache starts again when
         * full. */
        if (b->tag_shapes >= 64 ||
            lua_getiuservalue(L, 1, UV_TAG_SHAPES) != LUA_TTABLE) {
            if (b->tag_shapes < 64)
                lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setiuservalue(L, 1, UV_TAG_SHAPES);
            b->tag_shapes = 0;
        }
        lua_pushlstring(L, tag, len);
        lua_pushvalue(L, -3);
        lua_rawset(L, -3);
        lua_pop(L, 1);
        b->tag_shapes++;
    }
    lua_setmetatable(L, SLOT_CURRENT);
}

/* Ends the current result at its CommandComplete and adds it to the
 * results. */
static void finish_result(lua_State *L, binding *b, const char *tag,
                          size_t len)
{
    if (!b->has_columns)
        new_result_without_columns(L, b);
    set_shape(L, b, tag, len, 0);
    add_result(L, b);
    b->has_columns = 0;
    b->ncolumns = 0;
    b->nrows = 0;
}

/* Handles ParameterDescription: the prepared statement's parameter
 * types, as a sequence of OIDs in SLOT_PARAMS. */
static int parameter_description(lua_State *L, binding *b,
                                 const pgc_msg *m)
{
    pgc_reader r;
    int n, i;

    pgc_reader_init(&r, m->body, m->len);
    n = pgc_read_i16(&r);
    if (r.bad || n < 0)
        return -1;
    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        lua_pushinteger(L, (lua_Integer)(uint32_t)pgc_read_i32(&r));
        lua_rawseti(L, -2, i + 1);
    }
    if (r.bad) {
        lua_pop(L, 1);
        return -1;
    }
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, UV_PARAMS);
    lua_replace(L, SLOT_PARAMS);
    b->has_params = 1;
    return 0;
}

/*
 * The result tables of the operation in progress live in user values
 * between calls; while messages are processed they are in stack slots
 * 2..9 too (SLOT_*), put there by load_slots.  Whatever replaces a table
 * updates both (set_slot).
 */
static void load_slots(lua_State *L, binding *b)
{
    lua_settop(L, 1);
    lua_getiuservalue(L, 1, UV_RESULTS);
    lua_getiuservalue(L, 1, UV_CURRENT);
    lua_getiuservalue(L, 1, UV_COLUMNS);
    lua_getiuservalue(L, 1, UV_DECODERS);
    lua_getiuservalue(L, 1, UV_JSON_DECODE);
    lua_pushnil(L);             /* SLOT_PARAMS: only ever written */
    lua_getiuservalue(L, 1, UV_ARRAYS);
    lua_getiuservalue(L, 1, UV_FIELDS);
    b->env = decode_env(L, b);
}

/*
 * Processes the messages available for the operation in progress, with
 * the slots loaded.  Returns PGC_DONE at ReadyForQuery, PGC_WANT_READ, or
 * PGC_FAIL when the connection failed.
 */
static int process(lua_State *L, binding *b)
{
    lua_settop(L, SLOT_FIELDS);
    for (;;) {
        pgc_msg m;
        int rc = pgc_conn_next(b->c, &m);

        if (rc != PGC_DONE)
            return rc;

        switch (m.type) {
        case 'T':
            if (row_description(L, b, &m) < 0)
                goto malformed;
            break;
        case 'D':
            if (b->copy_out)
                break;
            if (data_row(L, b, &m) < 0)
                goto malformed;
            break;
        case 'C':
            finish_result(L, b, m.body, m.len ? strnlen(m.body, m.len) : 0);
            break;
        case 'n':
            break;
        case 't':
            if (parameter_description(L, b, &m) < 0)
                goto malformed;
            break;
        case 'I':
            new_result(L, b, 0);
            set_shape(L, b, "", 0, 1);
            add_result(L, b);
            break;
        case 'E':
            keep_error(L, b, "server", "server error", &m);
            break;
        case 'G':
        case 'W':
            keep_error(L, b, "protocol", "COPY FROM STDIN is not supported",
                       NULL);
            if (pgc_conn_send_copy_fail(b->c, "COPY FROM STDIN is not "
                                        "supported by this client") < 0)
                return PGC_FAIL;
            break;
        case 'H':
            keep_error(L, b, "protocol", "COPY TO STDOUT is not supported",
                       NULL);
            b->copy_out = 1;
            break;
        case 'd':
        case 'c':
            break;
        case 'Z':
            /* A result left open, or none at all, is a server that does
             * not follow the protocol (an error explains either). */
            if (!b->has_error &&
                ((b->has_columns && b->op != OP_PREPARE) ||
                 (b->nresults == 0 &&
                  (b->op == OP_QUERY || b->op == OP_EXECUTE)))) {
                pgc_conn_fail(b->c, PGC_ERR_PROTOCOL, "the server ended "
                              "the query without completing its result");
                return PGC_FAIL;
            }
            return PGC_DONE;
        case '1':
        case '2':
        case '3':
        case 's':
            break;
        default:
            pgc_conn_fail(b->c, PGC_ERR_PROTOCOL, "unexpected message "
                          "type '%c' during a query", m.type);
            return PGC_FAIL;
        }
    }

malformed:
    pgc_conn_fail(b->c, PGC_ERR_PROTOCOL, "malformed message of type '%c' "
                  "from the server", 'D');
    return PGC_FAIL;
}

/*
 * Ends an operation: returns what it produced, or nil, err.  rc is what
 * process() returned (PGC_DONE or PGC_FAIL).  A query returns one result
 * per statement; execute its result, and after it nil, true when a
 * column's type has no name known to this module (the caller looks it
 * up); prepare the statement's description (fields, columns, params);
 * close true.
 */
static int op_finish(lua_State *L, binding *b, int rc)
{
    enum op op = b->op;
    lua_Integer i, n = b->nresults;

    /* Stack: 2 the error, 3 the results, and for a prepare 4..6 its
     * columns, fields and parameter types. */
    lua_settop(L, 1);
    if (b->has_error)
        lua_getiuservalue(L, 1, UV_ERROR);
    else
        lua_pushnil(L);
    lua_getiuservalue(L, 1, UV_RESULTS);
    if (op == OP_PREPARE) {
        lua_getiuservalue(L, 1, UV_COLUMNS);
        lua_getiuservalue(L, 1, UV_FIELDS);
        lua_getiuservalue(L, 1, UV_PARAMS);
    }
    op_reset(L, b);

    if (rc == PGC_FAIL) {
        /* The connection is unusable from now on; later calls return the
         * same error.  A server error that came before the failure (a
         * FATAL one) explains it best. */
        close_socket(b);
        lua_pushnil(L);
        lua_getiuservalue(L, 1, UV_FAILURE);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            if (!lua_isnil(L, 2))
                lua_pushvalue(L, 2);
            else
                push_conn_error(L, b);
            lua_pushvalue(L, -1);
            lua_setiuservalue(L, 1, UV_FAILURE);
        }
        return 2;
    }
    if (!lua_isnil(L, 2)) {
        lua_pushnil(L);
        lua_pushvalue(L, 2);
        return 2;
    }

    switch (op) {
    case OP_PREPARE: {
        /* The statement's description: a plain table. */
        int slot;

        lua_createtable(L, 0, 3);
        for (slot = 4; slot <= 6; slot++) {
            if (lua_istable(L, slot))
                lua_pushvalue(L, slot);
            else
                lua_newtable(L);
            lua_setfield(L, -2, slot == 4 ? "columns"
                                : slot == 5 ? "fields" : "params");
        }
        return 1;
    }
    case OP_CLOSE:
        return (lua_pushboolean(L, 1), 1);
    case OP_EXECUTE:
        if (n == 0)
            return 0;
        lua_pushvalue(L, 3);
        if (!b->names_missing)
            return 1;
        lua_pushnil(L);
        lua_pushboolean(L, 1);
        return 3;
    default:
        if (n > INT_MAX - 20 || !lua_checkstack(L, (int)n))
            return luaL_error(L, "too many results");
        for (i = 1; i <= n; i++)
            lua_rawgeti(L, 3, i);
        return (int)n;
    }
}

/*
 * Checks that an operation can start and prepares its state.  Raises on
 * misuse; returns 0, or -1 when the connection has failed (op_finish then
 * reports its error).  rows_idx is the stack index of the rows option
 * (true for arrays, false for maps, nil for the connection's default).
 */
static int op_begin(lua_State *L, binding *b, enum op op, int rows_idx)
{
    if (b->op != OP_NONE)
        luaL_error(L, "another operation is in progress on this "
                   "connection");
    if (!pgc_conn_is_ready(b->c)) {
        if (pgc_conn_is_failed(b->c)) {
            b->op = op;
            return -1;
        }
        luaL_error(L, "connection is not ready for a query");
    }
    /* op_finish left the user values cleared. */
    if (op != OP_EXECUTE) {
        lua_newtable(L);
        lua_setiuservalue(L, 1, UV_RESULTS);
    }
    b->op = op;
    b->names_missing = 0;
    b->op_rows_arrays = lua_isnoneornil(L, rows_idx) ? b->rows_arrays
                        : lua_toboolean(L, rows_idx);
    return 0;
}

/* Fails the connection for an encoder that ran out of memory. */
static int sent(binding *b, int rc)
{
    if (rc < 0) {
        pgc_conn_fail(b->c, PGC_ERR_IO, "out of memory");
        return -1;
    }
    return pgc_conn_commit(b->c);
}

static int run_native(lua_State *L, binding *b);

/* Returns true, or nil, err when the operation could not be queued. */
static int queued_result(lua_State *L, binding *b, int rc)
{
    if (rc < 0)
        return op_finish(L, b, PGC_FAIL);
    return (lua_pushboolean(L, 1), 1);
}

/* Checks an SQL or name argument for NUL bytes. */
static const char *check_text(lua_State *L, int idx, size_t *len,
                              const char *what)
{
    const char *s = luaL_checklstring(L, idx, len);

    if (memchr(s, 0, *len) != NULL)
        luaL_error(L, "%s contains a NUL byte", what);
    return s;
}

/* c:send_query(sql [, rows_arrays]) queues a simple Query. */
static int conn_send_query(lua_State *L)
{
    binding *b = check_open(L);
    size_t len;
    const char *sql = check_text(L, 2, &len, "SQL text");

    if (op_begin(L, b, OP_QUERY, 3) < 0)
        return op_finish(L, b, PGC_FAIL);
    return queued_result(L, b, sent(b, pgc_enc_query(pgc_conn_out(b->c),
                                                     sql, len)));
}

/*
 * Encodes the parameters at stack indexes first..last into b->bind, with
 * their types and formats into oids/formats (arrays of n in b->scratch).
 * server_oids is the stack index of a sequence of described types, or 0.
 * Raises when a value cannot be encoded; nothing is queued then.
 */
static void encode_params(lua_State *L, binding *b, int first, int n,
                          int server_oids, uint32_t **oids, int16_t **fmts)
{
    int json_encode, i;
    size_t need = (size_t)n * (sizeof **oids + sizeof **fmts) + 8;

    if (n > 65535)
        luaL_error(L, "too many parameters (%d; at most 65535)", n);
    pgc_buf_clear(&b->bind);
    pgc_buf_clear(&b->scratch);
    if (pgc_buf_reserve(&b->scratch, need) == NULL)
        luaL_error(L, "out of memory");
    *oids = (uint32_t *)(void *)b->scratch.data;
    *fmts = (int16_t *)(void *)(b->scratch.data + (size_t)n * 4);

    lua_getiuservalue(L, 1, UV_JSON_ENCODE);
    json_encode = lua_isfunction(L, -1) ? lua_gettop(L) : 0;
    for (i = 0; i < n; i++) {
        uint32_t server = 0, oid;
        int format;

        if (server_oids != 0) {
            lua_rawgeti(L, server_oids, i + 1);
            server = (uint32_t)lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        pgc_values_encode(L, first + i, i + 1, server, json_encode,
                          &b->bind, &oid, &format);
        (*oids)[i] = oid;
        (*fmts)[i] = (int16_t)format;
    }
    lua_pop(L, 1);
}

/*
 * Appends to out Bind for statement name with the encoded parameters
 * (b->bind), asking for results in the given formats (ncols of them; 0:
 * all text), then Describe (portal) and Execute, and Sync when sync is
 * set.  Returns 0, or -1 when out of memory.
 */
static int append_bind_execute(binding *b, pgc_buf *out, const char *name,
                               int n, const int16_t *fmts, int ncols,
                               const int16_t *result_fmts, int sync)
{
    size_t at = pgc_msg_begin(out, 'B');
    int i;

    if (at == (size_t)-1 || pgc_buf_append_u8(out, 0) < 0 ||
        pgc_buf_append_cstr(out, name) < 0 ||
        pgc_buf_append_i16(out, (int16_t)n) < 0)
        return -1;
    for (i = 0; i < n; i++)
        if (pgc_buf_append_i16(out, fmts[i]) < 0)
            return -1;
    if (pgc_buf_append_i16(out, (int16_t)n) < 0 ||
        pgc_buf_append(out, pgc_buf_head(&b->bind),
                       pgc_buf_len(&b->bind)) < 0 ||
        pgc_buf_append_i16(out, (int16_t)ncols) < 0)
        return -1;
    for (i = 0; i < ncols; i++)
        if (pgc_buf_append_i16(out, result_fmts[i]) < 0)
            return -1;
    pgc_msg_end(out, at);
    if (pgc_enc_describe(out, 'P', "") < 0 ||
        pgc_enc_execute(out, "", 0) < 0 || (sync && pgc_enc_sync(out) < 0))
        return -1;
    return 0;
}

/*
 * Chooses result formats for the column types in the sequence at
 * col_idx: binary for the types this client decodes from binary, unless
 * a decoder is registered for them.  Fills b->formats; returns the count.
 */
static int result_formats(lua_State *L, binding *b, int col_idx)
{
    int ncols = (int)lua_rawlen(L, col_idx), decoders, i;
    int16_t *f;

    if (ncols > 65535)
        return luaL_error(L, "too many columns");
    pgc_buf_clear(&b->formats);
    if (pgc_buf_reserve(&b->formats, (size_t)ncols * 2 + 2) == NULL)
        return luaL_error(L, "out of memory");
    f = (int16_t *)(void *)b->formats.data;
    lua_getiuservalue(L, 1, UV_DECODERS);
    decoders = lua_istable(L, -1) ? lua_gettop(L) : 0;
    for (i = 0; i < ncols; i++) {
        uint32_t oid;

        lua_rawgeti(L, col_idx, i + 1);
        oid = (uint32_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
        f[i] = (int16_t)pgc_values_wants_binary(oid);
        if (decoders != 0) {
            if (lua_rawgeti(L, decoders, oid) != LUA_TNIL)
                f[i] = 0;
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    return ncols;
}

/*
 * c:execute(rows_arrays, sql, ...) queues Parse/Bind/Describe/Execute/
 * Sync on the unnamed statement with the arguments after sql as
 * parameters (every argument counts, trailing nils included).  Results
 * come in text format.  Over the native socket it runs at once and
 * returns what op_finish does; for a Lua transport it returns true, and
 * c:step() goes on.
 */
static int conn_execute(lua_State *L)
{
    binding *b = check_open(L);
    size_t len;
    const char *sql = check_text(L, 3, &len, "SQL text");
    int n = lua_gettop(L) - 3;
    uint32_t *oids;
    int16_t *fmts;
    pgc_buf *out;

    /* Encoding may raise: it runs before the operation starts. */
    encode_params(L, b, 4, n, 0, &oids, &fmts);
    if (op_begin(L, b, OP_EXECUTE, 2) < 0)
        return op_finish(L, b, PGC_FAIL);
    oids = (uint32_t *)(void *)b->scratch.data;
    fmts = (int16_t *)(void *)(b->scratch.data + (size_t)n * 4);
    out = pgc_conn_out(b->c);
    if (pgc_enc_parse(out, "", sql, len, n, oids) < 0 ||
        append_bind_execute(b, out, "", n, fmts, 0, NULL, 1) < 0)
        return queued_result(L, b, sent(b, -1));
    if (sent(b, 0) < 0)
        return op_finish(L, b, PGC_FAIL);
    if (b->fd < 0)
        return (lua_pushboolean(L, 1), 1);
    return run_native(L, b);
}

/* c:send_prepare(name, sql) queues Parse of a named statement, Describe
 * (statement) and Sync. */
static int conn_send_prepare(lua_State *L)
{
    binding *b = check_open(L);
    size_t nlen, len;
    const char *name = check_text(L, 2, &nlen, "statement name");
    const char *sql = check_text(L, 3, &len, "SQL text");
    pgc_buf *out;

    if (op_begin(L, b, OP_PREPARE, 4) < 0)
        return op_finish(L, b, PGC_FAIL);
    out = pgc_conn_out(b->c);
    if (pgc_enc_parse(out, name, sql, len, 0, NULL) < 0 ||
        pgc_enc_describe(out, 'S', name) < 0 || pgc_enc_sync(out) < 0)
        return queued_result(L, b, sent(b, -1));
    return queued_result(L, b, sent(b, 0));
}

/*
 * c:send_bind_many(rows_arrays, name, param_oids, column_oids, list,
 * first, last) queues, for each parameter list list[first..last], Bind/
 * Describe/Execute of a prepared statement, and one Sync after them all:
 * one round trip for the lot.  Each list holds #param_oids values (nil
 * for NULL).  Returns true, or nil, err; the results come one per list.
 */
static int conn_send_bind_many(lua_State *L)
{
    binding *b = check_open(L);
    size_t nlen;
    const char *name = check_text(L, 3, &nlen, "statement name");
    lua_Integer first = luaL_checkinteger(L, 6 + 1);
    lua_Integer last = luaL_checkinteger(L, 6 + 2);
    lua_Integer row;
    int n, ncols, j;

    luaL_checktype(L, 4, LUA_TTABLE);
    luaL_checktype(L, 5, LUA_TTABLE);
    luaL_checktype(L, 6, LUA_TTABLE);
    n = (int)lua_rawlen(L, 4);
    ncols = result_formats(L, b, 5);
    lua_settop(L, 8);
    pgc_buf_clear(&b->batch);

    /* Everything is encoded first, so that a value that raises leaves
     * nothing half-queued. */
    for (row = first; row <= last; row++) {
        uint32_t *oids;
        int16_t *fmts;

        if (lua_rawgeti(L, 6, row) != LUA_TTABLE)
            return luaL_error(L, "execute_many: entry %I is not a table of "
                              "parameters", row);
        luaL_checkstack(L, n + 4, "parameters");
        for (j = 1; j <= n; j++)
            lua_rawgeti(L, 9, j);
        encode_params(L, b, 10, n, 4, &oids, &fmts);
        if (append_bind_execute(b, &b->batch, name, n, fmts, ncols,
                                (const int16_t *)(void *)b->formats.data,
                                0) < 0)
            return luaL_error(L, "out of memory");
        lua_settop(L, 8);
    }
    if (pgc_enc_sync(&b->batch) < 0)
        return luaL_error(L, "out of memory");

    if (op_begin(L, b, OP_BATCH, 2) < 0)
        return op_finish(L, b, PGC_FAIL);
    return queued_result(L, b, sent(b, pgc_buf_append(pgc_conn_out(b->c),
                                                      pgc_buf_head(&b->batch),
                                                      pgc_buf_len(&b->batch))));
}

/* c:send_close(name, ...) queues Close (statement) for each name, and
 * Sync. */
static int conn_send_close(lua_State *L)
{
    binding *b = check_open(L);
    int n = lua_gettop(L), i;
    pgc_buf *out;

    for (i = 2; i <= n; i++) {
        size_t len;

        check_text(L, i, &len, "statement name");
    }
    if (op_begin(L, b, OP_CLOSE, n + 1) < 0)
        return op_finish(L, b, PGC_FAIL);
    out = pgc_conn_out(b->c);
    for (i = 2; i <= n; i++)
        if (pgc_enc_close(out, 'S', lua_tostring(L, i)) < 0)
            return queued_result(L, b, sent(b, -1));
    return queued_result(L, b, sent(b, pgc_enc_sync(out)));
}

/* c:run_native() runs the queued operation over the native socket and
 * returns what it produced (see op_finish). */
/*
 * Sends a CancelRequest for this connection's backend over a new
 * connection: to host and port, or when host is NULL to the address the
 * native socket is connected to.  Waits until the server has taken it
 * (it closes that connection), so that it cannot reach a later query.
 * Returns 0, or -1 with a message in err.
 */
static int send_cancel(binding *b, const char *host, int port,
                       int64_t deadline, char *err, size_t errlen)
{
    pgc_buf req;
    int fd, rc = -1;
    char sink[64];

    fd = host != NULL ? pgc_sock_connect(host, port, deadline, err, errlen)
                      : pgc_sock_connect_peer(b->fd, deadline, err, errlen);
    if (fd < 0)
        return -1;
    pgc_buf_init(&req);
    if (pgc_enc_cancel_request(&req, pgc_conn_backend_pid(b->c),
                               pgc_conn_backend_key(b->c)) < 0) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    while (pgc_buf_len(&req) > 0) {
        ssize_t n = pgc_sock_write(fd, pgc_buf_head(&req),
                                   pgc_buf_len(&req));

        if (n > 0) {
            pgc_buf_consume(&req, (size_t)n);
        } else if ((errno != EAGAIN && errno != EWOULDBLOCK) ||
                   pgc_sock_wait(fd, 1, deadline) <= 0) {
            snprintf(err, errlen, "could not send the cancel request");
            goto done;
        }
    }
    for (;;) {
        ssize_t n = pgc_sock_read(fd, sink, sizeof sink);

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            break;
        if (n < 0 && pgc_sock_wait(fd, 0, deadline) <= 0)
            break;
    }
    rc = 0;

done:
    pgc_buf_free(&req);
    pgc_sock_close(fd);
    return rc;
}

/*
 * Runs the queued operation over the native socket.  When a wait for
 * the server outlasts the timeout option, a CancelRequest is sent and the
 * server gets as long again to end the statement; its error (57014)
 * then comes back with timeout = true, and the connection stays usable.
 */
static int run_native(lua_State *L, binding *b)
{
    char err[PGC_ERRLEN];
    int rc, io;

    b->may_cancel = b->timeout > 0;
    b->cancel_sent = 0;
    load_slots(L, b);
    for (;;) {
        rc = process(L, b);
        if (rc != PGC_WANT_READ)
            break;
        io = native_io(b, deadline_after(b->timeout));
        if (io == 1) {
            b->may_cancel = 0;
            b->cancel_sent = 1;
            (void)send_cancel(b, NULL, 0, deadline_after(b->timeout), err,
                              sizeof err);
            continue;
        }
        if (io < 0) {
            rc = PGC_FAIL;
            break;
        }
    }
    b->may_cancel = 0;
    if (rc == PGC_DONE && native_flush(b, deadline_after(b->timeout)) < 0)
        rc = PGC_FAIL;
    if (rc == PGC_DONE && b->cancel_sent) {
        lua_getiuservalue(L, 1, UV_ERROR);
        if (lua_istable(L, -1)) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "timeout");
        }
        lua_pop(L, 1);
    }
    return op_finish(L, b, rc);
}

/*
 * c:cancel([host, port]) asks the server to cancel the statement this
 * connection runs, over a new connection: to host and port when given,
 * else to the native socket's peer.  Returns true (the server may still
 * finish the statement), or nil, err.
 */
static int conn_cancel(lua_State *L)
{
    binding *b = check_open(L);
    const char *host = luaL_optstring(L, 2, NULL);
    int port = (int)luaL_optinteger(L, 3, 5432);
    char err[PGC_ERRLEN];

    if (host == NULL && b->fd < 0)
        return luaL_error(L, "cancel needs the server's host and port on "
                          "this transport");
    if (send_cancel(b, host, port, deadline_after(10), err,
                    sizeof err) < 0) {
        lua_pushnil(L);
        push_error(L, "io", err);
        return 2;
    }
    return (lua_pushboolean(L, 1), 1);
}

static int conn_run_native(lua_State *L)
{
    binding *b = check_open(L);

    if (b->op == OP_NONE)
        return luaL_error(L, "no operation in progress");
    return run_native(L, b);
}

/*
 * c:result_formats(column_oids) returns the result format codes a
 * prepared statement asks for, as a string of 2-byte codes in host order
 * for c:exec_prepared.
 */
static int conn_result_formats(lua_State *L)
{
    binding *b = check_open(L);
    int ncols;

    luaL_checktype(L, 2, LUA_TTABLE);
    ncols = result_formats(L, b, 2);
    lua_pushlstring(L, b->formats.data, (size_t)ncols * 2);
    return 1;
}

/*
 * c:exec_prepared(rows_arrays, name, param_oids, formats, ...) queues
 * Bind/Describe/Execute/Sync for a prepared statement, asking for results
 * in the formats from c:result_formats, and over the native socket runs
 * it at once, returning its result (or nil, err).  For a Lua transport it
 * returns true, and c:step() goes on.
 */
static int conn_exec_prepared(lua_State *L)
{
    binding *b = check_open(L);
    size_t nlen, flen;
    const char *name = check_text(L, 3, &nlen, "statement name");
    const char *formats = luaL_checklstring(L, 5, &flen);
    int n = lua_gettop(L) - 5, rc;
    uint32_t *oids;
    int16_t *fmts;

    luaL_checktype(L, 4, LUA_TTABLE);
    if ((size_t)n != lua_rawlen(L, 4)) {
        int expected = (int)lua_rawlen(L, 4);
        const char *msg = lua_pushfstring(L, "statement %s expects %d "
                                          "parameter%s, got %d", name,
                                          expected, expected == 1 ? "" : "s",
                                          n);

        lua_pushnil(L);
        push_error(L, "config", msg);
        return 2;
    }
    /* Encoding may raise: it runs before the operation starts. */
    encode_params(L, b, 6, n, 4, &oids, &fmts);
    if (op_begin(L, b, OP_EXECUTE, 2) < 0)
        return op_finish(L, b, PGC_FAIL);
    rc = append_bind_execute(b, pgc_conn_out(b->c), name, n, fmts,
                             (int)(flen / 2),
                             (const int16_t *)(const void *)formats, 1);
    if (sent(b, rc) < 0)
        return op_finish(L, b, PGC_FAIL);
    if (b->fd < 0)
        return (lua_pushboolean(L, 1), 1);
    lua_settop(L, 1);
    return run_native(L, b);
}

/* c:step([data]) processes what was fed for a Lua transport, and data:
 * returns "read", hint [, output] (want_read) when more bytes are
 * needed, else what the operation produced. */
static int conn_step(lua_State *L)
{
    binding *b = check_open(L);
    int rc;

    if (b->op == OP_NONE)
        return luaL_error(L, "no operation in progress");
    feed_arg(L, b);
    load_slots(L, b);
    rc = process(L, b);
    if (rc == PGC_WANT_READ)
        return want_read(L, b);
    return op_finish(L, b, rc);
}

/*
 * c:decode_text(oid, text) decodes one text-format value of type oid as
 * results are decoded (arrays the connection learnt included).  Returns
 * the value, or nil, message.
 */
static int conn_decode_text(lua_State *L)
{
    binding *b = check_open(L);
    uint32_t oid = (uint32_t)luaL_checkinteger(L, 2);
    size_t len;
    const char *text = luaL_checklstring(L, 3, &len);
    pgc_decode_env env;
    pgc_column col;
    char err[256];

    lua_settop(L, 3);
    lua_getiuservalue(L, 1, UV_DECODERS);       /* 4 */
    lua_getiuservalue(L, 1, UV_JSON_DECODE);    /* 5 */
    lua_getiuservalue(L, 1, UV_ARRAYS);         /* 6 */
    env.custom_idx = lua_istable(L, 4) ? 4 : 0;
    env.json_idx = lua_isfunction(L, 5) ? 5 : 0;
    env.arrays_idx = lua_istable(L, 6) ? 6 : 0;
    env.numeric_number = b->numeric_number;
    env.c_decimal_point = pgc_values_c_decimal_point();
    env.scratch = &b->scratch;
    pgc_values_describe(L, &env, &col, oid, 0);
    if (pgc_values_push(L, &env, &col, text, len, err, sizeof err) < 0) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    return 1;
}

/*
 * c:configure{rows = "arrays"|"maps", numeric = "number"|"string",
 * json_decode = fn|nil, json_encode = fn|nil, decoders = {[oid] = fn}}
 * sets how results are decoded and JSON parameters encoded.
 */
static int conn_configure(lua_State *L)
{
    binding *b = check_open(L);
    const char *rows, *numeric;

    luaL_checktype(L, 2, LUA_TTABLE);
    rows = opt_field(L, 2, "rows");
    numeric = opt_field(L, 2, "numeric");
    b->rows_arrays = rows != NULL && strcmp(rows, "arrays") == 0;
    b->numeric_number = numeric != NULL && strcmp(numeric, "number") == 0;
    lua_getfield(L, 2, "json_decode");
    lua_setiuservalue(L, 1, UV_JSON_DECODE);
    lua_getfield(L, 2, "json_encode");
    lua_setiuservalue(L, 1, UV_JSON_ENCODE);
    lua_getfield(L, 2, "decoders");
    lua_setiuservalue(L, 1, UV_DECODERS);
    lua_getfield(L, 2, "arrays");
    lua_setiuservalue(L, 1, UV_ARRAYS);
    /* Column kinds depend on the decoders: describe afresh. */
    pgc_buf_clear(&b->last_desc);
    return 0;
}

/* ------------------------------------------------------------------ */
/* connection facts                                                    */
/* ------------------------------------------------------------------ */

/* c:parameter(name) returns a ParameterStatus value, or nil. */
static int conn_parameter(lua_State *L)
{
    binding *b = check_open(L);
    const char *v = pgc_conn_parameter(b->c, luaL_checkstring(L, 2));

    if (v == NULL)
        return 0;
    lua_pushstring(L, v);
    return 1;
}

/* c:parameters() returns a table of all ParameterStatus values. */
static int conn_parameters(lua_State *L)
{
    binding *b = check_open(L);
    const char *name, *value;
    size_t i;

    lua_newtable(L);
    for (i = 0; pgc_conn_parameter_at(b->c, i, &name, &value) == 0; i++) {
        lua_pushstring(L, value);
        lua_setfield(L, -2, name);
    }
    return 1;
}

static int conn_backend_pid(lua_State *L)
{
    binding *b = check_open(L);

    lua_pushinteger(L, pgc_conn_backend_pid(b->c));
    return 1;
}

/* c:status() returns "idle", "transaction" or "error", or "failed" once
 * the connection is unusable. */
static int conn_status(lua_State *L)
{
    binding *b = check_open(L);

    if (pgc_conn_is_failed(b->c))
        return (lua_pushliteral(L, "failed"), 1);
    switch (pgc_conn_txn_status(b->c)) {
    case 'T':
        lua_pushliteral(L, "transaction");
        break;
    case 'E':
        lua_pushliteral(L, "error");
        break;
    default:
        lua_pushliteral(L, "idle");
    }
    return 1;
}

/* c:tls_info() returns nil on a plain connection, else a table with
 * version, cipher, peer_subject, peer_issuer, alpn (the protocol the
 * server selected, if any) and channel_binding (whether the
 * authentication was bound to this TLS channel). */
static int conn_tls_info(lua_State *L)
{
    binding *b = check_open(L);
    pgc_tls *t = pgc_conn_tls(b->c);
    char dn[1024];

    if (t == NULL || !b->started)
        return (lua_pushnil(L), 1);
    lua_createtable(L, 0, 6);
    lua_pushstring(L, pgc_tls_version(t));
    lua_setfield(L, -2, "version");
    lua_pushstring(L, pgc_tls_cipher(t));
    lua_setfield(L, -2, "cipher");
    if (pgc_tls_peer_dn(t, 0, dn, sizeof dn) == 0) {
        lua_pushstring(L, dn);
        lua_setfield(L, -2, "peer_subject");
    }
    if (pgc_tls_peer_dn(t, 1, dn, sizeof dn) == 0) {
        lua_pushstring(L, dn);
        lua_setfield(L, -2, "peer_issuer");
    }
    if (pgc_tls_alpn(t) != NULL) {
        lua_pushstring(L, pgc_tls_alpn(t));
        lua_setfield(L, -2, "alpn");
    }
    lua_pushboolean(L, pgc_conn_channel_bound(b->c));
    lua_setfield(L, -2, "channel_binding");
    return 1;
}

static int conn_is_closed(lua_State *L)
{
    binding *b = check_binding(L);

    lua_pushboolean(L, b->closed);
    return 1;
}

/* ------------------------------------------------------------------ */
/* module                                                              */
/* ------------------------------------------------------------------ */

static const luaL_Reg context_methods[] = {
    { "__gc", context_gc },
    { "__close", context_gc },
    { "__tostring", context_tostring },
    { NULL, NULL }
};

/* ------------------------------------------------------------------ */
/* fast paths for execute                                              */
/* ------------------------------------------------------------------ */

/*
 * stmt:execute(...) and conn:execute(sql, ...) are C closures made by
 * c:statement_execute and c:connection_execute.  When the connection is
 * in the state the Lua layer last reported (c:set_dirty,
 * c:types_synced), they go straight to the core; otherwise they call the
 * Lua function given as their fallback, which does the preparatory work.
 */

/* Upvalues of both closures. */
enum {
    FUV_CONN = 1,       /* the core connection */
    FUV_SLOW,           /* Lua fallback(self, ...) */
    FUV_FINISH,         /* Lua finish(conn, res, err, names_missing) */
    FUV_SELF,           /* the Lua connection */
    FUV_TYPES,          /* the type registry's state table */
    /* a statement's */
    FUV_NAME,
    FUV_OIDS,
    FUV_FORMATS,
    FUV_ROWS,
    FUV_FORMATS_VERSION,
    FUV_STATEMENT,      /* the Lua statement */
    FUV_STATEMENT_COUNT = FUV_STATEMENT
};

/* The registry version in the state table at upvalue FUV_TYPES. */
static lua_Integer types_version(lua_State *L)
{
    lua_Integer v;

    lua_getfield(L, lua_upvalueindex(FUV_TYPES), "version");
    v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

/* Whether b may run an operation without the Lua layer's preamble. */
static int fast_ready(lua_State *L, binding *b)
{
    return b != NULL && !b->closed && b->fd >= 0 && !b->dirty &&
           b->op == OP_NONE && b->types_synced == types_version(L);
}

/* Calls the fallback with this call's arguments; returns its results. */
static int call_slow(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(FUV_SLOW));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/*
 * Returns the nres results of a core call at the top: the result alone,
 * or what finish makes of them when they are an error or miss type names.
 */
static int fast_results(lua_State *L, int nres)
{
    int first = lua_gettop(L) - nres + 1;

    if (nres >= 1 && !lua_isnil(L, first) &&
        !(nres >= 3 && lua_toboolean(L, first + 2)))
        return (lua_settop(L, first), 1);
    lua_settop(L, first + 2);
    lua_pushvalue(L, lua_upvalueindex(FUV_FINISH));
    lua_insert(L, first);
    lua_pushvalue(L, lua_upvalueindex(FUV_SELF));
    lua_insert(L, first + 1);
    lua_call(L, 4, LUA_MULTRET);
    return lua_gettop(L) - first + 1;
}

/* stmt:execute(...): the statement's upvalues before its parameters. */
static int fast_statement_execute(lua_State *L)
{
    binding *b = lua_touserdata(L, lua_upvalueindex(FUV_CONN));

    if (!fast_ready(L, b) || b->has_encoders ||
        lua_tointeger(L, lua_upvalueindex(FUV_FORMATS_VERSION)) !=
        b->types_synced ||
        !lua_rawequal(L, 1, lua_upvalueindex(FUV_STATEMENT)))
        return call_slow(L);
    /* As c:exec_prepared(rows, name, oids, formats, ...) */
    lua_pushvalue(L, lua_upvalueindex(FUV_CONN));
    lua_replace(L, 1);
    lua_pushvalue(L, lua_upvalueindex(FUV_ROWS));
    lua_pushvalue(L, lua_upvalueindex(FUV_NAME));
    lua_pushvalue(L, lua_upvalueindex(FUV_OIDS));
    lua_pushvalue(L, lua_upvalueindex(FUV_FORMATS));
    lua_rotate(L, 2, 4);
    return fast_results(L, conn_exec_prepared(L));
}

/* conn:execute(sql, ...). */
static int fast_connection_execute(lua_State *L)
{
    binding *b = lua_touserdata(L, lua_upvalueindex(FUV_CONN));

    if (!fast_ready(L, b) || !lua_rawequal(L, 1, lua_upvalueindex(FUV_SELF)))
        return call_slow(L);
    /* As c:execute(nil, sql, ...) */
    lua_pushvalue(L, lua_upvalueindex(FUV_CONN));
    lua_replace(L, 1);
    lua_pushnil(L);
    lua_insert(L, 2);
    return fast_results(L, conn_execute(L));
}

/*
 * conn:query(sql [, opts]) without opts.  The nres results of the query
 * go to finish(conn, ...) when one of them lacks type names or the first
 * is nil (an error).
 */
static int fast_connection_query(lua_State *L)
{
    binding *b = lua_touserdata(L, lua_upvalueindex(FUV_CONN));
    int nres, base;

    if (!fast_ready(L, b) || !lua_rawequal(L, 1, lua_upvalueindex(FUV_SELF)) ||
        !lua_isnoneornil(L, 3))
        return call_slow(L);
    /* As c:send_query(sql), then the run */
    lua_pushvalue(L, lua_upvalueindex(FUV_CONN));
    lua_replace(L, 1);
    lua_settop(L, 2);
    nres = conn_send_query(L);
    if (nres == 1 && lua_type(L, -1) == LUA_TBOOLEAN) {
        lua_settop(L, 1);
        nres = run_native(L, b);
        if (nres >= 1 && !lua_isnil(L, -nres) && !b->names_missing)
            return nres;
    }
    base = lua_gettop(L) - nres;
    lua_pushvalue(L, lua_upvalueindex(FUV_FINISH));
    lua_pushvalue(L, lua_upvalueindex(FUV_SELF));
    lua_rotate(L, base + 1, 2);
    lua_call(L, nres + 1, LUA_MULTRET);
    return lua_gettop(L) - base;
}

/* Checks the arguments the closures take: (c, fallback, finish, conn,
 * types_state). */
static void check_fast_args(lua_State *L)
{
    check_binding(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    luaL_checktype(L, 5, LUA_TTABLE);
}

/* Returns fn as a closure over the arguments check_fast_args checks. */
static int push_connection_fast(lua_State *L, lua_CFunction fn)
{
    check_fast_args(L);
    lua_settop(L, 5);
    lua_pushcclosure(L, fn, 5);
    return 1;
}

/*
 * c:connection_execute(fallback, finish, conn, types_state) returns the
 * fast conn:execute; c:connection_query(...) the fast conn:query.
 */
static int conn_connection_execute(lua_State *L)
{
    return push_connection_fast(L, fast_connection_execute);
}

static int conn_connection_query(lua_State *L)
{
    return push_connection_fast(L, fast_connection_query);
}

/*
 * c:statement_execute(fallback, finish, conn, types_state, name, oids,
 * formats, rows, formats_version, stmt) returns the fast stmt:execute of
 * a statement whose result formats were chosen at that registry version.
 */
static int conn_statement_execute(lua_State *L)
{
    check_fast_args(L);
    luaL_checkstring(L, 6);
    luaL_checktype(L, 7, LUA_TTABLE);
    luaL_checkstring(L, 8);
    luaL_checkinteger(L, 10);
    luaL_checktype(L, 11, LUA_TTABLE);
    lua_settop(L, 11);
    lua_pushboolean(L, lua_toboolean(L, 9));
    lua_replace(L, 9);
    lua_pushcclosure(L, fast_statement_execute, FUV_STATEMENT_COUNT);
    return 1;
}

/* c:set_dirty(flag): whether work waits for the next operation. */
static int conn_set_dirty(lua_State *L)
{
    binding *b = check_binding(L);

    b->dirty = lua_toboolean(L, 2);
    return 0;
}

/* c:types_synced(version, has_encoders): the registry version the
 * connection's decoders now follow. */
static int conn_types_synced(lua_State *L)
{
    binding *b = check_binding(L);

    b->types_synced = luaL_checkinteger(L, 2);
    b->has_encoders = lua_toboolean(L, 3);
    return 0;
}

static const luaL_Reg conn_methods[] = {
    { "connect_native", conn_connect_native },
    { "startup_native", conn_startup_native },
    { "startup_step", conn_startup_step },
    { "take_output", conn_take_output },
    { "feed", conn_feed },
    { "fail_io", conn_fail_io },
    { "send_query", conn_send_query },
    { "execute", conn_execute },
    { "send_prepare", conn_send_prepare },
    { "send_bind_many", conn_send_bind_many },
    { "exec_prepared", conn_exec_prepared },
    { "result_formats", conn_result_formats },
    { "statement_execute", conn_statement_execute },
    { "connection_execute", conn_connection_execute },
    { "connection_query", conn_connection_query },
    { "set_dirty", conn_set_dirty },
    { "types_synced", conn_types_synced },
    { "send_close", conn_send_close },
    { "run_native", conn_run_native },
    { "step", conn_step },
    { "configure", conn_configure },
    { "decode_text", conn_decode_text },
    { "cancel", conn_cancel },
    { "parameter", conn_parameter },
    { "parameters", conn_parameters },
    { "backend_pid", conn_backend_pid },
    { "status", conn_status },
    { "tls_info", conn_tls_info },
    { "is_closed", conn_is_closed },
    { "close", conn_close },
    { NULL, NULL }
};

static const luaL_Reg conn_meta[] = {
    { "__gc", conn_gc },
    { "__close", conn_gc },
    { "__tostring", conn_tostring },
    { NULL, NULL }
};

/* core.type_name(oid) returns the name of a built-in type, or nil. */
static int core_type_name(lua_State *L)
{
    const char *name = pgc_values_type_name(
        (uint32_t)luaL_checkinteger(L, 1));

    if (name == NULL)
        return 0;
    lua_pushstring(L, name);
    return 1;
}

static const luaL_Reg core_functions[] = {
    { "type_name", core_type_name },
    { "new_context", core_new_context },
    { "new_conn", core_new_conn },
    { NULL, NULL }
};

int luaopen_pg_core(lua_State *L)
{
    luaL_newmetatable(L, CONTEXT_MT);
    luaL_setfuncs(L, context_methods, 0);
    lua_pushliteral(L, "pg.ssl.context");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);

    luaL_newmetatable(L, CONN_MT);
    luaL_setfuncs(L, conn_meta, 0);
    luaL_newlib(L, conn_methods);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    luaL_newmetatable(L, "pg.json");
    lua_pushliteral(L, "pg.json");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);
    luaL_newmetatable(L, "pg.bytea");
    lua_pushliteral(L, "pg.bytea");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);

    luaL_newmetatable(L, ERROR_MT);
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newlib(L, core_functions);
    luaL_getmetatable(L, ERROR_MT);
    lua_setfield(L, -2, "error_mt");
    luaL_getmetatable(L, "pg.json");
    lua_setfield(L, -2, "json_mt");
    luaL_getmetatable(L, "pg.bytea");
    lua_setfield(L, -2, "bytea_mt");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
