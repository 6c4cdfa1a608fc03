/*
 * auth.c - the MD5 password response and the client side of
 * SCRAM-SHA-256.  See auth.h.  Computes payloads only, with no I/O.
 * Calls the C library, buffer.h and the crypto primitives of tls.h;
 * it never calls GnuTLS directly.
 */
#include "auth.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define PGC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define PGC_PRINTF(f, a)
#endif

/* Where a pgc_scram stands in the exchange. */
enum {
    SCRAM_UNSET = 0,    /* zeroed: init not called, failed, or freed */
    SCRAM_READY,        /* init done, client-first-message not built */
    SCRAM_FIRST_SENT,   /* waiting for the server-first-message */
    SCRAM_FINAL_SENT,   /* waiting for the server-final-message */
    SCRAM_DONE,         /* server signature verified */
    SCRAM_FAILED        /* a step failed; the exchange is over */
};

/* Random bytes in a client nonce (24 characters once encoded). */
#define SCRAM_NONCE_BYTES 18

/* Longest part of a server error text quoted in err. */
#define SERVER_TEXT_MAX 200

/* ------------------------------------------------------------------ */
/* small helpers                                                       */
/* ------------------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    PGC_PRINTF(3, 4);

/* Formats a message into err, if the caller gave room for one. */
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Overwrites n bytes with zeros in a way the compiler may not drop. */
static void wipe(void *p, size_t n)
{
    volatile unsigned char *v = p;

    while (n-- > 0)
        *v++ = 0;
}

/* Compares n bytes in time that does not depend on where they differ. */
static int equal_const_time(const unsigned char *a, const unsigned char *b,
                            size_t n)
{
    unsigned char diff = 0;
    size_t i;

    for (i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

/* Writes 2n lowercase hex digits and a NUL to out. */
static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

/* Cuts b back to live bytes, undoing appends after a failure. */
static void buf_truncate(pgc_buf *b, size_t live)
{
    b->end = b->start + live;
}

/* A nonce character: printable ASCII except ','. */
static int is_nonce_char(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e && c != ',';
}

/* ------------------------------------------------------------------ */
/* base64 (RFC 4648, standard alphabet, padded)                        */
/* ------------------------------------------------------------------ */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/*
 * Stores in *out the encoded length of n bytes.  Returns 0, or -1 when
 * that length does not fit in a size_t.
 */
static int b64_encoded_len(size_t n, size_t *out)
{
    if (n > SIZE_MAX - 2 || (n + 2) / 3 > SIZE_MAX / 4)
        return -1;
    *out = (n + 2) / 3 * 4;
    return 0;
}

/* Encodes n bytes into out, which has room for the encoded length. */
static void b64_encode_raw(const unsigned char *in, size_t n, char *out)
{
    size_t i = 0;

    while (n - i >= 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) |
                     in[i + 2];

        *out++ = b64_alphabet[(v >> 18) & 0x3f];
        *out++ = b64_alphabet[(v >> 12) & 0x3f];
        *out++ = b64_alphabet[(v >> 6) & 0x3f];
        *out++ = b64_alphabet[v & 0x3f];
        i += 3;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;

        *out++ = b64_alphabet[(v >> 18) & 0x3f];
        *out++ = b64_alphabet[(v >> 12) & 0x3f];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);

        *out++ = b64_alphabet[(v >> 18) & 0x3f];
        *out++ = b64_alphabet[(v >> 12) & 0x3f];
        *out++ = b64_alphabet[(v >> 6) & 0x3f];
        *out++ = '=';
    }
}

/* Appends the encoding of n bytes to b.  Returns 0, or -1 (no memory). */
static int b64_append(pgc_buf *b, const unsigned char *in, size_t n)
{
    size_t len;
    char *w;

    if (b64_encoded_len(n, &len) < 0)
        return -1;
    if (len == 0)
        return 0;
    w = pgc_buf_reserve(b, len);
    if (w == NULL)
        return -1;
    b64_encode_raw(in, n, w);
    b->end += len;
    return 0;
}

