/*
 * conn.c - the connection state machine.  See conn.h.  Uses protocol.h
 * for messages, auth.h for passwords and SCRAM, tls.h for TLS; does no
 * I/O of its own.
 */
#include "conn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

enum state {
    ST_NEW,
    ST_SSL_RESPONSE,     /* SSLRequest sent, waiting for 'S' or 'N' */
    ST_HANDSHAKE,
    ST_AUTH,             /* StartupMessage sent, authenticating */
    ST_WAIT_READY,       /* authenticated, waiting for ReadyForQuery */
    ST_READY,
    ST_FAILED,
    ST_CLOSED
};

/* Where the SCRAM exchange is. */
enum sasl_step { SASL_NONE, SASL_SENT_FIRST, SASL_SENT_FINAL, SASL_DONE };

typedef struct param {
    char *name;
    char *value;
} param;

struct pgc_conn {
    enum state state;
    pgc_error err;

    pgc_buf raw_in;          /* bytes from the network */
    pgc_buf raw_out;         /* bytes for the network */
    pgc_buf plain_in;        /* decrypted bytes, when TLS is up */
    pgc_buf plain_out;       /* bytes to encrypt, when TLS is up */
    pgc_buf *in;             /* raw_in or plain_in */
    pgc_buf *out;            /* raw_out or plain_out */
    size_t consume;          /* frame length of the last returned message */
    int eof;
    size_t max_message;

    pgc_buf startup;         /* NUL-separated name/value pairs */
    char *user;
    char *password;

    pgc_tls_ctx *tls_ctx;    /* non-NULL when TLS is asked for */
    int check_chain;
    char *verify_host;
    char *sni;
    char *priority;
    int direct;
    int allow_plain;
    pgc_tls *tls;
    int first_record_checked;   /* the server's first TLS bytes looked at */

    pgc_scram scram;
    enum sasl_step sasl;
    int sasl_plus;           /* the exchange is SCRAM-SHA-256-PLUS */
    int cbind_mode;          /* PGC_CBIND_* */
    int channel_bound;       /* SCRAM-SHA-256-PLUS went through */

    param *params;           /* ParameterStatus values */
    size_t nparams;
    int backend_pid;
    int backend_key;
    char txn_status;

    pgc_notice_fn notice;
    void *notice_ud;
};

/* ------------------------------------------------------------------ */
/* life cycle and configuration                                        */
/* ------------------------------------------------------------------ */

pgc_conn *pgc_conn_new(void)
{
    pgc_conn *c = calloc(1, sizeof *c);

    if (c == NULL)
        return NULL;
    pgc_buf_init(&c->raw_in);
    pgc_buf_init(&c->raw_out);
    pgc_buf_init(&c->plain_in);
    pgc_buf_init(&c->plain_out);
    pgc_buf_init(&c->startup);
    c->in = &c->raw_in;
    c->out = &c->raw_out;
    c->max_message = (size_t)1 << 30;
    c->txn_status = 'I';
    c->cbind_mode = PGC_CBIND_PREFER;
    return c;
}

/* Overwrites and frees a secret string; NULL is ok. */
static void free_secret(char *s)
{
    if (s == NULL)
        return;
    memset(s, 0, strlen(s));
    free(s);
}

void pgc_conn_free(pgc_conn *c)
{
    size_t i;

    if (c == NULL)
        return;
    pgc_tls_free(c->tls);
    pgc_tls_ctx_unref(c->tls_ctx);
    pgc_scram_free(&c->scram);
    pgc_buf_free(&c->raw_in);
    pgc_buf_free(&c->raw_out);
    pgc_buf_free(&c->plain_in);
    pgc_buf_free(&c->plain_out);
    pgc_buf_free(&c->startup);
    for (i = 0; i < c->nparams; i++) {
        free(c->params[i].name);
        free(c->params[i].value);
    }
    free(c->params);
    free(c->err.fields);
    free(c->user);
    free_secret(c->password);
    free(c->verify_host);
    free(c->sni);
    free(c->priority);
    free(c);
}

/* strdup that accepts NULL; sets *ok to 0 when out of memory. */
static char *dup_or_null(const char *s, int *ok)
{
    char *d;

    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *ok = 0;
    return d;
}

int pgc_conn_add_param(pgc_conn *c, const char *name, const char *value)
{
    if (strcmp(name, "user") == 0) {
        free(c->user);
        c->user = strdup(value);
        if (c->user == NULL)
            return -1;
    }
    if (pgc_buf_append_cstr(&c->startup, name) < 0 ||
        pgc_buf_append_cstr(&c->startup, value) < 0)
        return -1;
    return 0;
}

