/*
 * conn.h - the connection state machine, without I/O.
 *
 * It runs SSLRequest -> TLS handshake -> StartupMessage -> authentication
 * -> ReadyForQuery, then query cycles; with direct TLS the handshake
 * comes first, without SSLRequest.  It consumes bytes the caller puts
 * in its raw input buffer and produces bytes in its raw output buffer;
 * when it cannot go on it says so (PGC_WANT_READ) and the caller moves
 * bytes.  Uses protocol.h, auth.h and tls.h; no sockets, no Lua.
 */
#ifndef PGC_CONN_H
#define PGC_CONN_H

#include <stddef.h>

#include "buffer.h"
#include "protocol.h"
#include "tls.h"

enum {
    PGC_DONE = 1,
    PGC_WANT_READ = 0,
    PGC_FAIL = -1
};

/* What kind of failure an error is. */
enum {
    PGC_ERR_NONE = 0,
    PGC_ERR_CONFIG,
    PGC_ERR_IO,
    PGC_ERR_TLS,
    PGC_ERR_AUTH,
    PGC_ERR_SERVER,
    PGC_ERR_PROTOCOL
};

#define PGC_ERRLEN 1024

/*
 * The connection's error.  For errors the server sent, fields holds a
 * copy of the ErrorResponse body (field type byte, NUL-terminated value,
 * repeated, then a zero byte).
 */
typedef struct pgc_error {
    int kind;
    char message[PGC_ERRLEN];
    char *fields;
    size_t fields_len;
} pgc_error;

/* Called with the body of each NoticeResponse. */
typedef void (*pgc_notice_fn)(void *ud, const char *body, size_t len);

typedef struct pgc_conn pgc_conn;

/* Returns a new connection in its initial state, or NULL (no memory). */
pgc_conn *pgc_conn_new(void);
void pgc_conn_free(pgc_conn *c);

/* ---- configuration, before pgc_conn_startup: 0, or -1 (no memory) ---- */

/* A startup parameter (user, database, application_name, ...). */
int pgc_conn_add_param(pgc_conn *c, const char *name, const char *value);
/* The password, or NULL for none. */
int pgc_conn_set_password(pgc_conn *c, const char *password);
/* How a connection uses TLS; the strings are copied. */
typedef struct pgc_tls_options {
    int check_chain;          /* verify the certificate chain */
    const char *verify_host;  /* name the certificate must carry, or NULL */
    const char *sni;          /* server name indication, or NULL */
    const char *priority;     /* from pgc_tls_priority, or NULL */
    int direct;               /* TLS at once, no SSLRequest; the server
                               * must select ALPN "postgresql" */
    int allow_plain;          /* an 'N' to SSLRequest means: go on
                               * without TLS (ssl_mode "prefer") */
} pgc_tls_options;
/* Asks for TLS with ctx, as o says. */
int pgc_conn_use_tls(pgc_conn *c, pgc_tls_ctx *ctx,
                     const pgc_tls_options *o);

/* channel_binding: whether SCRAM-SHA-256-PLUS is used, or required. */
enum {
    PGC_CBIND_DISABLE,
    PGC_CBIND_PREFER,         /* the default */
    PGC_CBIND_REQUIRE
};
void pgc_conn_set_channel_binding(pgc_conn *c, int mode);
void pgc_conn_set_notice(pgc_conn *c, pgc_notice_fn fn, void *ud);
/* Limit for long messages such as DataRow. */
void pgc_conn_set_max_message(pgc_conn *c, size_t max);

/* ---- running ---- */

/* Advances the startup.  PGC_DONE once ReadyForQuery arrived. */
int pgc_conn_startup(pgc_conn *c);

/*
 * Returns the next backend message in msg (PGC_DONE); it stays valid
 * until the next call.  ParameterStatus and NoticeResponse are handled
 * here and not returned; ReadyForQuery updates the transaction status
 * and is returned.
 */
int pgc_conn_next(pgc_conn *c, pgc_msg *msg);

/* Queue frontend messages; 0, or -1 with the error set. */
int pgc_conn_send_query(pgc_conn *c, const char *sql, size_t len);
int pgc_conn_send_copy_fail(pgc_conn *c, const char *reason);
/*
 * For messages the caller encodes itself: the buffer to append whole
 * messages to, and the call that hands them on (through TLS when it is
 * up).  pgc_conn_commit returns 0, or -1 with the error set.
 */
pgc_buf *pgc_conn_out(pgc_conn *c);
int pgc_conn_commit(pgc_conn *c);
/* Queues Terminate and the TLS close alert; the connection is closed. */
void pgc_conn_terminate(pgc_conn *c);

/* ---- moving bytes ---- */

pgc_buf *pgc_conn_raw_in(pgc_conn *c);
pgc_buf *pgc_conn_raw_out(pgc_conn *c);
/* The transport reached end of stream. */
void pgc_conn_eof(pgc_conn *c);
/* Bytes that must arrive before the connection can make progress. */
size_t pgc_conn_read_hint(const pgc_conn *c);

/* ---- state ---- */

/* Marks the connection failed with an error of the given kind. */
void pgc_conn_fail(pgc_conn *c, int kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const pgc_error *pgc_conn_error(const pgc_conn *c);
int pgc_conn_is_ready(const pgc_conn *c);
int pgc_conn_is_failed(const pgc_conn *c);
int pgc_conn_is_closed(const pgc_conn *c);
/* 'I' idle, 'T' in a transaction, 'E' in a failed transaction. */
char pgc_conn_txn_status(const pgc_conn *c);
int pgc_conn_backend_pid(const pgc_conn *c);
/* The secret key that goes with the process ID in a CancelRequest. */
int pgc_conn_backend_key(const pgc_conn *c);
/* The value of a ParameterStatus, or NULL. */
const char *pgc_conn_parameter(const pgc_conn *c, const char *name);
/* The i-th ParameterStatus (0-based); 0, or -1 past the end. */
int pgc_conn_parameter_at(const pgc_conn *c, size_t i, const char **name,
                          const char **value);
/* The TLS session, or NULL on a plain connection. */
pgc_tls *pgc_conn_tls(const pgc_conn *c);
/* Whether the authentication was channel-bound (SCRAM-SHA-256-PLUS). */
int pgc_conn_channel_bound(const pgc_conn *c);

#endif