/* Value of one base64 digit, or -1 if c is not one. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * Decodes len characters into out (cap bytes of room) and stores the
 * decoded size in *outlen.  Only the canonical padded form is accepted:
 * the length is a multiple of 4, '=' appears only as the last one or two
 * characters, and the unused bits of the last digit are zero.  Returns
 * 0 on success, -1 on bad input or when out is too small.
 */
static int b64_decode(const char *in, size_t len, unsigned char *out,
                      size_t cap, size_t *outlen)
{
    size_t i, n = 0;

    if (len % 4 != 0)
        return -1;

    for (i = 0; i < len; i += 4) {
        int last = (i + 4 == len);
        size_t pad = 0;
        int d[4];
        uint32_t v;
        size_t k;

        if (last && in[i + 3] == '=')
            pad = (in[i + 2] == '=') ? 2 : 1;
        for (k = 0; k < 4 - pad; k++) {
            d[k] = b64_value((unsigned char)in[i + k]);
            if (d[k] < 0)
                return -1;
        }
        for (; k < 4; k++)
            d[k] = 0;

        v = ((uint32_t)d[0] << 18) | ((uint32_t)d[1] << 12) |
            ((uint32_t)d[2] << 6) | (uint32_t)d[3];
        if ((pad == 1 && (v & 0xff) != 0) ||
            (pad == 2 && (v & 0xffff) != 0))
            return -1;
        if (3 - pad > cap - n)
            return -1;
        out[n++] = (unsigned char)(v >> 16);
        if (pad < 2)
            out[n++] = (unsigned char)(v >> 8);
        if (pad < 1)
            out[n++] = (unsigned char)v;
    }
    *outlen = n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* MD5                                                                 */
/* ------------------------------------------------------------------ */

/*
 * See auth.h.  The inner digest md5(password + user) is what the server
 * stores, so it is as good as the password: it is wiped after use, as
 * is the concatenation it is computed from.
 */
int pgc_auth_md5(const char *user, const char *password,
                 const unsigned char salt[4], char out[PGC_AUTH_MD5_LEN])
{
    unsigned char digest[PGC_MD5_LEN];
    char inner[2 * PGC_MD5_LEN + 4];
    unsigned char *concat;
    size_t ulen, plen;
    int rc;

    if (out == NULL)
        return -1;
    out[0] = '\0';
    if (user == NULL || password == NULL || salt == NULL)
        return -1;

    ulen = strlen(user);
    plen = strlen(password);
    if (plen > SIZE_MAX - 1 - ulen)
        return -1;
    concat = malloc(plen + ulen + 1);
    if (concat == NULL)
        return -1;
    memcpy(concat, password, plen);
    memcpy(concat + plen, user, ulen);
    rc = pgc_crypto_md5(concat, plen + ulen, digest);
    wipe(concat, plen + ulen + 1);
    free(concat);
    if (rc < 0)
        goto done;

    /* hex_encode writes a NUL at inner[32]; the salt overwrites it. */
    hex_encode(digest, PGC_MD5_LEN, inner);
    memcpy(inner + 2 * PGC_MD5_LEN, salt, 4);
    rc = pgc_crypto_md5(inner, sizeof inner, digest);
    if (rc < 0)
        goto done;

    memcpy(out, "md5", 3);
    hex_encode(digest, PGC_MD5_LEN, out + 3);

done:
    wipe(digest, sizeof digest);
    wipe(inner, sizeof inner);
    return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* SCRAM message parsing                                               */
/* ------------------------------------------------------------------ */

/* A cursor over the comma-separated attributes of a SCRAM message. */
typedef struct attr_reader {
    const char *p;
    const char *end;
    int count;          /* attributes read so far */
} attr_reader;

/*
 * Reads the next attribute if it is "name=value" (with name 0, any
 * letter is accepted as the name).  Every attribute after the first
 * must be preceded by ','.  On a match, sets *val and *vlen (the value
 * is not NUL-terminated), moves the cursor past the value and returns 1;
 * otherwise returns 0 and leaves the cursor where it was.
 */
static int read_attr(attr_reader *r, char name, const char **val,
                     size_t *vlen)
{
    const char *p = r->p;
    const char *comma;
    unsigned char c;

    if (r->count > 0) {
        if (p == r->end || *p != ',')
            return 0;
        p++;
    }
    if (r->end - p < 2 || p[1] != '=')
        return 0;
    c = (unsigned char)p[0];
    if (name != 0 && c != (unsigned char)name)
        return 0;
    if (name == 0 && !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
        return 0;

    p += 2;
    comma = memchr(p, ',', (size_t)(r->end - p));
    *val = p;
    *vlen = comma ? (size_t)(comma - p) : (size_t)(r->end - p);
    r->p = p + *vlen;
    r->count++;
    return 1;
}

/*
 * Skips extension attributes at the end of a message; they carry
 * nothing a client must act on.  Returns 0 if the rest of the message
 * is well-formed attributes, -1 otherwise.
 */
static int skip_extensions(attr_reader *r)
{
    const char *val;
    size_t vlen;

    while (r->p < r->end) {
        if (!read_attr(r, 0, &val, &vlen))
            return -1;
    }
    return 0;
}

/*
 * Checks the size of a server message and that it holds no NUL byte.
 * Returns 0 if it may be parsed, -1 with a message in err otherwise.
 */
static int check_server_message(const char *msg, size_t len,
                                const char *what, char *err, size_t errlen)
{
    if (msg == NULL || len == 0) {
        set_err(err, errlen, "SCRAM: empty %s", what);
        return -1;
    }
    if (len > PGC_SCRAM_MAX_MESSAGE) {
        set_err(err, errlen, "SCRAM: %s is longer than %d bytes",
                what, PGC_SCRAM_MAX_MESSAGE);
        return -1;
    }
    if (memchr(msg, '\0', len) != NULL) {
        set_err(err, errlen, "SCRAM: malformed %s: contains a NUL byte",
                what);
        return -1;
    }
    return 0;
}

/*
 * Copies server text into out (outlen > 0), cut at outlen - 1 bytes,
 * with anything that is not printable ASCII replaced by '?', so that
 * an error message never carries control characters.
 */
static void copy_server_text(const char *p, size_t n, char *out,
                             size_t outlen)
{
    size_t i;

    if (n > outlen - 1)
        n = outlen - 1;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];

        out[i] = (c >= 0x20 && c <= 0x7e) ? (char)c : '?';
    }
    out[n] = '\0';
}

/*
 * Parses the decimal iteration count (no sign, no leading zero).
 * Returns 0 and stores it in *out when it is between 1 and
 * PGC_SCRAM_MAX_ITERATIONS, -1 with a message in err otherwise.
 */
static int parse_iterations(const char *p, size_t n, unsigned *out,
                            char *err, size_t errlen)
{
    char shown[33];
    unsigned long v = 0;
    int too_big = 0;
    size_t i;

    copy_server_text(p, n, shown, sizeof shown);

    if (n == 0) {
        set_err(err, errlen, "SCRAM: malformed server-first-message: "
                "empty iteration count");
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9' || (i == 0 && p[i] == '0' && n > 1)) {
            set_err(err, errlen, "SCRAM: malformed server-first-message: "
                    "iteration count \"%s\" is not a number", shown);
            return -1;
        }
        if (v > PGC_SCRAM_MAX_ITERATIONS)
            too_big = 1;
        else
            v = v * 10 + (unsigned long)(p[i] - '0');
    }
    if (too_big || v > PGC_SCRAM_MAX_ITERATIONS) {
        set_err(err, errlen, "SCRAM: iteration count %s%s exceeds the "
                "limit of %u", shown, n > 32 ? "..." : "",
                PGC_SCRAM_MAX_ITERATIONS);
        return -1;
    }
    if (v == 0) {
        set_err(err, errlen, "SCRAM: iteration count 0 is invalid");
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

/* ------------------------------------------------------------------ */
/* SCRAM exchange                                                      */
/* ------------------------------------------------------------------ */

/*
 * Refuses a call made in the wrong state.  Returns 0 if s is in state
 * want, -1 with a message in err otherwise.
 */
static int check_state(const pgc_scram *s, int want, const char *step,
                       char *err, size_t errlen)
{
    if (s == NULL) {
        set_err(err, errlen, "SCRAM: no exchange state given");
        return -1;
    }
    if (s->state == want)
        return 0;
    if (s->state == SCRAM_UNSET)
        set_err(err, errlen, "SCRAM: %s: exchange not initialised", step);
    else if (s->state == SCRAM_FAILED)
        set_err(err, errlen, "SCRAM: %s: exchange has already failed",
                step);
    else
        set_err(err, errlen, "SCRAM: %s called out of order", step);
    return -1;
}

/* Appends the GS2 header ("n,,", "y,," or "p=...,,") for s to b. */
static int append_gs2_header(const pgc_scram *s, pgc_buf *b)
{
    switch (s->cbind_flag) {
    case 'p':
        return pgc_buf_append(b, "p=tls-server-end-point,,", 24);
    case 'y':
        return pgc_buf_append(b, "y,,", 3);
    default:
        return pgc_buf_append(b, "n,,", 3);
    }
}

/* Whether the n bytes at p are all ASCII. */
static int is_ascii(const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)p[i] >= 0x80)
            return 0;
    return 1;
}