int pgc_conn_set_password(pgc_conn *c, const char *password)
{
    int ok = 1;

    free_secret(c->password);
    c->password = dup_or_null(password, &ok);
    return ok ? 0 : -1;
}

int pgc_conn_use_tls(pgc_conn *c, pgc_tls_ctx *ctx,
                     const pgc_tls_options *o)
{
    int ok = 1;

    pgc_tls_ctx_ref(ctx);
    pgc_tls_ctx_unref(c->tls_ctx);
    c->tls_ctx = ctx;
    c->check_chain = o->check_chain;
    c->direct = o->direct;
    c->allow_plain = o->allow_plain;
    free(c->verify_host);
    free(c->sni);
    free(c->priority);
    c->verify_host = dup_or_null(o->verify_host, &ok);
    c->sni = dup_or_null(o->sni, &ok);
    c->priority = dup_or_null(o->priority, &ok);
    return ok ? 0 : -1;
}

void pgc_conn_set_channel_binding(pgc_conn *c, int mode)
{
    c->cbind_mode = mode;
}

void pgc_conn_set_notice(pgc_conn *c, pgc_notice_fn fn, void *ud)
{
    c->notice = fn;
    c->notice_ud = ud;
}

void pgc_conn_set_max_message(pgc_conn *c, size_t max)
{
    c->max_message = max;
}

/* ------------------------------------------------------------------ */
/* errors and state                                                    */
/* ------------------------------------------------------------------ */

void pgc_conn_fail(pgc_conn *c, int kind, const char *fmt, ...)
{
    va_list ap;

    if (c->state == ST_FAILED)
        return;        /* keep the first error: it is the cause */
    c->err.kind = kind;
    va_start(ap, fmt);
    vsnprintf(c->err.message, sizeof c->err.message, fmt, ap);
    va_end(ap);
    c->state = ST_FAILED;
}

/*
 * Fails with the ErrorResponse in msg, keeping a copy of its fields.  The
 * message text is the M field.
 */
static void fail_with_server_error(pgc_conn *c, int kind, const pgc_msg *m)
{
    pgc_reader r;
    const char *text = "server error";

    pgc_reader_init(&r, m->body, m->len);
    while (r.left > 0) {
        uint8_t code = pgc_read_u8(&r);
        const char *value;

        if (code == 0)
            break;
        value = pgc_read_cstr(&r, NULL);
        if (value == NULL)
            break;
        if (code == 'M')
            text = value;
    }
    pgc_conn_fail(c, kind, "%s", text);
    free(c->err.fields);
    c->err.fields = malloc(m->len ? m->len : 1);
    if (c->err.fields != NULL) {
        memcpy(c->err.fields, m->body, m->len);
        c->err.fields_len = m->len;
    }
}

const pgc_error *pgc_conn_error(const pgc_conn *c)
{
    return &c->err;
}

int pgc_conn_is_ready(const pgc_conn *c)
{
    return c->state == ST_READY;
}

int pgc_conn_is_failed(const pgc_conn *c)
{
    return c->state == ST_FAILED;
}

int pgc_conn_is_closed(const pgc_conn *c)
{
    return c->state == ST_CLOSED;
}

char pgc_conn_txn_status(const pgc_conn *c)
{
    return c->txn_status;
}

int pgc_conn_backend_pid(const pgc_conn *c)
{
    return c->backend_pid;
}

int pgc_conn_backend_key(const pgc_conn *c)
{
    return c->backend_key;
}

const char *pgc_conn_parameter(const pgc_conn *c, const char *name)
{
    size_t i;

    for (i = 0; i < c->nparams; i++)
        if (strcmp(c->params[i].name, name) == 0)
            return c->params[i].value;
    return NULL;
}

int pgc_conn_parameter_at(const pgc_conn *c, size_t i, const char **name,
                          const char **value)
{
    if (i >= c->nparams)
        return -1;
    *name = c->params[i].name;
    *value = c->params[i].value;
    return 0;
}

pgc_tls *pgc_conn_tls(const pgc_conn *c)
{
    return c->state == ST_HANDSHAKE ? NULL : c->tls;
}

int pgc_conn_channel_bound(const pgc_conn *c)
{
    return c->channel_bound;
}

/* ------------------------------------------------------------------ */
/* moving bytes                                                        */
/* ------------------------------------------------------------------ */

pgc_buf *pgc_conn_raw_in(pgc_conn *c)
{
    return &c->raw_in;
}

