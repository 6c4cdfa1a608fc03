/*
 * protocol.h - PostgreSQL frontend/backend protocol 3.0 without I/O.
 *
 * Encoders append whole frontend messages to a pgc_buf.  The framer finds
 * the next complete backend message in a pgc_buf and checks its length
 * before anything trusts it; the reader walks a message body with bounds
 * checks.  No sockets, no TLS, no Lua: only buffer.h.
 */
#ifndef PGC_PROTOCOL_H
#define PGC_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "buffer.h"

#define PGC_PROTOCOL_VERSION 196608     /* 3.0 */
#define PGC_SSL_REQUEST_CODE 80877103
#define PGC_CANCEL_REQUEST_CODE 80877102

/*
 * Messages that may legitimately be long (rows, row descriptions, errors,
 * notices, notifications, copy data) are capped by the caller's limit;
 * every other message type is capped at this size.
 */
#define PGC_MAX_SHORT_MESSAGE 30000

/* Authentication request codes carried by 'R' messages. */
enum {
    PGC_AUTH_OK = 0,
    PGC_AUTH_KERBEROS_V5 = 2,
    PGC_AUTH_CLEARTEXT = 3,
    PGC_AUTH_MD5 = 5,
    PGC_AUTH_SCM_CREDENTIAL = 6,
    PGC_AUTH_GSS = 7,
    PGC_AUTH_GSS_CONTINUE = 8,
    PGC_AUTH_SSPI = 9,
    PGC_AUTH_SASL = 10,
    PGC_AUTH_SASL_CONTINUE = 11,
    PGC_AUTH_SASL_FINAL = 12
};

/* One backend message: its type byte and its body (without the header). */
typedef struct pgc_msg {
    char type;
    const char *body;
    size_t len;
} pgc_msg;

enum {
    PGC_FRAME_OK = 0,      /* msg filled in; *frame_len bytes to consume */
    PGC_FRAME_MORE = 1,    /* not a whole message yet */
    PGC_FRAME_BAD = -1     /* framing lost: the connection must drop */
};

/*
 * Looks for one complete backend message at the head of in.  Does not
 * consume it: on PGC_FRAME_OK the caller consumes *frame_len bytes when
 * done with msg.  On PGC_FRAME_BAD err says why (length below 4, over the
 * limit for its type).
 */
int pgc_frame_next(const pgc_buf *in, size_t max_long, pgc_msg *msg,
                   size_t *frame_len, char *err, size_t errlen);

/* How many more bytes must arrive before the next message is complete. */
size_t pgc_frame_need(const pgc_buf *in);

/* ---- frontend encoders: 0 on success, -1 when out of memory ---- */

int pgc_enc_ssl_request(pgc_buf *out);
/* kv holds n name/value pairs: kv[2i] is a name, kv[2i+1] its value. */
int pgc_enc_startup(pgc_buf *out, const char *const *kv, size_t n);
int pgc_enc_password(pgc_buf *out, const char *password);
int pgc_enc_sasl_initial(pgc_buf *out, const char *mechanism,
                         const char *data, size_t len);
int pgc_enc_sasl_response(pgc_buf *out, const char *data, size_t len);
/* sql must not contain NUL bytes; the caller checks. */
int pgc_enc_query(pgc_buf *out, const char *sql, size_t len);
int pgc_enc_copy_fail(pgc_buf *out, const char *reason);
int pgc_enc_terminate(pgc_buf *out);
/* CancelRequest for the backend with this process ID and secret key. */
int pgc_enc_cancel_request(pgc_buf *out, int32_t pid, int32_t key);

/* Extended query protocol.  Names and SQL must not contain NUL bytes. */
int pgc_enc_parse(pgc_buf *out, const char *name, const char *sql,
                  size_t sql_len, int nparams, const uint32_t *types);
/* what is 'S' (statement) or 'P' (portal). */
int pgc_enc_describe(pgc_buf *out, char what, const char *name);
int pgc_enc_execute(pgc_buf *out, const char *portal, int32_t max_rows);
int pgc_enc_close(pgc_buf *out, char what, const char *name);
int pgc_enc_sync(pgc_buf *out);

/*
 * For messages whose body the caller writes itself (Bind): appends the
 * type byte and a length placeholder, and returns the placeholder's
 * offset in out->data, or (size_t)-1 when out of memory.  The caller
 * appends the body, then calls pgc_msg_end with that offset.
 */
size_t pgc_msg_begin(pgc_buf *out, char type);
void pgc_msg_end(pgc_buf *out, size_t at);

/* ---- reading message bodies ---- */

/*
 * A cursor over a message body.  Any read past the end sets bad and
 * yields zero or NULL, so a caller may read several fields and check bad
 * once.
 */
typedef struct pgc_reader {
    const char *p;
    size_t left;
    int bad;
} pgc_reader;

void pgc_reader_init(pgc_reader *r, const char *body, size_t len);
uint8_t pgc_read_u8(pgc_reader *r);
int16_t pgc_read_i16(pgc_reader *r);
int32_t pgc_read_i32(pgc_reader *r);
/* A NUL-terminated string inside the body; *len (if not NULL) gets its
 * length without the NUL. */
const char *pgc_read_cstr(pgc_reader *r, size_t *len);
/* n raw bytes. */
const char *pgc_read_bytes(pgc_reader *r, size_t n);

#endif