/*
 * See auth.h.  An ASCII password is used as it is, as PostgreSQL does.  A
 * non-ASCII one is normalised first, as PostgreSQL normalises it with
 * SASLprep (RFC 4013) when it makes the verifier: non-ASCII spaces become
 * spaces and the text is composed (NFC, through the RFC 8265 rules that
 * GnuTLS implements).  SASLprep's NFKC also folds compatibility forms
 * (ligatures, full-width letters) and drops soft hyphens and the like;
 * a password that depends on that differs.  A password that cannot be
 * normalised (invalid UTF-8) is used raw, as PostgreSQL then does.
 */
int pgc_scram_init(pgc_scram *s, const char *password, char cbind_flag,
                   const unsigned char *cbind_data, size_t cbind_len,
                   char *err, size_t errlen)
{
    unsigned char raw[SCRAM_NONCE_BYTES];

    if (s == NULL) {
        set_err(err, errlen, "SCRAM: no exchange state given");
        return -1;
    }
    memset(s, 0, sizeof *s);
    pgc_buf_init(&s->client_first_bare);

    if (password == NULL || password[0] == '\0') {
        set_err(err, errlen, "SCRAM: no password given");
        return -1;
    }
    if (cbind_flag != 'n' && cbind_flag != 'y' && cbind_flag != 'p') {
        set_err(err, errlen, "SCRAM: invalid channel binding flag");
        return -1;
    }
    if (cbind_flag == 'p' && (cbind_data == NULL || cbind_len == 0)) {
        set_err(err, errlen, "SCRAM: channel binding needs the server "
                "certificate hash");
        return -1;
    }
    if (cbind_flag != 'p' && cbind_len != 0) {
        set_err(err, errlen, "SCRAM: channel binding data given with "
                "flag '%c'", cbind_flag);
        return -1;
    }
    s->cbind_flag = cbind_flag;

    s->password_len = strlen(password);
    s->password = NULL;
    if (!is_ascii(password, s->password_len))
        (void)pgc_crypto_normalize_password(password, s->password_len,
                                            &s->password, &s->password_len);
    if (s->password == NULL) {
        s->password_len = strlen(password);
        s->password = malloc(s->password_len + 1);
        if (s->password == NULL)
            goto no_memory;
        memcpy(s->password, password, s->password_len + 1);
    }

    if (cbind_flag == 'p') {
        s->cbind_data = malloc(cbind_len);
        if (s->cbind_data == NULL)
            goto no_memory;
        memcpy(s->cbind_data, cbind_data, cbind_len);
        s->cbind_len = cbind_len;
    }

    if (pgc_crypto_random(raw, sizeof raw) < 0) {
        set_err(err, errlen, "SCRAM: could not generate a client nonce");
        return -1;
    }
    b64_encode_raw(raw, sizeof raw, s->client_nonce);
    s->client_nonce[(SCRAM_NONCE_BYTES + 2) / 3 * 4] = '\0';

    s->state = SCRAM_READY;
    return 0;

no_memory:
    set_err(err, errlen, "SCRAM: out of memory");
    return -1;
}

