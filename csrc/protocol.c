/*
 * protocol.c - encoders, framer and body reader for protocol 3.0.
 * See protocol.h.  Uses buffer.h and the C library only.
 */
#include "protocol.h"

#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* framing                                                             */
/* ------------------------------------------------------------------ */

/* Types whose bodies may exceed PGC_MAX_SHORT_MESSAGE. */
static int is_long_type(char type)
{
    switch (type) {
    case 'D':   /* DataRow */
    case 'T':   /* RowDescription */
    case 'E':   /* ErrorResponse */
    case 'N':   /* NoticeResponse */
    case 'A':   /* NotificationResponse */
    case 'd':   /* CopyData */
    case 't':   /* ParameterDescription */
    case 'V':   /* FunctionCallResponse */
        return 1;
    default:
        return 0;
    }
}

int pgc_frame_next(const pgc_buf *in, size_t max_long, pgc_msg *msg,
                   size_t *frame_len, char *err, size_t errlen)
{
    const char *head = pgc_buf_head(in);
    size_t avail = pgc_buf_len(in);
    uint32_t len;
    size_t limit;

    if (avail < 5)
        return PGC_FRAME_MORE;

    len = pgc_get_u32(head + 1);
    if (len < 4) {
        snprintf(err, errlen, "invalid length %u in message of type "
                 "0x%02x", (unsigned)len, (unsigned char)head[0]);
        return PGC_FRAME_BAD;
    }
    limit = is_long_type(head[0]) ? max_long : PGC_MAX_SHORT_MESSAGE;
    if ((size_t)len - 4 > limit) {
        snprintf(err, errlen, "message of type 0x%02x is %u bytes long, "
                 "over the limit of %zu", (unsigned char)head[0],
                 (unsigned)len, limit);
        return PGC_FRAME_BAD;
    }
    if (avail - 1 < len)
        return PGC_FRAME_MORE;

    msg->type = head[0];
    msg->body = head + 5;
    msg->len = len - 4;
    *frame_len = (size_t)len + 1;
    return PGC_FRAME_OK;
}

size_t pgc_frame_need(const pgc_buf *in)
{
    size_t avail = pgc_buf_len(in);
    uint32_t len;

    if (avail < 5)
        return 5 - avail;
    len = pgc_get_u32(pgc_buf_head(in) + 1);
    if (len < 4 || avail - 1 >= len)
        return 1;
    return (size_t)len + 1 - avail;
}

/* ------------------------------------------------------------------ */
/* encoders                                                            */
/* ------------------------------------------------------------------ */

/*
 * Starts a message: appends the type byte (when type is not 0) and a
 * placeholder length.  Returns the offset of the length field in
 * out->data, or (size_t)-1 when out of memory.  pgc_msg_end() fills in
 * the length once the body is written.
 */
size_t pgc_msg_begin(pgc_buf *out, char type)
{
    size_t at;

    if (type != 0 && pgc_buf_append_u8(out, (uint8_t)type) < 0)
        return (size_t)-1;
    if (pgc_buf_reserve(out, 4) == NULL)
        return (size_t)-1;
    at = out->end;
    out->end += 4;
    return at;
}

void pgc_msg_end(pgc_buf *out, size_t at)
{
    pgc_buf_put_i32_at(out, at, (int32_t)(out->end - at));
}

int pgc_enc_ssl_request(pgc_buf *out)
{
    size_t at = pgc_msg_begin(out, 0);

    if (at == (size_t)-1 || pgc_buf_append_i32(out, PGC_SSL_REQUEST_CODE))
        return -1;
    pgc_msg_end(out, at);
    return 0;
}

int pgc_enc_cancel_request(pgc_buf *out, int32_t pid, int32_t key)
{
    size_t at = pgc_msg_begin(out, 0);

    if (at == (size_t)-1 ||
        pgc_buf_append_i32(out, PGC_CANCEL_REQUEST_CODE) < 0 ||
        pgc_buf_append_i32(out, pid) < 0 || pgc_buf_append_i32(out, key) < 0)
        return -1;
    pgc_msg_end(out, at);
    return 0;
}

int pgc_enc_startup(pgc_buf *out, const char *const *kv, size_t n)
{
    size_t at = pgc_msg_begin(out, 0);
    size_t i;

    if (at == (size_t)-1 || pgc_buf_append_i32(out, PGC_PROTOCOL_VERSION))
        return -1;
    for (i = 0; i < 2 * n; i++)
        if (pgc_buf_append_cstr(out, kv[i]) < 0)
            return -1;
    if (pgc_buf_append_u8(out, 0) < 0)
        return -1;
    pgc_msg_end(out, at);
    return 0;
}

int pgc_enc_password(pgc_buf *out, const char *password)
{
    size_t at = pgc_msg_begin(out, 'p');

    if (at == (size_t)-1 || pgc_buf_append_cstr(out, password) < 0)
        return -1;
    pgc_msg_end(out, at);
    return 0;
}

