/*
 * tls.c - every GnuTLS call of the project: credentials, sessions over
 * byte buffers, peer verification, and crypto primitives.  See tls.h.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

/* ------------------------------------------------------------------ */
/* crypto primitives                                                   */
/* ------------------------------------------------------------------ */

int pgc_crypto_sha256(const void *data, size_t len,
                      unsigned char out[PGC_SHA256_LEN])
{
    return gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, out) < 0 ? -1 : 0;
}

int pgc_crypto_md5(const void *data, size_t len,
                   unsigned char out[PGC_MD5_LEN])
{
    return gnutls_hash_fast(GNUTLS_DIG_MD5, data, len, out) < 0 ? -1 : 0;
}

int pgc_crypto_hmac_sha256(const void *key, size_t keylen,
                           const void *data, size_t len,
                           unsigned char out[PGC_SHA256_LEN])
{
    int rc = gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, keylen, data, len, out);

    return rc < 0 ? -1 : 0;
}

int pgc_crypto_pbkdf2_sha256(const void *password, size_t passlen,
                             const void *salt, size_t saltlen,
                             unsigned iterations,
                             unsigned char out[PGC_SHA256_LEN])
{
    gnutls_datum_t key = { (unsigned char *)password, (unsigned)passlen };
    gnutls_datum_t s = { (unsigned char *)salt, (unsigned)saltlen };

    if (gnutls_pbkdf2(GNUTLS_MAC_SHA256, &key, &s, iterations, out,
                      PGC_SHA256_LEN) < 0)
        return -1;
    return 0;
}

int pgc_crypto_normalize_password(const char *in, size_t len, char **out,
                                  size_t *outlen)
{
    gnutls_datum_t norm = { NULL, 0 };
    char *copy;

    if (len > 0xFFFFFFFFu ||
        gnutls_utf8_password_normalize((const unsigned char *)in,
                                       (unsigned)len, &norm, 0) < 0)
        return -1;
    copy = malloc((size_t)norm.size + 1);
    if (copy != NULL) {
        memcpy(copy, norm.data, norm.size);
        copy[norm.size] = 0;
        *outlen = norm.size;
    }
    memset(norm.data, 0, norm.size);
    gnutls_free(norm.data);
    *out = copy;
    return copy != NULL ? 0 : -1;
}