/*
 * See auth.h.  The name is stored as an RFC 5802 saslname: '=' becomes
 * "=3D" and ',' becomes "=2C".  It is not SASLprep-normalised.
 */
int pgc_scram_set_user(pgc_scram *s, const char *user,
                       char *err, size_t errlen)
{
    size_t len, i, n = 0;
    char *name;

    if (check_state(s, SCRAM_READY, "set user", err, errlen) < 0)
        return -1;
    if (user == NULL)
        user = "";

    len = strlen(user);
    if (len > (SIZE_MAX - 1) / 3) {
        set_err(err, errlen, "SCRAM: user name too long");
        return -1;
    }
    name = malloc(len * 3 + 1);
    if (name == NULL) {
        set_err(err, errlen, "SCRAM: out of memory");
        return -1;
    }
    for (i = 0; i < len; i++) {
        if (user[i] == '=') {
            memcpy(name + n, "=3D", 3);
            n += 3;
        } else if (user[i] == ',') {
            memcpy(name + n, "=2C", 3);
            n += 3;
        } else {
            name[n++] = user[i];
        }
    }
    name[n] = '\0';

    free(s->user);
    s->user = name;
    return 0;
}

/* See auth.h.  For deterministic tests only. */
int pgc_scram_test_set_nonce(pgc_scram *s, const char *nonce)
{
    size_t len, i;

    if (s == NULL || s->state != SCRAM_READY || nonce == NULL)
        return -1;
    len = strlen(nonce);
    if (len == 0 || len > PGC_SCRAM_NONCE_MAX)
        return -1;
    for (i = 0; i < len; i++) {
        if (!is_nonce_char((unsigned char)nonce[i]))
            return -1;
    }
    memcpy(s->client_nonce, nonce, len + 1);
    return 0;
}