pgc_buf *pgc_conn_raw_out(pgc_conn *c)
{
    return &c->raw_out;
}

void pgc_conn_eof(pgc_conn *c)
{
    c->eof = 1;
}

/*
 * Whether the server sends more after a message of this type without
 * waiting for the client: not after ReadyForQuery, an authentication
 * request (it may wait for the answer), or CopyInResponse and
 * CopyBothResponse (they wait for data).  After an error that ends the
 * session the server closes the connection, which ends any read.
 */
static int more_follows(char type)
{
    switch (type) {
    case 'Z':
    case 'R':
    case 'G':
    case 'W':
        return 0;
    default:
        return 1;
    }
}

size_t pgc_conn_read_hint(const pgc_conn *c)
{
    size_t need;

    switch (c->state) {
    case ST_SSL_RESPONSE:
        return 1;
    case ST_HANDSHAKE:
        return pgc_tls_read_hint(c->tls);
    default:
        break;
    }
    if (c->tls != NULL) {
        /* A whole message may already be decrypted but for a few bytes
         * still inside the next record: the record is what is missing. */
        return pgc_tls_read_hint(c->tls);
    }
    need = pgc_frame_need(&c->raw_in);
    /* For the rest of a message that more will follow, the header of the
     * next one too: one read instead of two. */
    if (pgc_buf_len(&c->raw_in) >= 5) {
        const char *head = pgc_buf_head(&c->raw_in);
        uint32_t len = pgc_get_u32(head + 1);

        if (len >= 4 && pgc_buf_len(&c->raw_in) - 1 < len &&
            more_follows(head[0]))
            need += 5;
    }
    return need;
}

/*
 * Encrypts what was queued in plain_out into raw_out.  Returns 0, or -1
 * with the connection failed.
 */
static int flush_out(pgc_conn *c)
{
    char err[PGC_TLS_ERRLEN];

    if (c->out != &c->plain_out || pgc_buf_len(&c->plain_out) == 0)
        return 0;
    if (pgc_tls_send(c->tls, pgc_buf_head(&c->plain_out),
                     pgc_buf_len(&c->plain_out), err, sizeof err) < 0) {
        pgc_conn_fail(c, PGC_ERR_TLS, "%s", err);
        return -1;
    }
    pgc_buf_clear(&c->plain_out);
    return 0;
}

/* After an encoder ran: fails on out of memory, else flushes. */
static int queued(pgc_conn *c, int rc)
{
    if (rc < 0) {
        pgc_conn_fail(c, PGC_ERR_IO, "out of memory");
        return -1;
    }
    return flush_out(c);
}

/* The failure for end of stream, which depends on where it happens. */
static int fail_eof(pgc_conn *c)
{
    const char *when;

    switch (c->state) {
    case ST_SSL_RESPONSE:
        when = " while negotiating TLS";
        break;
    case ST_HANDSHAKE:
        when = c->direct ? " during the TLS handshake (direct TLS, "
                           "ssl_negotiation \"direct\", needs PostgreSQL "
                           "17 or later)"
                         : " during the TLS handshake";
        break;
    case ST_AUTH:
    case ST_WAIT_READY:
        when = " during startup";
        break;
    default:
        when = "";
    }
    pgc_conn_fail(c, PGC_ERR_IO, "server closed the connection "
                  "unexpectedly%s", when);
    return PGC_FAIL;
}

/* Records a ParameterStatus.  Returns 0, or -1 with the error set. */
static int store_parameter(pgc_conn *c, const pgc_msg *m)
{
    pgc_reader r;
    const char *name, *value;
    char *v;
    size_t i;
    param *grown;

    pgc_reader_init(&r, m->body, m->len);
    name = pgc_read_cstr(&r, NULL);
    value = pgc_read_cstr(&r, NULL);
    if (r.bad) {
        pgc_conn_fail(c, PGC_ERR_PROTOCOL, "malformed ParameterStatus");
        return -1;
    }
    v = strdup(value);
    if (v == NULL)
        goto oom;
    for (i = 0; i < c->nparams; i++) {
        if (strcmp(c->params[i].name, name) == 0) {
            free(c->params[i].value);
            c->params[i].value = v;
            return 0;
        }
    }
    grown = realloc(c->params, (c->nparams + 1) * sizeof *grown);
    if (grown == NULL) {
        free(v);
        goto oom;
    }
    c->params = grown;
    c->params[c->nparams].name = strdup(name);
    if (c->params[c->nparams].name == NULL) {
        free(v);
        goto oom;
    }
    c->params[c->nparams++].value = v;
    return 0;

oom:
    pgc_conn_fail(c, PGC_ERR_IO, "out of memory");
    return -1;
}

