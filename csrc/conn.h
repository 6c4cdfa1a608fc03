/*
 * conn.h - the connection state machine, without I/O.
 *
 * It runs SSLRequest -> TLS handshake -> StartupMessage -> authentication
 * -> ReadyForQuery, then query cycles.  It consumes bytes the caller puts
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
/*
 * Asks for TLS with ctx.  check_chain verifies the certificate chain;
 * verify_host (or NULL) is the name the certificate must carry; sni (or
 * NULL) is sent as server name indication.
 */
int pgc_conn_use_tls(pgc_conn *c, pgc_tls_ctx *ctx, int check_chain,
                     const char *verify_host, const char *sni);
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
/* The value of a ParameterStatus, or NULL. */
const char *pgc_conn_parameter(const pgc_conn *c, const char *name);
/* The i-th ParameterStatus (0-based); 0, or -1 past the end. */
int pgc_conn_parameter_at(const pgc_conn *c, size_t i, const char **name,
                          const char **value);
/* The TLS session, or NULL on a plain connection. */
pgc_tls *pgc_conn_tls(const pgc_conn *c);

#endif