/*
 * See auth.h.  Also keeps client-first-message-bare in s for the
 * AuthMessage.  On failure nothing is left appended to out.
 */
int pgc_scram_client_first(pgc_scram *s, pgc_buf *out,
                           char *err, size_t errlen)
{
    pgc_buf *bare;
    size_t mark;
    const char *user;

    if (check_state(s, SCRAM_READY, "client-first-message", err,
                    errlen) < 0)
        return -1;
    bare = &s->client_first_bare;
    user = s->user ? s->user : "";
    mark = pgc_buf_len(out);

    pgc_buf_clear(bare);
    if (pgc_buf_append(bare, "n=", 2) < 0 ||
        pgc_buf_append(bare, user, strlen(user)) < 0 ||
        pgc_buf_append(bare, ",r=", 3) < 0 ||
        pgc_buf_append(bare, s->client_nonce, strlen(s->client_nonce)) < 0)
        goto no_memory;

    if (append_gs2_header(s, out) < 0 ||
        pgc_buf_append(out, pgc_buf_head(bare), pgc_buf_len(bare)) < 0)
        goto no_memory;

    s->state = SCRAM_FIRST_SENT;
    return 0;

no_memory:
    buf_truncate(out, mark);
    set_err(err, errlen, "SCRAM: out of memory");
    return -1;
}

/* The attributes of a server-first-message, pointing into it. */
typedef struct server_first {
    const char *nonce;
    size_t nonce_len;
    const char *salt;       /* base64 */
    size_t salt_len;
    unsigned iterations;
} server_first;

/*
 * Parses a server-first-message: "r=<nonce>,s=<salt>,i=<count>" in that
 * order, optionally followed by extensions.  Checks that the server
 * nonce extends the client nonce and holds only nonce characters, and
 * that the iteration count is sane.  The salt is left encoded.  Returns
 * 0 on success, -1 with a message in err otherwise.
 */