int pgc_enc_sasl_initial(pgc_buf *out, const char *mechanism,
                         const char *data, size_t len)
{
    size_t at = pgc_msg_begin(out, 'p');

    if (at == (size_t)-1 || pgc_buf_append_cstr(out, mechanism) < 0 ||
        pgc_buf_append_i32(out, (int32_t)len) < 0 ||
        pgc_buf_append(out, data, len) < 0)
        return -1;
    pgc_msg_end(out, at);
    return 0;
}

int pgc_enc_sasl_response(pgc_buf *out, const char *data, size_t len)
{
    size_t at = pgc_msg_begin(out, 'p');

    if (at == (size_t)-1 || pgc_buf_append(out, data, len) < 0)
        return -1;
    pgc_msg_end(out, at);
    return 0;
}

int pgc_enc_query(pgc_buf *out, const char *sql, size_t len)
{
    size_t at = pgc_msg_begin(out, 'Q');

    if (at == (size_t)-1 || pgc_buf_append(out, sql, len) < 0 ||
        pgc_buf_append_u8(out, 0) < 0)
        return -1;
    pgc_msg_end(out, at);
    return 0;
}

int pgc_enc_copy_fail(pgc_buf *out, const char *reason)
{
    size_t at = pgc_msg_begin(out, 'f');

    if (at == (size_t)-1 || pgc_buf_append_cstr(out, reason) < 0)
        return -1;
    pgc_msg_end(out, at);
    return 0;
}

int pgc_enc_terminate(pgc_buf *out)
{
    size_t at = pgc_msg_begin(out, 'X');

    if (at == (size_t)-1)
        return -1;
    pgc_msg_end(out, at);
    return 0;
}

int pgc_enc_parse(pgc_buf *out, const char *name, const char *sql,
                  size_t sql_len, int nparams, const uint32_t *types)
{
    size_t at = pgc_msg_begin(out, 'P');
    int i;

    if (at == (size_t)-1 || pgc_buf_append_cstr(out, name) < 0 ||
        pgc_buf_append(out, sql, sql_len) < 0 ||
        pgc_buf_append_u8(out, 0) < 0 ||
        pgc_buf_append_i16(out, (int16_t)nparams) < 0)
        return -1;
    for (i = 0; i < nparams; i++)
        if (pgc_buf_append_i32(out, (int32_t)(types ? types[i] : 0)) < 0)
            return -1;
    pgc_msg_end(out, at);
    return 0;
}

int pgc_enc_describe(pgc_buf *out, char what, const char *name)
{
    size_t at = pgc_msg_begin(out, 'D');

    if (at == (size_t)-1 || pgc_buf_append_u8(out, (uint8_t)what) < 0 ||
        pgc_buf_append_cstr(out, name) < 0)
        return -1;
    pgc_msg_end(out, at);
    return 0;
}

int pgc_enc_execute(pgc_buf *out, const char *portal, int32_t max_rows)
{
    size_t at = pgc_msg_begin(out, 'E');

    if (at == (size_t)-1 || pgc_buf_append_cstr(out, portal) < 0 ||
        pgc_buf_append_i32(out, max_rows) < 0)
        return -1;
    pgc_msg_end(out, at);
    return 0;
}

int pgc_enc_close(pgc_buf *out, char what, const char *name)
{
    size_t at = pgc_msg_begin(out, 'C');

    if (at == (size_t)-1 || pgc_buf_append_u8(out, (uint8_t)what) < 0 ||
        pgc_buf_append_cstr(out, name) < 0)
        return -1;
    pgc_msg_end(out, at);
    return 0;
}

int pgc_enc_sync(pgc_buf *out)
{
    size_t at = pgc_msg_begin(out, 'S');

    if (at == (size_t)-1)
        return -1;
    pgc_msg_end(out, at);
    return 0;
}

/* ------------------------------------------------------------------ */
/* body reader                                                         */
/* ------------------------------------------------------------------ */

void pgc_reader_init(pgc_reader *r, const char *body, size_t len)
{
    r->p = body;
    r->left = len;
    r->bad = 0;
}

const char *pgc_read_bytes(pgc_reader *r, size_t n)
{
    const char *p;

    if (r->bad || r->left < n) {
        r->bad = 1;
        return NULL;
    }
    p = r->p;
    r->p += n;
    r->left -= n;
    return p;
}

uint8_t pgc_read_u8(pgc_reader *r)
{
    const char *p = pgc_read_bytes(r, 1);

    return p ? (uint8_t)p[0] : 0;
}

int16_t pgc_read_i16(pgc_reader *r)
{
    const char *p = pgc_read_bytes(r, 2);

    return p ? (int16_t)pgc_get_u16(p) : 0;
}

int32_t pgc_read_i32(pgc_reader *r)
{
    const char *p = pgc_read_bytes(r, 4);

    return p ? (int32_t)pgc_get_u32(p) : 0;
}

const char *pgc_read_cstr(pgc_reader *r, size_t *len)
{
    const char *p, *nul;

    if (r->bad)
        return NULL;
    nul = memchr(r->p, 0, r->left);
    if (nul == NULL) {
        r->bad = 1;
        return NULL;
    }
    p = r->p;
    if (len)
        *len = (size_t)(nul - p);
    r->left -= (size_t)(nul - p) + 1;
    r->p = nul + 1;
    return p;
}