int pgc_crypto_random(void *out, size_t len)
{
    return gnutls_rnd(GNUTLS_RND_NONCE, out, len) < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* contexts                                                            */
/* ------------------------------------------------------------------ */

/* Largest file a loader reads: far more than any CA bundle. */
#define MAX_FILE_SIZE (16 * 1024 * 1024)

struct pgc_tls_ctx {
    gnutls_certificate_credentials_t cred;
    int refs;
    int trust_count;
    int explicit_trust;
    int has_key;
};

pgc_tls_ctx *pgc_tls_ctx_new(char *err, size_t errlen)
{
    pgc_tls_ctx *ctx = calloc(1, sizeof *ctx);

    if (ctx == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (gnutls_certificate_allocate_credentials(&ctx->cred) < 0) {
        free(ctx);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ctx->refs = 1;
    return ctx;
}

void pgc_tls_ctx_ref(pgc_tls_ctx *ctx)
{
    ctx->refs++;
}

void pgc_tls_ctx_unref(pgc_tls_ctx *ctx)
{
    if (ctx == NULL || --ctx->refs > 0)
        return;
    gnutls_certificate_free_credentials(ctx->cred);
    free(ctx);
}

int pgc_tls_ctx_has_trust(const pgc_tls_ctx *ctx)
{
    return ctx->trust_count > 0;
}

int pgc_tls_ctx_has_explicit_trust(const pgc_tls_ctx *ctx)
{
    return ctx->explicit_trust;
}

int pgc_tls_ctx_has_key(const pgc_tls_ctx *ctx)
{
    return ctx->has_key;
}

int pgc_tls_ctx_trust_system(pgc_tls_ctx *ctx, int named,
                             char *err, size_t errlen)
{
    int n = gnutls_certificate_set_x509_system_trust(ctx->cred);

    if (n <= 0) {
        snprintf(err, errlen, "the system trust store could not be "
                 "loaded: %s", n < 0 ? gnutls_strerror(n)
                 : "it holds no certificates");
        return -1;
    }
    ctx->trust_count += n;
    if (named)
        ctx->explicit_trust = 1;
    return 0;
}

/* Overwrites and frees what read_file returned; NULL data is ok. */
static void free_data(gnutls_datum_t *data, int secret)
{
    if (data->data != NULL && secret)
        memset(data->data, 0, data->size);
    free(data->data);
    data->data = NULL;
    data->size = 0;
}

/*
 * Refuses a private key file that group or others may access, by
 * libpq's rule: mode 0600 or less, or 0640 or less when root owns the
 * file.  Returns 0, or -1 with a message that says how to fix it.
 */
static int check_key_mode(const char *path, const struct stat *st,
                          char *err, size_t errlen)
{
    mode_t bad = st->st_uid == 0 ? (S_IWGRP | S_IXGRP | S_IRWXO)
                                 : (S_IRWXG | S_IRWXO);

    if ((st->st_mode & bad) == 0)
        return 0;
    snprintf(err, errlen, "private key file '%s' has group or world "
             "access (mode %04o); it must have permissions u=rw (0600) "
             "or less, or u=rw,g=r (0640) or less if owned by root; fix "
             "it with: chmod 0600 '%s'", path,
             (unsigned)(st->st_mode & 07777), path);
    return -1;
}

/*
 * Reads a whole regular file for a loader into data (free it with
 * free_data).  what names the file in messages ("CA certificate file");
 * with key_rules the file must also pass check_key_mode.  Returns 0, or
 * -1 with a message naming the file and the reason.
 */
static int read_file(const char *what, const char *path, int key_rules,
                     gnutls_datum_t *data, char *err, size_t errlen)
{
    struct stat st;
    size_t used = 0;
    int fd;

    data->data = NULL;
    data->size = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s '%s' cannot be read: %s", what, path,
                 strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "%s '%s' cannot be read: %s", what, path,
                 strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s '%s' cannot be read: it is a directory",
                 what, path);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s '%s' is not a regular file", what, path);
        goto fail;
    }
    if (key_rules && check_key_mode(path, &st, err, errlen) < 0)
        goto fail;
    if (st.st_size > MAX_FILE_SIZE) {
        snprintf(err, errlen, "%s '%s' is too large", what, path);
        goto fail;
    }

    data->data = malloc((size_t)st.st_size + 1);
    if (data->data == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    while (used < (size_t)st.st_size) {
        ssize_t n = read(fd, data->data + used, (size_t)st.st_size - used);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "%s '%s' cannot be read: %s", what, path,
                     n < 0 ? strerror(errno) : "it shrank while read");
            goto fail;
        }
        used += (size_t)n;
    }
    data->data[used] = 0;
    data->size = (unsigned)used;
    close(fd);
    return 0;

fail:
    free_data(data, key_rules);
    close(fd);
    return -1;
}

/*
 * Gets the bytes of a source: reads the file, or copies the PEM text.
 * Returns 0 with data set (free it with free_data), or -1 with err.
 */