static int parse_server_first(const pgc_scram *s, const char *msg,
                              size_t len, server_first *sf,
                              char *err, size_t errlen)
{
    static const char what[] = "server-first-message";
    size_t cn = strlen(s->client_nonce);
    const char *ival;
    size_t ilen, i;
    attr_reader r;

    if (check_server_message(msg, len, what, err, errlen) < 0)
        return -1;
    r.p = msg;
    r.end = msg + len;
    r.count = 0;
    if (len >= 2 && msg[0] == 'm' && msg[1] == '=') {
        set_err(err, errlen, "SCRAM: server requires an unsupported "
                "mandatory extension");
        return -1;
    }

    if (!read_attr(&r, 'r', &sf->nonce, &sf->nonce_len)) {
        set_err(err, errlen, "SCRAM: malformed %s: missing nonce", what);
        return -1;
    }
    if (!read_attr(&r, 's', &sf->salt, &sf->salt_len)) {
        set_err(err, errlen, "SCRAM: malformed %s: missing salt", what);
        return -1;
    }
    if (!read_attr(&r, 'i', &ival, &ilen)) {
        set_err(err, errlen, "SCRAM: malformed %s: missing iteration "
                "count", what);
        return -1;
    }
    if (skip_extensions(&r) < 0) {
        set_err(err, errlen, "SCRAM: malformed %s: unexpected data after "
                "the iteration count", what);
        return -1;
    }

    if (sf->nonce_len <= cn || memcmp(sf->nonce, s->client_nonce, cn) != 0) {
        set_err(err, errlen, "SCRAM: server nonce does not extend the "
                "client nonce");
        return -1;
    }
    for (i = 0; i < sf->nonce_len; i++) {
        if (!is_nonce_char((unsigned char)sf->nonce[i])) {
            set_err(err, errlen, "SCRAM: malformed %s: invalid character "
                    "in the nonce", what);
            return -1;
        }
    }
    if (sf->salt_len == 0) {
        set_err(err, errlen, "SCRAM: malformed %s: empty salt", what);
        return -1;
    }
    return parse_iterations(ival, ilen, &sf->iterations, err, errlen);
}

/*
 * Decodes the base64 salt into a new heap block stored in *salt (the
 * caller frees it) with its size in *saltlen.  Returns 0 on success,
 * -1 with a message in err otherwise.
 */
static int decode_salt(const server_first *sf, unsigned char **salt,
                       size_t *saltlen, char *err, size_t errlen)
{
    size_t cap = sf->salt_len / 4 * 3;

    *salt = malloc(cap > 0 ? cap : 1);
    if (*salt == NULL) {
        set_err(err, errlen, "SCRAM: out of memory");
        return -1;
    }
    if (b64_decode(sf->salt, sf->salt_len, *salt, cap, saltlen) < 0 ||
        *saltlen == 0) {
        free(*salt);
        *salt = NULL;
        set_err(err, errlen, "SCRAM: malformed server-first-message: "
                "invalid base64 in the salt");
        return -1;
    }
    return 0;
}

/* The keys derived from SaltedPassword, wiped after each use. */
typedef struct scram_keys {
    unsigned char client_key[PGC_SHA256_LEN];
    unsigned char stored_key[PGC_SHA256_LEN];
    unsigned char server_key[PGC_SHA256_LEN];
} scram_keys;

/*
 * Derives SaltedPassword = Hi(password, salt, i) into s, then
 *   ClientKey = HMAC(SaltedPassword, "Client Key"),
 *   StoredKey = H(ClientKey),
 *   ServerKey = HMAC(SaltedPassword, "Server Key")
 * into keys.  The password is wiped and released once SaltedPassword is
 * known.  Returns 0 on success, -1 with a message in err otherwise.
 */