/*
 * Finds the next backend message, decrypting as needed, and deals with
 * the asynchronous ones (ParameterStatus, NoticeResponse,
 * NotificationResponse) itself.  Returns PGC_DONE with msg, PGC_WANT_READ
 * or PGC_FAIL.
 */
static int read_message(pgc_conn *c, pgc_msg *m)
{
    char err[PGC_TLS_ERRLEN];

    if (c->consume) {
        pgc_buf_consume(c->in, c->consume);
        c->consume = 0;
    }

    for (;;) {
        int rc = pgc_frame_next(c->in, c->max_message, m, &c->consume,
                                err, sizeof err);

        if (rc == PGC_FRAME_BAD) {
            c->consume = 0;
            pgc_conn_fail(c, PGC_ERR_PROTOCOL, "%s", err);
            return PGC_FAIL;
        }
        if (rc == PGC_FRAME_OK) {
            if (m->type == 'S') {
                if (store_parameter(c, m) < 0)
                    return PGC_FAIL;
            } else if (m->type == 'N') {
                if (c->notice != NULL)
                    c->notice(c->notice_ud, m->body, m->len);
            } else if (m->type != 'A') {
                return PGC_DONE;
            }
            pgc_buf_consume(c->in, c->consume);
            c->consume = 0;
            continue;
        }

        /* Not a whole message yet: decrypt more, or ask for bytes. */
        if (c->tls != NULL) {
            rc = pgc_tls_recv(c->tls, &c->plain_in, err, sizeof err);
            if (rc == PGC_TLS_DONE)
                continue;
            if (rc == PGC_TLS_FAIL) {
                pgc_conn_fail(c, PGC_ERR_TLS, "%s", err);
                return PGC_FAIL;
            }
            if (rc == PGC_TLS_EOF)
                return fail_eof(c);
        }
        if (c->eof)
            return fail_eof(c);
        return PGC_WANT_READ;
    }
}

/* ------------------------------------------------------------------ */
/* startup                                                             */
/* ------------------------------------------------------------------ */

static int send_startup(pgc_conn *c)
{
    const char *kv[64];
    const char *p = pgc_buf_head(&c->startup);
    const char *end = p + pgc_buf_len(&c->startup);
    size_t n = 0;

    while (p < end && n < 64) {
        kv[n++] = p;
        p += strlen(p) + 1;
    }
    if (p < end) {
        pgc_conn_fail(c, PGC_ERR_CONFIG, "too many startup parameters");
        return -1;
    }
    if (c->cbind_mode == PGC_CBIND_REQUIRE && c->tls == NULL) {
        pgc_conn_fail(c, PGC_ERR_AUTH, "channel_binding is \"require\", "
                      "but the connection does not use TLS, so there is "
                      "no channel to bind the authentication to");
        return -1;
    }
    c->state = ST_AUTH;
    return queued(c, pgc_enc_startup(c->out, kv, n / 2));
}

/* Creates the TLS session; the handshake comes next. */
static int start_tls(pgc_conn *c)
{
    char err[PGC_TLS_ERRLEN];

    c->tls = pgc_tls_new(c->tls_ctx, &c->raw_in, &c->raw_out, c->sni,
                         c->priority, err, sizeof err);
    if (c->tls == NULL) {
        pgc_conn_fail(c, PGC_ERR_TLS, "%s", err);
        return PGC_FAIL;
    }
    c->state = ST_HANDSHAKE;
    return PGC_DONE;
}

/*
 * Reads the single byte that answers SSLRequest.  'S' starts TLS; 'N'
 * is an error unless the connection may go on without TLS (ssl_mode
 * "prefer"), in which case the startup goes on in plain text on the
 * same connection.
 */
static int ssl_response(pgc_conn *c)
{
    unsigned char answer;

    if (pgc_buf_len(&c->raw_in) == 0)
        return c->eof ? fail_eof(c) : PGC_WANT_READ;
    answer = (unsigned char)pgc_buf_head(&c->raw_in)[0];
    pgc_buf_consume(&c->raw_in, 1);

    if (answer != 'S' && answer != 'N') {
        pgc_conn_fail(c, PGC_ERR_PROTOCOL, "invalid answer to SSLRequest: "
                      "byte 0x%02x (expected 'S' or 'N')", answer);
        return PGC_FAIL;
    }
    if (pgc_buf_len(&c->raw_in) > 0) {
        pgc_conn_fail(c, answer == 'S' ? PGC_ERR_TLS : PGC_ERR_PROTOCOL,
                      "the server sent unencrypted data after its answer "
                      "to SSLRequest; this can be a man-in-the-middle "
                      "attack (CVE-2021-23222)");
        return PGC_FAIL;
    }
    if (answer == 'N' && !c->allow_plain) {
        pgc_conn_fail(c, PGC_ERR_TLS, "the server does not accept TLS "
                      "connections (it answered 'N' to SSLRequest); "
                      "refusing to continue without TLS");
        return PGC_FAIL;
    }
    if (answer == 'N')
        return send_startup(c) < 0 ? PGC_FAIL : PGC_DONE;
    return start_tls(c);
}

