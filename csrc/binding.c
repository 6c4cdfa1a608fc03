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
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

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
    UV_COLUMNS,         /* its column names */
    UV_ERROR,           /* the first ErrorResponse of the query */
    UV_COUNT = UV_ERROR
};

/* How a text-format value is turned into a Lua value. */
enum column_kind { COL_STRING, COL_INTEGER, COL_FLOAT, COL_BOOL };

typedef struct context {
    pgc_tls_ctx *ctx;
    char system_error[PGC_TLS_ERRLEN];  /* why system trust failed */
} context;

typedef struct binding {
    pgc_conn *c;
    lua_State *L;          /* the state running the current call */
    int fd;
    int64_t deadline;      /* for the startup, 0 for none */
    int started;           /* startup finished */
    int closed;
    /* the query being run */
    int in_query;
    int has_columns;
    int ncolumns;
    unsigned char *kinds;  /* enum column_kind per column */
    lua_Integer nrows;
    lua_Integer nresults;
    int copy_out;
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
 * core.new_context{cert_file=, key_file=, ca_cert_file=, key_password=}
 * Returns a context, or nil, err (kind "tls") naming the file at fault.
 * The Lua layer has checked the option names and types.
 */
static int core_new_context(lua_State *L)
{
    const char *cert, *key, *ca, *password;
    char err[PGC_TLS_ERRLEN];
    context *x;

    luaL_checktype(L, 1, LUA_TTABLE);
    cert = opt_field(L, 1, "cert_file");
    key = opt_field(L, 1, "key_file");
    ca = opt_field(L, 1, "ca_cert_file");
    password = opt_field(L, 1, "key_password");

    x = lua_newuserdatauv(L, sizeof *x, 0);
    x->ctx = NULL;
    x->system_error[0] = 0;
    luaL_setmetatable(L, CONTEXT_MT);
    x->ctx = pgc_tls_ctx_new(err, sizeof err);
    if (x->ctx == NULL)
        goto fail;

    if (ca == NULL || strcmp(ca, "system") == 0) {
        /* A missing system store matters only if the chain is checked;
         * the connection reports it then. */
        if (pgc_tls_ctx_trust_system(x->ctx, err, sizeof err) < 0) {
            if (ca != NULL)
                goto fail;
            memcpy(x->system_error, err, sizeof err);
        }
    } else if (pgc_tls_ctx_trust_file(x->ctx, ca, err, sizeof err) < 0) {
        goto fail;
    }
    if (cert != NULL && key != NULL &&
        pgc_tls_ctx_key_pair(x->ctx, cert, key, password, err,
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

/*
 * core.new_conn(opts) creates a connection in its initial state.  opts
 * (checked by the Lua layer) has: startup (table of startup parameters),
 * password, on_notice, max_message, and tls = {context=, check_chain=,
 * host=, sni=} when TLS is wanted.  Returns the connection, or nil, err
 * when TLS cannot verify as asked.
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

    lua_getfield(L, 1, "tls");
    if (lua_istable(L, -1)) {
        int t = lua_gettop(L);
        context *x;
        int check_chain;
        const char *host, *sni;

        lua_getfield(L, t, "context");
        x = check_context(L, -1);
        lua_setiuservalue(L, 2, UV_CONTEXT);
        lua_getfield(L, t, "check_chain");
        check_chain = lua_toboolean(L, -1);
        lua_pop(L, 1);
        host = opt_field(L, t, "host");
        sni = opt_field(L, t, "sni");
        if (check_chain && !pgc_tls_ctx_has_trust(x->ctx)) {
            lua_pushnil(L);
            push_error(L, "tls", x->system_error[0] ? x->system_error
                       : "no CA certificates to verify the server with");
            return 2;
        }
        if (pgc_conn_use_tls(b->c, x->ctx, check_chain, host,
                             sni && !pgc_sock_is_ip_literal(sni) ? sni
                                                                 : NULL) < 0)
            return luaL_error(L, "out of memory");
    }
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
 * connection failed.
 */
static int native_io(binding *b, int64_t deadline)
{
    pgc_buf *in = pgc_conn_raw_in(b->c);

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
        rc = pgc_sock_wait(b->fd, 0, deadline);
        if (rc == 0) {
            pgc_conn_fail(b->c, PGC_ERR_IO, "timeout waiting for the "
                          "server");
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
 * c:connect_native(host, port, connect_timeout) opens the native socket.
 * The timeout bounds the whole startup that follows.  Returns true, or
 * nil, err (kind "io").
 */
static int conn_connect_native(lua_State *L)
{
    binding *b = check_open(L);
    const char *host = luaL_checkstring(L, 2);
    int port = (int)luaL_checkinteger(L, 3);
    char err[PGC_ERRLEN];

    b->deadline = deadline_after(luaL_optnumber(L, 4, 0));
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

/* c:startup_step() advances the startup over bytes fed so far.  Returns
 * true when done, "read" when more bytes are needed, or nil, err. */
static int conn_startup_step(lua_State *L)
{
    binding *b = check_open(L);
    int rc = pgc_conn_startup(b->c);

    if (rc == PGC_DONE) {
        b->started = 1;
        return (lua_pushboolean(L, 1), 1);
    }
    if (rc == PGC_WANT_READ)
        return (lua_pushliteral(L, "read"), 1);
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

/* c:read_hint() returns how many bytes must arrive before progress. */
static int conn_read_hint(lua_State *L)
{
    binding *b = check_open(L);

    lua_pushinteger(L, (lua_Integer)pgc_conn_read_hint(b->c));
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
    free(b->kinds);
    b->kinds = NULL;
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
/* decoding values                                                     */
/* ------------------------------------------------------------------ */

static enum column_kind kind_of_type(uint32_t oid)
{
    switch (oid) {
    case 20:    /* int8 */
    case 21:    /* int2 */
    case 23:    /* int4 */
    case 26:    /* oid */
        return COL_INTEGER;
    case 700:   /* float4 */
    case 701:   /* float8 */
        return COL_FLOAT;
    case 16:    /* bool */
        return COL_BOOL;
    default:
        return COL_STRING;
    }
}

/*
 * Parses a decimal integer in text format, exact over the whole 64-bit
 * range.  Returns 0 with *out set, or -1 when p is not such a number.
 */
static int parse_integer(const char *p, size_t len, lua_Integer *out)
{
    unsigned long long v = 0, limit;
    int negative = 0;
    size_t i = 0;

    if (len > 0 && (p[0] == '-' || p[0] == '+')) {
        negative = p[0] == '-';
        i = 1;
    }
    if (i == len)
        return -1;
    limit = negative ? (unsigned long long)LUA_MAXINTEGER + 1
                     : (unsigned long long)LUA_MAXINTEGER;
    for (; i < len; i++) {
        unsigned d = (unsigned char)p[i] - '0';

        if (d > 9 || v > (limit - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (negative)
        *out = v == (unsigned long long)LUA_MAXINTEGER + 1
               ? LUA_MININTEGER : -(lua_Integer)v;
    else
        *out = (lua_Integer)v;
    return 0;
}

/*
 * Pushes a float from text format ("1.5", "1e+300", "NaN", "Infinity",
 * "-Infinity").  Returns 0, or -1 when p is not a number.
 */
static int push_float(lua_State *L, const char *p, size_t len)
{
    char text[64];

    if (len == 3 && memcmp(p, "NaN", 3) == 0) {
        lua_pushnumber(L, (lua_Number)NAN);
        return 0;
    }
    if (len == 8 && memcmp(p, "Infinity", 8) == 0) {
        lua_pushnumber(L, (lua_Number)HUGE_VAL);
        return 0;
    }
    if (len == 9 && memcmp(p, "-Infinity", 9) == 0) {
        lua_pushnumber(L, (lua_Number)-HUGE_VAL);
        return 0;
    }
    if (len == 0 || len >= sizeof text)
        return -1;
    memcpy(text, p, len);
    text[len] = 0;
    /* lua_stringtonumber follows Lua's own rules, whatever the locale. */
    if (lua_stringtonumber(L, text) == 0)
        return -1;
    if (lua_isinteger(L, -1)) {
        lua_Number n = (lua_Number)lua_tointeger(L, -1);

        lua_pop(L, 1);
        lua_pushnumber(L, n);
    }
    return 0;
}

/* Pushes one text-format value.  Returns 0, or -1 when it does not parse
 * as its type says. */
static int push_value(lua_State *L, enum column_kind kind, const char *p,
                      size_t len)
{
    lua_Integer i;

    switch (kind) {
    case COL_INTEGER:
        if (parse_integer(p, len, &i) < 0)
            return -1;
        lua_pushinteger(L, i);
        return 0;
    case COL_FLOAT:
        return push_float(L, p, len);
    case COL_BOOL:
        if (len != 1 || (p[0] != 't' && p[0] != 'f'))
            return -1;
        lua_pushboolean(L, p[0] == 't');
        return 0;
    default:
        lua_pushlstring(L, p, len);
        return 0;
    }
}

/* ------------------------------------------------------------------ */
/* query cycles                                                        */
/* ------------------------------------------------------------------ */

/* Stack slots used while a query is processed (see query_process). */
#define SLOT_RESULTS 2
#define SLOT_CURRENT 3
#define SLOT_COLUMNS 4

/* Clears the per-query state of the binding and its user values. */
static void query_reset(lua_State *L, binding *b)
{
    int uv;

    b->in_query = 0;
    b->has_columns = 0;
    b->ncolumns = 0;
    b->nrows = 0;
    b->nresults = 0;
    b->copy_out = 0;
    for (uv = UV_RESULTS; uv <= UV_ERROR; uv++) {
        lua_pushnil(L);
        lua_setiuservalue(L, 1, uv);
    }
}

/* Starts a new result table with its columns table in the slots. */
static void new_result(lua_State *L, int ncolumns)
{
    lua_createtable(L, 0, 0);
    lua_createtable(L, ncolumns, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "columns");
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, UV_COLUMNS);
    lua_replace(L, SLOT_COLUMNS);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, UV_CURRENT);
    lua_replace(L, SLOT_CURRENT);
}

/* Handles RowDescription.  Returns 0, or -1 if it is malformed. */
static int row_description(lua_State *L, binding *b, const pgc_msg *m)
{
    pgc_reader r;
    int n, i;
    unsigned char *kinds;

    pgc_reader_init(&r, m->body, m->len);
    n = pgc_read_i16(&r);
    if (r.bad || n < 0)
        return -1;
    kinds = realloc(b->kinds, n > 0 ? (size_t)n : 1);
    if (kinds == NULL)
        luaL_error(L, "out of memory");
    b->kinds = kinds;

    new_result(L, n);
    for (i = 0; i < n; i++) {
        size_t len;
        const char *name = pgc_read_cstr(&r, &len);
        uint32_t type;

        pgc_read_bytes(&r, 6);          /* table OID, attribute number */
        type = (uint32_t)pgc_read_i32(&r);
        pgc_read_bytes(&r, 8);          /* size, modifier, format */
        if (r.bad)
            return -1;
        kinds[i] = (unsigned char)kind_of_type(type);
        lua_pushlstring(L, name, len);
        lua_rawseti(L, SLOT_COLUMNS, i + 1);
    }
    b->ncolumns = n;
    b->has_columns = 1;
    b->nrows = 0;
    return 0;
}

/* Handles DataRow: one table keyed by column name, SQL NULL as the light
 * userdata NULL (pg.null).  Returns 0, or -1 if malformed. */
static int data_row(lua_State *L, binding *b, const pgc_msg *m)
{
    pgc_reader r;
    int n, i;

    if (!b->has_columns)
        return -1;
    pgc_reader_init(&r, m->body, m->len);
    n = pgc_read_i16(&r);
    if (r.bad || n != b->ncolumns)
        return -1;

    lua_createtable(L, 0, n);
    for (i = 0; i < n; i++) {
        int32_t len = pgc_read_i32(&r);
        const char *p;

        lua_rawgeti(L, SLOT_COLUMNS, i + 1);
        if (len == -1) {
            lua_pushlightuserdata(L, NULL);
        } else {
            p = len >= 0 ? pgc_read_bytes(&r, (size_t)len) : NULL;
            if (p == NULL ||
                push_value(L, (enum column_kind)b->kinds[i], p,
                           (size_t)len) < 0) {
                lua_pop(L, 2);
                return -1;
            }
        }
        lua_rawset(L, -3);
    }
    if (r.left != 0) {
        lua_pop(L, 1);
        return -1;
    }
    lua_rawseti(L, SLOT_CURRENT, ++b->nrows);
    return 0;
}

/* Appends the current result to the results, with its command tag. */
static void finish_result(lua_State *L, binding *b, const char *tag,
                          size_t len)
{
    const char *space = memchr(tag, ' ', len);
    const char *last;

    if (!b->has_columns)
        new_result(L, 0);
    lua_pushlstring(L, tag, space ? (size_t)(space - tag) : len);
    lua_setfield(L, SLOT_CURRENT, "command");
    lua_pushlstring(L, tag, len);
    lua_setfield(L, SLOT_CURRENT, "tag");

    /* The row count is the last word when it is a number. */
    last = tag + len;
    while (last > tag && last[-1] >= '0' && last[-1] <= '9')
        last--;
    if (last < tag + len && last > tag && last[-1] == ' ') {
        lua_Integer count;

        if (parse_integer(last, (size_t)(tag + len - last), &count) == 0) {
            lua_pushinteger(L, count);
            lua_setfield(L, SLOT_CURRENT, "affected");
        }
    }

    lua_pushvalue(L, SLOT_CURRENT);
    lua_rawseti(L, SLOT_RESULTS, ++b->nresults);
    b->has_columns = 0;
    b->ncolumns = 0;
    b->nrows = 0;
}

/* Keeps the first error of a query in UV_ERROR. */
static void keep_error(lua_State *L, binding *b, const char *kind,
                       const char *message, const pgc_msg *server)
{
    (void)b;
    lua_getiuservalue(L, 1, UV_ERROR);
    if (!lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    push_error(L, kind, message);
    if (server != NULL)
        set_server_fields(L, server->body, server->len);
    lua_setiuservalue(L, 1, UV_ERROR);
}

/*
 * Processes the messages available for the query in progress.  Returns
 * PGC_DONE at ReadyForQuery, PGC_WANT_READ, or PGC_FAIL when the
 * connection failed.  The result tables live in user values between
 * calls; they are in stack slots 2..4 while this runs.
 */
static int query_process(lua_State *L, binding *b)
{
    lua_settop(L, 1);
    lua_getiuservalue(L, 1, UV_RESULTS);
    lua_getiuservalue(L, 1, UV_CURRENT);
    lua_getiuservalue(L, 1, UV_COLUMNS);

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
        case 'I':
            new_result(L, 0);
            lua_pushboolean(L, 1);
            lua_setfield(L, SLOT_CURRENT, "empty");
            lua_pushvalue(L, SLOT_CURRENT);
            lua_rawseti(L, SLOT_RESULTS, ++b->nresults);
            break;
        case 'E':
            keep_error(L, b, "server", "server error", &m);
            break;
        case 'G':
        case 'W':
            keep_error(L, b, "protocol", "COPY FROM STDIN is not "
                       "supported by query()", NULL);
            if (pgc_conn_send_copy_fail(b->c, "COPY FROM STDIN is not "
                                        "supported by this client") < 0)
                return PGC_FAIL;
            break;
        case 'H':
            keep_error(L, b, "protocol", "COPY TO STDOUT is not supported "
                       "by query()", NULL);
            b->copy_out = 1;
            break;
        case 'd':
        case 'c':
            b->copy_out = 0;
            break;
        case 'Z':
            return PGC_DONE;
        case 'n':
        case '1':
        case '2':
        case '3':
        case 's':
        case 't':
            break;
        default:
            pgc_conn_fail(b->c, PGC_ERR_PROTOCOL, "unexpected message "
                          "type '%c' during a query", m.type);
            return PGC_FAIL;
        }
    }

malformed:
    pgc_conn_fail(b->c, PGC_ERR_PROTOCOL, "malformed %s message from the "
                  "server", "row");
    return PGC_FAIL;
}

/*
 * Ends a query: returns its results as separate values, or nil, err.
 * rc is what query_process returned (PGC_DONE or PGC_FAIL).
 */
static int query_finish(lua_State *L, binding *b, int rc)
{
    lua_Integer i, n = b->nresults;
    int top;

    lua_settop(L, 1);
    lua_getiuservalue(L, 1, UV_ERROR);
    lua_getiuservalue(L, 1, UV_RESULTS);
    top = lua_gettop(L);

    if (rc == PGC_FAIL) {
        /* The connection is unusable from now on; later calls return the
         * same error.  A server error that came before the failure (a
         * FATAL one) explains it best. */
        close_socket(b);
        query_reset(L, b);
        lua_pushnil(L);
        if (!lua_isnil(L, top - 1))
            lua_pushvalue(L, top - 1);
        else
            push_conn_error(L, b);
        return 2;
    }

    query_reset(L, b);
    if (!lua_isnil(L, top - 1)) {
        lua_pushnil(L);
        lua_pushvalue(L, top - 1);
        return 2;
    }
    if (n > INT_MAX - 20 || !lua_checkstack(L, (int)n))
        return luaL_error(L, "too many results");
    for (i = 1; i <= n; i++)
        lua_rawgeti(L, top, i);
    return (int)n;
}

/* Queues a simple Query and prepares the result state.  Raises on
 * misuse; returns 0, or -1 with the connection failed. */
static int query_begin(lua_State *L, binding *b)
{
    size_t len;
    const char *sql = luaL_checklstring(L, 2, &len);

    if (memchr(sql, 0, len) != NULL)
        luaL_argerror(L, 2, "SQL text contains a NUL byte");
    if (b->in_query)
        luaL_error(L, "another query is in progress on this connection");
    if (!pgc_conn_is_ready(b->c)) {
        if (pgc_conn_is_failed(b->c))
            return -1;
        luaL_error(L, "connection is not ready for a query");
    }
    query_reset(L, b);
    lua_newtable(L);
    lua_setiuservalue(L, 1, UV_RESULTS);
    b->in_query = 1;
    return pgc_conn_send_query(b->c, sql, len);
}

/* c:query_native(sql) runs a query over the native socket. */
static int conn_query_native(lua_State *L)
{
    binding *b = check_open(L);
    int rc;

    if (query_begin(L, b) < 0)
        return query_finish(L, b, PGC_FAIL);
    for (;;) {
        rc = query_process(L, b);
        if (rc != PGC_WANT_READ)
            break;
        if (native_io(b, 0) < 0) {
            rc = PGC_FAIL;
            break;
        }
    }
    if (rc == PGC_DONE && native_flush(b, 0) < 0)
        rc = PGC_FAIL;
    return query_finish(L, b, rc);
}

/* c:query_start(sql) queues a query for a Lua transport; then
 * c:query_step() returns "read", or the results, or nil, err. */
static int conn_query_start(lua_State *L)
{
    binding *b = check_open(L);

    if (query_begin(L, b) < 0)
        return query_finish(L, b, PGC_FAIL);
    return (lua_pushboolean(L, 1), 1);
}

static int conn_query_step(lua_State *L)
{
    binding *b = check_open(L);
    int rc;

    if (!b->in_query)
        return luaL_error(L, "no query in progress");
    rc = query_process(L, b);
    if (rc == PGC_WANT_READ)
        return (lua_settop(L, 1), lua_pushliteral(L, "read"), 1);
    return query_finish(L, b, rc);
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

/* c:status() returns "idle", "transaction" or "error". */
static int conn_status(lua_State *L)
{
    binding *b = check_open(L);

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
 * version, cipher, peer_subject and peer_issuer. */
static int conn_tls_info(lua_State *L)
{
    binding *b = check_open(L);
    pgc_tls *t = pgc_conn_tls(b->c);
    char dn[1024];

    if (t == NULL || !b->started)
        return (lua_pushnil(L), 1);
    lua_createtable(L, 0, 5);
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
    lua_pushboolean(L, 0);
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

static const luaL_Reg conn_methods[] = {
    { "connect_native", conn_connect_native },
    { "startup_native", conn_startup_native },
    { "startup_step", conn_startup_step },
    { "take_output", conn_take_output },
    { "read_hint", conn_read_hint },
    { "feed", conn_feed },
    { "fail_io", conn_fail_io },
    { "query_native", conn_query_native },
    { "query_start", conn_query_start },
    { "query_step", conn_query_step },
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

static const luaL_Reg core_functions[] = {
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

    luaL_newmetatable(L, ERROR_MT);
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    luaL_newlib(L, core_functions);
    luaL_getmetatable(L, ERROR_MT);
    lua_setfield(L, -2, "error_mt");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    return 1;
}