static int derive_keys(pgc_scram *s, const server_first *sf,
                       scram_keys *keys, char *err, size_t errlen)
{
    unsigned char *salt = NULL;
    size_t saltlen = 0;
    int rc;

    if (decode_salt(sf, &salt, &saltlen, err, errlen) < 0)
        return -1;
    rc = pgc_crypto_pbkdf2_sha256(s->password, s->password_len, salt,
                                  saltlen, sf->iterations,
                                  s->salted_password);
    free(salt);
    if (rc < 0 ||
        pgc_crypto_hmac_sha256(s->salted_password, PGC_SHA256_LEN,
                               "Client Key", 10, keys->client_key) < 0 ||
        pgc_crypto_sha256(keys->client_key, PGC_SHA256_LEN,
                          keys->stored_key) < 0 ||
        pgc_crypto_hmac_sha256(s->salted_password, PGC_SHA256_LEN,
                               "Server Key", 10, keys->server_key) < 0) {
        set_err(err, errlen, "SCRAM: key derivation failed");
        return -1;
    }

    wipe(s->password, s->password_len + 1);
    free(s->password);
    s->password = NULL;
    s->password_len = 0;
    return 0;
}

/*
 * Appends client-final-message-without-proof to final:
 * "c=" base64(GS2 header + channel binding data) ",r=" server nonce.
 * Returns 0, or -1 when memory is exhausted.
 */
static int build_final_without_proof(const pgc_scram *s,
                                     const server_first *sf, pgc_buf *final)
{
    pgc_buf cbind;
    int rc = -1;

    pgc_buf_init(&cbind);
    if (append_gs2_header(s, &cbind) == 0 &&
        pgc_buf_append(&cbind, s->cbind_data, s->cbind_len) == 0 &&
        pgc_buf_append(final, "c=", 2) == 0 &&
        b64_append(final, (const unsigned char *)pgc_buf_head(&cbind),
                   pgc_buf_len(&cbind)) == 0 &&
        pgc_buf_append(final, ",r=", 3) == 0 &&
        pgc_buf_append(final, sf->nonce, sf->nonce_len) == 0)
        rc = 0;
    pgc_buf_free(&cbind);
    return rc;
}

/*
 * Appends AuthMessage = client-first-message-bare "," server-first-message
 * "," client-final-message-without-proof to auth.  Returns 0, or -1 when
 * memory is exhausted.
 */
static int build_auth_message(const pgc_scram *s, const char *msg,
                              size_t len, const pgc_buf *final,
                              pgc_buf *auth)
{
    const pgc_buf *bare = &s->client_first_bare;

    if (pgc_buf_append(auth, pgc_buf_head(bare), pgc_buf_len(bare)) < 0 ||
        pgc_buf_append(auth, ",", 1) < 0 ||
        pgc_buf_append(auth, msg, len) < 0 ||
        pgc_buf_append(auth, ",", 1) < 0 ||
        pgc_buf_append(auth, pgc_buf_head(final), pgc_buf_len(final)) < 0)
        return -1;
    return 0;
}

/*
 * See auth.h.  With the keys of derive_keys:
 *   ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage)
 *   ServerSignature = HMAC(ServerKey, AuthMessage), kept in s.
 * On failure nothing is left appended to out and the exchange is over.
 */