/*
 * Advances the handshake; once it is done, verifies the server as asked,
 * checks ALPN for direct TLS, and sends the StartupMessage through TLS.
 */
static int handshake(pgc_conn *c)
{
    char err[PGC_TLS_ERRLEN];
    int rc;
    const char *alpn;

    /* A transport that reads exactly what is asked for hands over the
     * bytes that follow 'S' only now.  The server's first bytes must be a
     * TLS handshake or alert record; anything else is plain text injected
     * before TLS began (CVE-2021-23222). */
    if (!c->first_record_checked && pgc_buf_len(&c->raw_in) > 0) {
        unsigned char type = (unsigned char)pgc_buf_head(&c->raw_in)[0];

        c->first_record_checked = 1;
        if (!c->direct && type != 0x16 && type != 0x15) {
            pgc_conn_fail(c, PGC_ERR_TLS, "the server sent unencrypted data "
                          "after its answer to SSLRequest; this can be a "
                          "man-in-the-middle attack (CVE-2021-23222)");
            return PGC_FAIL;
        }
    }
    rc = pgc_tls_handshake(c->tls, err, sizeof err);

    if (rc == PGC_TLS_WANT_READ)
        return c->eof ? fail_eof(c) : PGC_WANT_READ;
    if (rc == PGC_TLS_FAIL) {
        pgc_conn_fail(c, PGC_ERR_TLS, "%s", err);
        return PGC_FAIL;
    }
    if ((c->check_chain || c->verify_host != NULL) &&
        pgc_tls_verify(c->tls, c->check_chain, c->verify_host, err,
                       sizeof err) < 0) {
        pgc_conn_fail(c, PGC_ERR_TLS, "%s", err);
        return PGC_FAIL;
    }
    alpn = pgc_tls_alpn(c->tls);
    if (c->direct && (alpn == NULL || strcmp(alpn, "postgresql") != 0)) {
        pgc_conn_fail(c, PGC_ERR_TLS, "the server selected %s%s%s, but "
                      "direct TLS (ssl_negotiation \"direct\") needs the "
                      "ALPN protocol \"postgresql\"; the server may be "
                      "older than PostgreSQL 17",
                      alpn ? "the ALPN protocol \"" : "no ALPN protocol",
                      alpn ? alpn : "", alpn ? "\"" : "");
        return PGC_FAIL;
    }

    c->in = &c->plain_in;
    c->out = &c->plain_out;
    if (send_startup(c) < 0)
        return PGC_FAIL;
    return PGC_DONE;
}

/* A name for an authentication request code, for error messages. */
static const char *auth_method_name(int code)
{
    switch (code) {
    case PGC_AUTH_KERBEROS_V5:
        return "Kerberos V5";
    case PGC_AUTH_SCM_CREDENTIAL:
        return "SCM credentials";
    case PGC_AUTH_GSS:
    case PGC_AUTH_GSS_CONTINUE:
        return "GSSAPI";
    case PGC_AUTH_SSPI:
        return "SSPI";
    default:
        return "an unknown method";
    }
}

/* Fails when no password was configured for a method that needs one. */
static int need_password(pgc_conn *c, const char *method)
{
    if (c->password != NULL)
        return 0;
    pgc_conn_fail(c, PGC_ERR_AUTH, "the server asked for %s password "
                  "authentication, but no password was given", method);
    return -1;
}

/* The SASL mechanisms the server offered, as start_sasl sees them. */
typedef struct sasl_offer {
    int scram;               /* SCRAM-SHA-256 */
    int plus;                /* SCRAM-SHA-256-PLUS */
    char names[256];         /* all of them, for messages */
} sasl_offer;

/* Reads the list of mechanisms of AuthenticationSASL.  Returns 0, or -1
 * with the connection failed. */