static int source_data(const char *what, const pgc_tls_source *src,
                       int key_rules, gnutls_datum_t *data,
                       char *err, size_t errlen)
{
    if (src->path != NULL)
        return read_file(what, src->path, key_rules, data, err, errlen);
    data->data = malloc(src->len + 1);
    if (data->data == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(data->data, src->pem, src->len);
    data->data[src->len] = 0;
    data->size = (unsigned)src->len;
    return 0;
}

/* Writes "<what> '<path>'" or "in-memory <what>" into out. */
static void source_name(const char *what, const pgc_tls_source *src,
                        char *out, size_t outlen)
{
    if (src->path != NULL)
        snprintf(out, outlen, "%s file '%s'", what, src->path);
    else
        snprintf(out, outlen, "in-memory %s", what);
}

int pgc_tls_ctx_trust(pgc_tls_ctx *ctx, const pgc_tls_source *ca,
                      char *err, size_t errlen)
{
    gnutls_datum_t data;
    char name[300];
    int n;

    if (source_data("CA certificate file", ca, 0, &data, err, errlen) < 0)
        return -1;
    n = gnutls_certificate_set_x509_trust_mem(ctx->cred, &data,
                                              GNUTLS_X509_FMT_PEM);
    free_data(&data, 0);
    if (n <= 0) {
        source_name("CA certificate", ca, name, sizeof name);
        snprintf(err, errlen, "%s holds no usable PEM certificate%s%s",
                 name, n < 0 ? ": " : "", n < 0 ? gnutls_strerror(n) : "");
        return -1;
    }
    ctx->trust_count += n;
    ctx->explicit_trust = 1;
    return 0;
}

int pgc_tls_ctx_crl_file(pgc_tls_ctx *ctx, const char *path,
                         char *err, size_t errlen)
{
    gnutls_datum_t data;
    int n;

    if (read_file("CRL file", path, 0, &data, err, errlen) < 0)
        return -1;
    n = gnutls_certificate_set_x509_crl_mem(ctx->cred, &data,
                                            GNUTLS_X509_FMT_PEM);
    if (n <= 0)
        n = gnutls_certificate_set_x509_crl_mem(ctx->cred, &data,
                                                GNUTLS_X509_FMT_DER);
    free_data(&data, 0);
    if (n <= 0) {
        snprintf(err, errlen, "CRL file '%s' holds no usable certificate "
                 "revocation list%s%s", path, n < 0 ? ": " : "",
                 n < 0 ? gnutls_strerror(n) : "");
        return -1;
    }
    return 0;
}

/*
 * Checks that data holds at least one PEM certificate, so that a bad
 * certificate file is reported as such rather than as a key problem.
 */
static int check_cert_pem(const char *name, const gnutls_datum_t *data,
                          char *err, size_t errlen)
{
    gnutls_x509_crt_t *list = NULL;
    unsigned n = 0, i;
    int rc = gnutls_x509_crt_list_import2(&list, &n, data,
                                          GNUTLS_X509_FMT_PEM, 0);

    if (rc < 0 || n == 0) {
        snprintf(err, errlen, "%s holds no usable PEM certificate: %s",
                 name, rc < 0 ? gnutls_strerror(rc) : "none found");
        return -1;
    }
    for (i = 0; i < n; i++)
        gnutls_x509_crt_deinit(list[i]);
    gnutls_free(list);
    return 0;
}

/* The same for the private key, which may be encrypted (PKCS#8, or the
 * traditional PEM encryption). */
static int check_key_pem(const char *name, const gnutls_datum_t *data,
                         const char *password, char *err, size_t errlen)
{
    gnutls_x509_privkey_t key;
    int rc;

    if (gnutls_x509_privkey_init(&key) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rc = gnutls_x509_privkey_import2(key, data, GNUTLS_X509_FMT_PEM,
                                     password, 0);
    gnutls_x509_privkey_deinit(key);
    if (rc == GNUTLS_E_DECRYPTION_FAILED && password == NULL) {
        snprintf(err, errlen, "%s is encrypted and no key_password was "
                 "given", name);
        return -1;
    }
    if (rc == GNUTLS_E_DECRYPTION_FAILED) {
        snprintf(err, errlen, "%s could not be decrypted: wrong "
                 "key_password?", name);
        return -1;
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s holds no usable PEM private key: %s",
                 name, gnutls_strerror(rc));
        return -1;
    }
    return 0;
}

int pgc_tls_ctx_key_pair(pgc_tls_ctx *ctx, const pgc_tls_source *cert,
                         const pgc_tls_source *key, const char *password,
                         char *err, size_t errlen)
{
    gnutls_datum_t cdata = { NULL, 0 }, kdata = { NULL, 0 };
    char cname[300], kname[300];
    int rc = -1, grc;

    source_name("certificate", cert, cname, sizeof cname);
    source_name("private key", key, kname, sizeof kname);
    if (source_data("certificate file", cert, 0, &cdata, err, errlen) < 0 ||
        source_data("private key file", key, 1, &kdata, err, errlen) < 0)
        goto done;
    if (check_cert_pem(cname, &cdata, err, errlen) < 0 ||
        check_key_pem(kname, &kdata, password, err, errlen) < 0)
        goto done;

    grc = gnutls_certificate_set_x509_key_mem2(ctx->cred, &cdata, &kdata,
                                               GNUTLS_X509_FMT_PEM,
                                               password, 0);
    if (grc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
        snprintf(err, errlen, "%s does not match %s", kname, cname);
        goto done;
    }
    if (grc < 0) {
        snprintf(err, errlen, "%s with %s cannot be used: %s", cname,
                 kname, gnutls_strerror(grc));
        goto done;
    }
    ctx->has_key = 1;
    rc = 0;

done:
    free_data(&kdata, 1);
    free_data(&cdata, 0);
    return rc;
}

/* ------------------------------------------------------------------ */
/* priority strings                                                    */
/* ------------------------------------------------------------------ */

/* The priority-string name of a protocol version, or NULL. */
static const char *version_keyword(int v)
{
    switch (v) {
    case PGC_TLS_V1_3:
        return "+VERS-TLS1.3";
    case PGC_TLS_V1_2:
        return "+VERS-TLS1.2";
    case PGC_TLS_V1_1:
        return "+VERS-TLS1.1";
    case PGC_TLS_V1_0:
        return "+VERS-TLS1.0";
    default:
        return NULL;
    }
}

int pgc_tls_priority(const char *base, int min, int max, char *out,
                     size_t outlen, char *err, size_t errlen)
{
    gnutls_priority_t prio;
    const char *errpos = NULL;
    size_t used;
    int v, rc;

    if (version_keyword(min) == NULL || version_keyword(max) == NULL ||
        min > max) {
        snprintf(err, errlen, "invalid TLS version range");
        return -1;
    }
    if (base == NULL)
        base = "NORMAL";
    rc = gnutls_priority_init(&prio, base, &errpos);
    if (rc < 0) {
        size_t at = errpos != NULL && errpos >= base
                    ? (size_t)(errpos - base) : 0;

        snprintf(err, errlen, "ssl_priority '%.200s' is not a valid "
                 "GnuTLS priority string: GnuTLS stopped at position %zu "
                 "('%.40s')", base, at + 1, base + at);
        return -1;
    }
    gnutls_priority_deinit(prio);

    used = (size_t)snprintf(out, outlen, "%s:-VERS-ALL", base);
    for (v = max; v >= min && used < outlen; v--)
        used += (size_t)snprintf(out + used, outlen - used, ":%s",
                                 version_keyword(v));
    if (used >= outlen) {
        snprintf(err, errlen, "ssl_priority is too long");
        return -1;
    }
    rc = gnutls_priority_init(&prio, out, &errpos);
    if (rc < 0) {
        snprintf(err, errlen, "the TLS priority string '%s' is not "
                 "valid: %s", out, gnutls_strerror(rc));
        return -1;
    }
    gnutls_priority_deinit(prio);
    return 0;
}

/* ------------------------------------------------------------------ */
/* sessions                                                            */
/* ------------------------------------------------------------------ */

#define TLS_HEADER_LEN 5
/* Largest ciphertext a TLS 1.2 record may carry (RFC 5246, 6.2.3). */
#define TLS_MAX_RECORD (16384 + 2048)

struct pgc_tls {
    gnutls_session_t session;
    pgc_tls_ctx *ctx;
    pgc_buf *raw_in;
    pgc_buf *raw_out;
    /* Bytes of the record being handed to GnuTLS that it has not taken
     * yet; that whole record is in raw_in. */
    size_t rec_left;
    char alpn[32];
};

/*
 * The length of the record starting at p (header included), when the
 * header looks like TLS; 0 when it does not, in which case the bytes are
 * handed over as they are and GnuTLS rejects them.
 */
static size_t record_length(const char *p)
{
    unsigned char type = (unsigned char)p[0];
    size_t len = pgc_get_u16(p + 3);

    if (type < 20 || type > 24 || len > TLS_MAX_RECORD)
        return 0;
    return TLS_HEADER_LEN + len;
}

/*
 * GnuTLS pull callback.  Hands out bytes of whole records only, so that
 * GnuTLS never holds half a record and the bytes still needed can always
 * be computed from raw_in (pgc_tls_read_hint).
 */
static ssize_t pull_cb(gnutls_transport_ptr_t ptr, void *data, size_t n)
{
    pgc_tls *t = ptr;
    size_t avail = pgc_buf_len(t->raw_in);

    if (t->rec_left == 0) {
        size_t rec;

        if (avail < TLS_HEADER_LEN) {
            gnutls_transport_set_errno(t->session, EAGAIN);
            return -1;
        }
        rec = record_length(pgc_buf_head(t->raw_in));
        if (rec == 0)
            rec = avail;
        if (avail < rec) {
            gnutls_transport_set_errno(t->session, EAGAIN);
            return -1;
        }
        t->rec_left = rec;
    }

    if (n > t->rec_left)
        n = t->rec_left;
    memcpy(data, pgc_buf_head(t->raw_in), n);
    pgc_buf_consume(t->raw_in, n);
    t->rec_left -= n;
    return (ssize_t)n;
}

/* GnuTLS push callback: ciphertext goes to raw_out. */
static ssize_t push_cb(gnutls_transport_ptr_t ptr, const void *data,
                       size_t n)
{
    pgc_tls *t = ptr;

    if (pgc_buf_append(t->raw_out, data, n) < 0) {
        gnutls_transport_set_errno(t->session, ENOMEM);
        return -1;
    }
    return (ssize_t)n;
}

/* The ALPN protocol of PostgreSQL's direct TLS (PostgreSQL 17). */
static const char ALPN_POSTGRESQL[] = "postgresql";

/* What a session gets when the caller gives no priority string. */
static const char DEFAULT_PRIORITY[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";

pgc_tls *pgc_tls_new(pgc_tls_ctx *ctx, pgc_buf *raw_in, pgc_buf *raw_out,
                     const char *sni, const char *priority,
                     char *err, size_t errlen)
{
    pgc_tls *t = calloc(1, sizeof *t);
    gnutls_datum_t alpn = { (unsigned char *)ALPN_POSTGRESQL,
                            sizeof ALPN_POSTGRESQL - 1 };
    const char *errpos = NULL;
    int rc;

    if (t == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rc = gnutls_init(&t->session, GNUTLS_CLIENT | GNUTLS_NONBLOCK);
    if (rc < 0) {
        free(t);
        snprintf(err, errlen, "TLS session: %s", gnutls_strerror(rc));
        return NULL;
    }
    t->ctx = ctx;
    pgc_tls_ctx_ref(ctx);
    t->raw_in = raw_in;
    t->raw_out = raw_out;

    rc = gnutls_priority_set_direct(t->session, priority ? priority
                                    : DEFAULT_PRIORITY, &errpos);
    if (rc == 0)
        rc = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE,
                                    ctx->cred);
    if (rc == 0)
        rc = gnutls_alpn_set_protocols(t->session, &alpn, 1, 0);
    if (rc == 0 && sni != NULL)
        rc = gnutls_server_name_set(t->session, GNUTLS_NAME_DNS, sni,
                                    strlen(sni));
    if (rc < 0) {
        snprintf(err, errlen, "TLS session: %s", gnutls_strerror(rc));
        pgc_tls_free(t);
        return NULL;
    }

    gnutls_transport_set_ptr(t->session, t);
    gnutls_transport_set_pull_function(t->session, pull_cb);
    gnutls_transport_set_push_function(t->session, push_cb);
    gnutls_handshake_set_timeout(t->session, GNUTLS_INDEFINITE_TIMEOUT);
    return t;
}

void pgc_tls_free(pgc_tls *t)
{
    if (t == NULL)
        return;
    gnutls_deinit(t->session);
    pgc_tls_ctx_unref(t->ctx);
    free(t);
}

int pgc_tls_handshake(pgc_tls *t, char *err, size_t errlen)
{
    int rc;

    do {
        rc = gnutls_handshake(t->session);
    } while (rc == GNUTLS_E_INTERRUPTED ||
             (rc < 0 && rc != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(rc)));

    if (rc == 0)
        return PGC_TLS_DONE;
    if (rc == GNUTLS_E_AGAIN)
        return PGC_TLS_WANT_READ;
    if (rc == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        snprintf(err, errlen, "TLS handshake failed: the server sent the "
                 "alert '%s'",
                 gnutls_alert_get_name(gnutls_alert_get(t->session)));
        return PGC_TLS_FAIL;
    }
    snprintf(err, errlen, "TLS handshake failed: %s", gnutls_strerror(rc));
    return PGC_TLS_FAIL;
}

/* ------------------------------------------------------------------ */
/* host names                                                          */
/* ------------------------------------------------------------------ */

/* Longest name read from a certificate; DNS names are at most 253. */
#define NAME_MAX_LEN 1024

/* An IP address parsed from a host or a name. */
typedef struct ip_addr {
    int family;               /* 0 when not an address */
    unsigned char bytes[16];
    size_t len;
} ip_addr;

/* Parses an IPv4 or IPv6 literal; sets a->family to 0 when it is not. */
static void parse_ip(const char *s, ip_addr *a)
{
    a->family = 0;
    a->len = 0;
    if (inet_pton(AF_INET, s, a->bytes) == 1) {
        a->family = AF_INET;
        a->len = 4;
    } else if (inet_pton(AF_INET6, s, a->bytes) == 1) {
        a->family = AF_INET6;
        a->len = 16;
    }
}

/*
 * Whether the wildcard pattern "*.rest" matches host: host must be one
 * label that holds no dot, then ".rest", compared without case.
 */
static int wildcard_matches(const char *pattern, const char *host)
{
    const char *dot = strchr(host, '.');

    if (pattern[0] != '*' || pattern[1] != '.' || pattern[2] == 0)
        return 0;
    if (dot == NULL || dot == host)
        return 0;
    return strcasecmp(dot, pattern + 1) == 0;
}

/*
 * Whether a DNS-type name (a dNSName, or the CN) of n bytes names host.
 * A name holding a NUL byte never matches.  For a DNS host: equal
 * without case, or a wildcard match.  For an IP host: the name read as
 * an address is the same address (or, failing that, the same text);
 * wildcards do not apply to addresses.
 */
static int dns_name_matches(const char *name, size_t n, const char *host,
                            const ip_addr *host_ip)
{
    char text[NAME_MAX_LEN + 1];
    ip_addr ip;

    if (n == 0 || n > NAME_MAX_LEN || memchr(name, 0, n) != NULL)
        return 0;
    memcpy(text, name, n);
    text[n] = 0;
    if (host_ip->family != 0) {
        parse_ip(text, &ip);
        if (ip.family != 0)
            return ip.family == host_ip->family &&
                   memcmp(ip.bytes, host_ip->bytes, ip.len) == 0;
        return strcasecmp(text, host) == 0;
    }
    return strcasecmp(text, host) == 0 || wildcard_matches(text, host);
}

/* The i-th subjectAltName; returns its GNUTLS_SAN_* type, or a negative
 * GnuTLS code (GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE past the end). */
static int alt_name(gnutls_x509_crt_t crt, unsigned i, char *out,
                    size_t *size)
{
    *size = NAME_MAX_LEN;
    return gnutls_x509_crt_get_subject_alt_name(crt, i, out, size, NULL);
}

/* Reads the (first) CN into out; returns 0, or -1 when there is none. */
static int common_name(gnutls_x509_crt_t crt, char *out, size_t *size)
{
    *size = NAME_MAX_LEN;
    return gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME,
                                         0, 0, out, size) == 0 ? 0 : -1;
}

/*
 * Whether crt names host by libpq's rules: dNSName and iPAddress
 * subjectAltNames are checked; the CN is checked only when there is no
 * subjectAltName of the host's type (iPAddress for an IP host, dNSName
 * for a DNS host).
 */
static int names_host(gnutls_x509_crt_t crt, const char *host)
{
    char name[NAME_MAX_LEN + 1];
    int has_dns = 0, has_ip = 0, check_cn;
    ip_addr host_ip;
    size_t size;
    unsigned i;

    parse_ip(host, &host_ip);
    for (i = 0;; i++) {
        int type = alt_name(crt, i, name, &size);

        if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (type == GNUTLS_SAN_DNSNAME) {
            has_dns = 1;
            if (dns_name_matches(name, size, host, &host_ip))
                return 1;
        } else if (type == GNUTLS_SAN_IPADDRESS) {
            has_ip = 1;
            if (host_ip.family != 0 && size == host_ip.len &&
                memcmp(name, host_ip.bytes, size) == 0)
                return 1;
        } else if (type < 0 && type != GNUTLS_E_SHORT_MEMORY_BUFFER) {
            break;
        }
    }

    check_cn = host_ip.family != 0 ? !has_ip : !has_dns;
    if (check_cn && common_name(crt, name, &size) == 0)
        return dns_name_matches(name, size, host, &host_ip);
    return 0;
}

/*
 * Writes the names a certificate carries (DNS and IP subjectAltNames,
 * then the CN) to out as "DNS:a, IP:b, CN=c", for error messages.
 */
static void describe_names(gnutls_x509_crt_t crt, char *out, size_t outlen)
{
    char name[NAME_MAX_LEN + 1];
    size_t used = 0, size;
    unsigned i;

    out[0] = 0;
    for (i = 0; used < outlen; i++) {
        char text[NAME_MAX_LEN + 8];
        int type = alt_name(crt, i, name, &size);

        if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (type == GNUTLS_SAN_DNSNAME) {
            snprintf(text, sizeof text, "DNS:%.*s", (int)size, name);
        } else if (type == GNUTLS_SAN_IPADDRESS && (size == 4 ||
                                                    size == 16)) {
            char ip[INET6_ADDRSTRLEN];

            inet_ntop(size == 4 ? AF_INET : AF_INET6, name, ip, sizeof ip);
            snprintf(text, sizeof text, "IP:%s", ip);
        } else if (type < 0 && type != GNUTLS_E_SHORT_MEMORY_BUFFER) {
            break;
        } else {
            continue;
        }
        used += (size_t)snprintf(out + used, outlen - used, "%s%s",
                                 used ? ", " : "", text);
    }
    if (used < outlen && common_name(crt, name, &size) == 0)
        snprintf(out + used, outlen - used, "%sCN=%.*s",
                 used ? ", " : "", (int)size, name);
    if (out[0] == 0)
        snprintf(out, outlen, "no names");
}

/* Checks that crt names host; 0, or -1 with the message in err. */
static int check_host(gnutls_x509_crt_t crt, const char *host,
                      char *err, size_t errlen)
{
    char names[400];

    if (names_host(crt, host))
        return 0;
    describe_names(crt, names, sizeof names);
    snprintf(err, errlen, "server certificate does not match host name "
             "'%s' (it names %s)", host, names);
    return -1;
}

int pgc_tls_pem_names_host(const char *pem, size_t len, const char *host,
                           char *err, size_t errlen)
{
    gnutls_datum_t data = { (unsigned char *)pem, (unsigned)len };
    gnutls_x509_crt_t crt;
    int rc;

    if (gnutls_x509_crt_init(&crt) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rc = gnutls_x509_crt_import(crt, &data, GNUTLS_X509_FMT_PEM);
    if (rc < 0) {
        snprintf(err, errlen, "not a PEM certificate: %s",
                 gnutls_strerror(rc));
        gnutls_x509_crt_deinit(crt);
        return -1;
    }
    rc = check_host(crt, host, err, errlen) == 0 ? 1 : 0;
    gnutls_x509_crt_deinit(crt);
    return rc;
}

/* ------------------------------------------------------------------ */
/* peer verification                                                   */
/* ------------------------------------------------------------------ */

/* Imports the peer's leaf certificate; NULL when there is none. */
static gnutls_x509_crt_t peer_certificate(pgc_tls *t)
{
    const gnutls_datum_t *list;
    unsigned n = 0;
    gnutls_x509_crt_t crt;

    list = gnutls_certificate_get_peers(t->session, &n);
    if (list == NULL || n == 0)
        return NULL;
    if (gnutls_x509_crt_init(&crt) < 0)
        return NULL;
    if (gnutls_x509_crt_import(crt, &list[0], GNUTLS_X509_FMT_DER) < 0) {
        gnutls_x509_crt_deinit(crt);
        return NULL;
    }
    return crt;
}

/* Checks the chain against the trust anchors and revocation lists of
 * the context; 0, or -1 with GnuTLS's reasons in err. */
static int check_chain(pgc_tls *t, char *err, size_t errlen)
{
    gnutls_datum_t text = { NULL, 0 };
    unsigned status = 0;
    const char *why;
    size_t n;
    int rc = gnutls_certificate_verify_peers2(t->session, &status);

    if (rc >= 0 && status == 0)
        return 0;
    if (rc >= 0)
        gnutls_certificate_verification_status_print(status,
                                                     GNUTLS_CRT_X509,
                                                     &text, 0);
    why = rc < 0 ? gnutls_strerror(rc)
          : text.data ? (char *)text.data : "untrusted";
    n = strlen(why);
    while (n > 0 && why[n - 1] == ' ')
        n--;
    snprintf(err, errlen, "server certificate verification failed: %.*s",
             (int)n, why);
    gnutls_free(text.data);
    return -1;
}

int pgc_tls_verify(pgc_tls *t, int chain, const char *host,
                   char *err, size_t errlen)
{
    gnutls_x509_crt_t crt = peer_certificate(t);
    int rc = 0;

    if (crt == NULL) {
        snprintf(err, errlen, "the server presented no certificate");
        return -1;
    }
    if (chain)
        rc = check_chain(t, err, errlen);
    if (rc == 0 && host != NULL)
        rc = check_host(crt, host, err, errlen);
    gnutls_x509_crt_deinit(crt);
    return rc;
}

int pgc_tls_send(pgc_tls *t, const void *p, size_t n,
                 char *err, size_t errlen)
{
    const char *s = p;

    while (n > 0) {
        ssize_t rc = gnutls_record_send(t->session, s, n);

        if (rc == GNUTLS_E_INTERRUPTED)
            continue;
        if (rc < 0) {
            snprintf(err, errlen, "TLS send failed: %s",
                     gnutls_strerror((int)rc));
            return -1;
        }
        s += rc;
        n -= (size_t)rc;
    }
    return 0;
}

int pgc_tls_recv(pgc_tls *t, pgc_buf *plain, char *err, size_t errlen)
{
    int got = 0;

    for (;;) {
        char *w = pgc_buf_reserve(plain, 16384);
        ssize_t rc;

        if (w == NULL) {
            snprintf(err, errlen, "out of memory");
            return PGC_TLS_FAIL;
        }
        rc = gnutls_record_recv(t->session, w, 16384);
        if (rc > 0) {
            plain->end += (size_t)rc;
            got = 1;
            continue;
        }
        if (rc == GNUTLS_E_INTERRUPTED)
            continue;
        if (rc == GNUTLS_E_AGAIN)
            return got ? PGC_TLS_DONE : PGC_TLS_WANT_READ;
        if (got)
            return PGC_TLS_DONE;    /* report EOF or errors next time */
        if (rc == 0 || rc == GNUTLS_E_PREMATURE_TERMINATION)
            return PGC_TLS_EOF;
        snprintf(err, errlen, "TLS receive failed: %s",
                 gnutls_strerror((int)rc));
        return PGC_TLS_FAIL;
    }
}

size_t pgc_tls_read_hint(const pgc_tls *t)
{
    size_t avail = pgc_buf_len(t->raw_in), rec;

    if (avail < TLS_HEADER_LEN)
        return TLS_HEADER_LEN - avail;
    rec = record_length(pgc_buf_head(t->raw_in));
    if (rec == 0 || avail >= rec)
        return 1;
    return rec - avail;
}

void pgc_tls_bye(pgc_tls *t)
{
    gnutls_bye(t->session, GNUTLS_SHUT_WR);
}

const char *pgc_tls_version(pgc_tls *t)
{
    switch (gnutls_protocol_get_version(t->session)) {
    case GNUTLS_TLS1_3:
        return "TLSv1.3";
    case GNUTLS_TLS1_2:
        return "TLSv1.2";
    case GNUTLS_TLS1_1:
        return "TLSv1.1";
    case GNUTLS_TLS1_0:
        return "TLSv1";
    default:
        return "unknown";
    }
}

const char *pgc_tls_cipher(pgc_tls *t)
{
    const char *name = gnutls_ciphersuite_get(t->session);

    return name ? name : "unknown";
}

int pgc_tls_peer_dn(pgc_tls *t, int issuer, char *out, size_t outlen)
{
    gnutls_x509_crt_t crt = peer_certificate(t);
    gnutls_datum_t dn = { NULL, 0 };
    int rc;

    if (crt == NULL)
        return -1;
    rc = issuer ? gnutls_x509_crt_get_issuer_dn3(crt, &dn, 0)
                : gnutls_x509_crt_get_dn3(crt, &dn, 0);
    gnutls_x509_crt_deinit(crt);
    if (rc < 0)
        return -1;
    snprintf(out, outlen, "%.*s", (int)dn.size, (char *)dn.data);
    gnutls_free(dn.data);
    return 0;
}

const char *pgc_tls_alpn(pgc_tls *t)
{
    gnutls_datum_t proto = { NULL, 0 };

    if (gnutls_alpn_get_selected_protocol(t->session, &proto) < 0 ||
        proto.size == 0 || proto.size >= sizeof t->alpn)
        return NULL;
    memcpy(t->alpn, proto.data, proto.size);
    t->alpn[proto.size] = 0;
    return t->alpn;
}

/*
 * See tls.h.  GnuTLS computes the hash and follows RFC 5929 in picking
 * it: the hash of the certificate's signature algorithm, with MD5 and
 * SHA-1 replaced by SHA-256.
 */
int pgc_tls_server_end_point(pgc_tls *t, unsigned char *out, size_t *len,
                             char *err, size_t errlen)
{
    gnutls_datum_t cb = { NULL, 0 };
    int rc = gnutls_session_channel_binding(t->session,
                                            GNUTLS_CB_TLS_SERVER_END_POINT,
                                            &cb);

    if (rc < 0 || cb.size == 0 || cb.size > PGC_TLS_CBIND_MAX) {
        snprintf(err, errlen, "channel binding data for the server "
                 "certificate is not available: %s",
                 rc < 0 ? gnutls_strerror(rc) : "unexpected hash size");
        gnutls_free(cb.data);
        return -1;
    }
    memcpy(out, cb.data, cb.size);
    *len = cb.size;
    gnutls_free(cb.data);
    return 0;
}