int pgc_scram_client_final(pgc_scram *s, const char *msg, size_t len,
                           pgc_buf *out, char *err, size_t errlen)
{
    unsigned char proof[PGC_SHA256_LEN];
    pgc_buf final, auth;
    scram_keys keys;
    server_first sf;
    size_t mark, i;
    int rc = -1;

    if (check_state(s, SCRAM_FIRST_SENT, "client-final-message", err,
                    errlen) < 0)
        return -1;
    pgc_buf_init(&final);
    pgc_buf_init(&auth);
    mark = pgc_buf_len(out);

    if (parse_server_first(s, msg, len, &sf, err, errlen) < 0 ||
        derive_keys(s, &sf, &keys, err, errlen) < 0)
        goto done;

    if (build_final_without_proof(s, &sf, &final) < 0 ||
        build_auth_message(s, msg, len, &final, &auth) < 0)
        goto no_memory;

    if (pgc_crypto_hmac_sha256(keys.stored_key, PGC_SHA256_LEN,
                               pgc_buf_head(&auth), pgc_buf_len(&auth),
                               proof) < 0 ||
        pgc_crypto_hmac_sha256(keys.server_key, PGC_SHA256_LEN,
                               pgc_buf_head(&auth), pgc_buf_len(&auth),
                               s->server_signature) < 0) {
        set_err(err, errlen, "SCRAM: signature computation failed");
        goto done;
    }
    for (i = 0; i < PGC_SHA256_LEN; i++)
        proof[i] ^= keys.client_key[i];

    if (pgc_buf_append(out, pgc_buf_head(&final), pgc_buf_len(&final)) < 0 ||
        pgc_buf_append(out, ",p=", 3) < 0 ||
        b64_append(out, proof, PGC_SHA256_LEN) < 0)
        goto no_memory;

    s->state = SCRAM_FINAL_SENT;
    rc = 0;
    goto done;

no_memory:
    set_err(err, errlen, "SCRAM: out of memory");
done:
    if (rc < 0) {
        buf_truncate(out, mark);
        s->state = SCRAM_FAILED;
    }
    wipe(&keys, sizeof keys);
    wipe(proof, sizeof proof);
    pgc_buf_free(&final);
    pgc_buf_free(&auth);
    return rc;
}

/*
 * Checks the "v=" attribute of a server-final-message against the
 * ServerSignature kept in s.  Returns 0 if they match, -1 with a
 * message in err otherwise.
 */
static int check_verifier(const pgc_scram *s, const char *val, size_t vlen,
                          char *err, size_t errlen)
{
    unsigned char sig[PGC_SHA256_LEN];
    size_t siglen = 0;

    if (b64_decode(val, vlen, sig, sizeof sig, &siglen) < 0) {
        set_err(err, errlen, "SCRAM: malformed server-final-message: "
                "invalid base64 in the server signature");
        return -1;
    }
    if (siglen != PGC_SHA256_LEN) {
        set_err(err, errlen, "SCRAM: malformed server-final-message: "
                "server signature is %zu bytes, not %d", siglen,
                PGC_SHA256_LEN);
        return -1;
    }
    if (!equal_const_time(sig, s->server_signature, PGC_SHA256_LEN)) {
        set_err(err, errlen, "SCRAM: server signature mismatch");
        return -1;
    }
    return 0;
}

/* See auth.h.  Whatever the outcome, the exchange is over. */
int pgc_scram_verify_final(pgc_scram *s, const char *msg, size_t len,
                           char *err, size_t errlen)
{
    static const char what[] = "server-final-message";
    const char *val;
    size_t vlen;
    attr_reader r;

    if (check_state(s, SCRAM_FINAL_SENT, what, err, errlen) < 0)
        return -1;
    s->state = SCRAM_FAILED;
    if (check_server_message(msg, len, what, err, errlen) < 0)
        return -1;
    r.p = msg;
    r.end = msg + len;
    r.count = 0;

    if (read_attr(&r, 'e', &val, &vlen)) {
        char text[SERVER_TEXT_MAX + 1];

        copy_server_text(val, vlen, text, sizeof text);
        set_err(err, errlen, "SCRAM: server reported an error: %s", text);
        return -1;
    }
    if (!read_attr(&r, 'v', &val, &vlen)) {
        set_err(err, errlen, "SCRAM: malformed %s: missing server "
                "signature", what);
        return -1;
    }
    if (skip_extensions(&r) < 0) {
        set_err(err, errlen, "SCRAM: malformed %s: unexpected data after "
                "the server signature", what);
        return -1;
    }
    if (check_verifier(s, val, vlen, err, errlen) < 0)
        return -1;

    s->state = SCRAM_DONE;
    return 0;
}

/* See auth.h.  Leaves s zeroed, so a second call does nothing. */
void pgc_scram_free(pgc_scram *s)
{
    if (s == NULL)
        return;
    if (s->password != NULL) {
        wipe(s->password, s->password_len + 1);
        free(s->password);
    }
    free(s->cbind_data);
    free(s->user);
    pgc_buf_free(&s->client_first_bare);
    wipe(s, sizeof *s);
}