static int read_sasl_offer(pgc_conn *c, pgc_reader *r, sasl_offer *o)
{
    size_t used = 0;

    memset(o, 0, sizeof *o);
    for (;;) {
        size_t len;
        const char *mech = pgc_read_cstr(r, &len);

        if (mech == NULL || len == 0)
            break;
        if (strcmp(mech, "SCRAM-SHA-256") == 0)
            o->scram = 1;
        if (strcmp(mech, "SCRAM-SHA-256-PLUS") == 0)
            o->plus = 1;
        if (used < sizeof o->names)
            used += (size_t)snprintf(o->names + used,
                                     sizeof o->names - used, "%s%s",
                                     used ? ", " : "", mech);
    }
    if (r->bad) {
        pgc_conn_fail(c, PGC_ERR_PROTOCOL, "malformed SASL request");
        return -1;
    }
    if (used == 0)
        snprintf(o->names, sizeof o->names, "(none)");
    return 0;
}

/*
 * Picks the mechanism: SCRAM-SHA-256-PLUS with tls-server-end-point
 * when the server offers it over TLS and channel binding is not
 * disabled, else SCRAM-SHA-256.  Sets *plus and the GS2 flag: 'p' for
 * PLUS, 'y' when the client could bind but the server did not offer it,
 * 'n' without TLS or with channel binding disabled.  Returns 0, or -1
 * with the connection failed, before anything is sent.
 */
static int choose_mechanism(pgc_conn *c, const sasl_offer *o, int *plus,
                            char *flag)
{
    if (o->plus && c->tls == NULL) {
        pgc_conn_fail(c, PGC_ERR_AUTH, "the server offered "
                      "SCRAM-SHA-256-PLUS on a connection without TLS, "
                      "where there is no channel to bind; TLS may have "
                      "been stripped by something in between");
        return -1;
    }
    *plus = o->plus && c->cbind_mode != PGC_CBIND_DISABLE;
    if (!*plus && c->cbind_mode == PGC_CBIND_REQUIRE) {
        pgc_conn_fail(c, PGC_ERR_AUTH, "channel_binding is \"require\", "
                      "but the server did not offer SCRAM-SHA-256-PLUS "
                      "(it offered %s)", o->names);
        return -1;
    }
    if (!*plus && !o->scram) {
        pgc_conn_fail(c, PGC_ERR_AUTH, "the server offered the SASL "
                      "mechanisms %s, none of which is supported%s",
                      o->names, o->plus ? " with channel_binding "
                      "\"disable\"" : "");
        return -1;
    }
    if (*plus)
        *flag = 'p';
    else if (c->tls != NULL && c->cbind_mode != PGC_CBIND_DISABLE)
        *flag = 'y';
    else
        *flag = 'n';
    return 0;
}

/*
 * Answers AuthenticationSASL: chooses the mechanism and sends the
 * client-first-message.  Returns 0, or -1 with the connection failed.
 */
static int start_sasl(pgc_conn *c, pgc_reader *r)
{
    unsigned char cbind[PGC_TLS_CBIND_MAX];
    size_t cbind_len = 0;
    char err[PGC_TLS_ERRLEN], flag;
    sasl_offer offer;
    pgc_buf first;
    int plus, rc;

    if (read_sasl_offer(c, r, &offer) < 0 ||
        choose_mechanism(c, &offer, &plus, &flag) < 0 ||
        need_password(c, plus ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256") < 0)
        return -1;
    if (plus && pgc_tls_server_end_point(c->tls, cbind, &cbind_len, err,
                                         sizeof err) < 0) {
        pgc_conn_fail(c, PGC_ERR_TLS, "%s", err);
        return -1;
    }

    pgc_buf_init(&first);
    if (pgc_scram_init(&c->scram, c->password, flag, plus ? cbind : NULL,
                       cbind_len, err, sizeof err) < 0 ||
        pgc_scram_client_first(&c->scram, &first, err, sizeof err) < 0) {
        pgc_buf_free(&first);
        pgc_conn_fail(c, PGC_ERR_AUTH, "%s", err);
        return -1;
    }
    rc = pgc_enc_sasl_initial(c->out, plus ? "SCRAM-SHA-256-PLUS"
                                           : "SCRAM-SHA-256",
                              pgc_buf_head(&first), pgc_buf_len(&first));
    pgc_buf_free(&first);
    c->sasl = SASL_SENT_FIRST;
    c->sasl_plus = plus;
    return queued(c, rc);
}

/* Answers server-first-message with client-final-message. */
static int continue_sasl(pgc_conn *c, pgc_reader *r)
{
    char err[256];
    pgc_buf final;
    int rc;

    if (c->sasl != SASL_SENT_FIRST) {
        pgc_conn_fail(c, PGC_ERR_PROTOCOL, "unexpected SASLContinue");
        return -1;
    }
    pgc_buf_init(&final);
    if (pgc_scram_client_final(&c->scram, r->p, r->left, &final, err,
                               sizeof err) < 0) {
        pgc_buf_free(&final);
        pgc_conn_fail(c, PGC_ERR_AUTH, "%s", err);
        return -1;
    }
    rc = pgc_enc_sasl_response(c->out, pgc_buf_head(&final),
                               pgc_buf_len(&final));
    pgc_buf_free(&final);
    c->sasl = SASL_SENT_FINAL;
    return queued(c, rc);
}

/* Checks the server's signature in server-final-message. */
static int finish_sasl(pgc_conn *c, pgc_reader *r)
{
    char err[256];

    if (c->sasl != SASL_SENT_FINAL) {
        pgc_conn_fail(c, PGC_ERR_PROTOCOL, "unexpected SASLFinal");
        return -1;
    }
    if (pgc_scram_verify_final(&c->scram, r->p, r->left, err,
                               sizeof err) < 0) {
        pgc_conn_fail(c, PGC_ERR_AUTH, "%s", err);
        return -1;
    }
    c->sasl = SASL_DONE;
    c->channel_bound = c->sasl_plus;
    return 0;
}

/*
 * With channel_binding "require", fails when the server is about to
 * authenticate the client, or has done so, without channel binding
 * (method names it).  Returns 0 when all is well, -1 when failed.
 */
static int require_binding(pgc_conn *c, const char *method)
{
    if (c->cbind_mode != PGC_CBIND_REQUIRE || c->channel_bound)
        return 0;
    pgc_conn_fail(c, PGC_ERR_AUTH, "channel_binding is \"require\", but "
                  "the server authenticates with %s, which has no channel "
                  "binding", method);
    return -1;
}

/* Handles one Authentication* message.  Returns 0, or -1 (failed). */
static int authenticate(pgc_conn *c, const pgc_msg *m)
{
    pgc_reader r;
    int32_t code;

    pgc_reader_init(&r, m->body, m->len);
    code = pgc_read_i32(&r);
    if (r.bad) {
        pgc_conn_fail(c, PGC_ERR_PROTOCOL, "malformed authentication "
                      "request");
        return -1;
    }

    switch (code) {
    case PGC_AUTH_OK:
        if (c->sasl == SASL_SENT_FIRST || c->sasl == SASL_SENT_FINAL) {
            pgc_conn_fail(c, PGC_ERR_AUTH, "the server ended SCRAM "
                          "authentication without proving it knows the "
                          "password");
            return -1;
        }
        if (require_binding(c, c->sasl == SASL_DONE ? "SCRAM-SHA-256"
                            : "trust or certificate authentication") < 0)
            return -1;
        c->state = ST_WAIT_READY;
        return 0;
    case PGC_AUTH_CLEARTEXT:
        if (require_binding(c, "a cleartext password") < 0 ||
            need_password(c, "cleartext") < 0)
            return -1;
        return queued(c, pgc_enc_password(c->out, c->password));
    case PGC_AUTH_MD5: {
        const char *salt = pgc_read_bytes(&r, 4);
        char hashed[36];

        if (salt == NULL) {
            pgc_conn_fail(c, PGC_ERR_PROTOCOL, "malformed MD5 request");
            return -1;
        }
        if (require_binding(c, "an MD5 password") < 0 ||
            need_password(c, "MD5") < 0)
            return -1;
        if (pgc_auth_md5(c->user ? c->user : "", c->password,
                         (const unsigned char *)salt, hashed) < 0) {
            pgc_conn_fail(c, PGC_ERR_AUTH, "MD5 hashing failed");
            return -1;
        }
        return queued(c, pgc_enc_password(c->out, hashed));
    }
    case PGC_AUTH_SASL:
        return start_sasl(c, &r);
    case PGC_AUTH_SASL_CONTINUE:
        return continue_sasl(c, &r);
    case PGC_AUTH_SASL_FINAL:
        return finish_sasl(c, &r);
    default:
        pgc_conn_fail(c, PGC_ERR_AUTH, "the server asked for %s "
                      "authentication (request code %d), which is not "
                      "supported", auth_method_name(code), (int)code);
        return -1;
    }
}

/* Handles one message after StartupMessage was sent. */
static int startup_message(pgc_conn *c, const pgc_msg *m)
{
    pgc_reader r;

    switch (m->type) {
    case 'R':
        if (c->state != ST_AUTH) {
            pgc_conn_fail(c, PGC_ERR_PROTOCOL, "authentication request "
                          "after authentication succeeded");
            return -1;
        }
        return authenticate(c, m);
    case 'E':
        fail_with_server_error(c, c->state == ST_AUTH ? PGC_ERR_AUTH
                                                      : PGC_ERR_SERVER, m);
        return -1;
    case 'K':
        pgc_reader_init(&r, m->body, m->len);
        c->backend_pid = pgc_read_i32(&r);
        c->backend_key = pgc_read_i32(&r);
        if (r.bad) {
            pgc_conn_fail(c, PGC_ERR_PROTOCOL, "malformed BackendKeyData");
            return -1;
        }
        return 0;
    case 'v':
        /* NegotiateProtocolVersion: the server speaks an older 3.x minor
         * version; nothing this client sends depends on a newer one. */
        return 0;
    case 'Z':
        if (c->state != ST_WAIT_READY || m->len != 1) {
            pgc_conn_fail(c, PGC_ERR_PROTOCOL, "unexpected ReadyForQuery "
                          "during startup");
            return -1;
        }
        c->txn_status = m->body[0];
        c->state = ST_READY;
        return 0;
    default:
        pgc_conn_fail(c, PGC_ERR_PROTOCOL, "unexpected message type '%c' "
                      "during startup", m->type);
        return -1;
    }
}

int pgc_conn_startup(pgc_conn *c)
{
    for (;;) {
        pgc_msg m;
        int rc;

        switch (c->state) {
        case ST_NEW:
            if (c->tls_ctx != NULL && c->direct) {
                if (start_tls(c) != PGC_DONE)
                    return PGC_FAIL;
                break;
            }
            if (c->tls_ctx != NULL) {
                c->state = ST_SSL_RESPONSE;
                if (queued(c, pgc_enc_ssl_request(c->out)) < 0)
                    return PGC_FAIL;
                return PGC_WANT_READ;
            }
            if (send_startup(c) < 0)
                return PGC_FAIL;
            break;
        case ST_SSL_RESPONSE:
            rc = ssl_response(c);
            if (rc != PGC_DONE)
                return rc;
            break;
        case ST_HANDSHAKE:
            rc = handshake(c);
            if (rc != PGC_DONE)
                return rc;
            break;
        case ST_AUTH:
        case ST_WAIT_READY:
            rc = read_message(c, &m);
            if (rc != PGC_DONE)
                return rc;
            if (startup_message(c, &m) < 0)
                return PGC_FAIL;
            break;
        case ST_READY:
            return PGC_DONE;
        case ST_FAILED:
            return PGC_FAIL;
        case ST_CLOSED:
            pgc_conn_fail(c, PGC_ERR_IO, "connection is closed");
            return PGC_FAIL;
        }
    }
}

/* ------------------------------------------------------------------ */
/* query cycles                                                        */
/* ------------------------------------------------------------------ */

int pgc_conn_next(pgc_conn *c, pgc_msg *m)
{
    int rc;

    if (c->state == ST_FAILED)
        return PGC_FAIL;
    if (c->state == ST_CLOSED) {
        pgc_conn_fail(c, PGC_ERR_IO, "connection is closed");
        return PGC_FAIL;
    }
    rc = read_message(c, m);
    if (rc == PGC_DONE && m->type == 'Z') {
        if (m->len != 1) {
            pgc_conn_fail(c, PGC_ERR_PROTOCOL, "malformed ReadyForQuery");
            return PGC_FAIL;
        }
        c->txn_status = m->body[0];
    }
    return rc;
}

int pgc_conn_send_query(pgc_conn *c, const char *sql, size_t len)
{
    return queued(c, pgc_enc_query(c->out, sql, len));
}

int pgc_conn_send_copy_fail(pgc_conn *c, const char *reason)
{
    return queued(c, pgc_enc_copy_fail(c->out, reason));
}

pgc_buf *pgc_conn_out(pgc_conn *c)
{
    return c->out;
}

int pgc_conn_commit(pgc_conn *c)
{
    return flush_out(c);
}

void pgc_conn_terminate(pgc_conn *c)
{
    if (c->state == ST_READY || c->state == ST_WAIT_READY ||
        c->state == ST_AUTH) {
        if (pgc_enc_terminate(c->out) == 0)
            flush_out(c);
    }
    if (c->tls != NULL && c->state != ST_HANDSHAKE)
        pgc_tls_bye(c->tls);
    c->state = ST_CLOSED;
}
