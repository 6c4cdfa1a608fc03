/*
 * tls.c - every GnuTLS call of the project: credentials, sessions over
 * byte buffers, peer verification, and crypto primitives.  See tls.h.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

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

int pgc_crypto_random(void *out, size_t len)
{
    return gnutls_rnd(GNUTLS_RND_NONCE, out, len) < 0 ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* contexts                                                            */
/* ------------------------------------------------------------------ */

struct pgc_tls_ctx {
    gnutls_certificate_credentials_t cred;
    int refs;
    int trust_count;
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

int pgc_tls_ctx_has_key(const pgc_tls_ctx *ctx)
{
    return ctx->has_key;
}

int pgc_tls_ctx_trust_system(pgc_tls_ctx *ctx, char *err, size_t errlen)
{
    int n = gnutls_certificate_set_x509_system_trust(ctx->cred);

    if (n <= 0) {
        snprintf(err, errlen, "the system trust store could not be "
                 "loaded: %s", n < 0 ? gnutls_strerror(n)
                 : "it holds no certificates");
        return -1;
    }
    ctx->trust_count += n;
    return 0;
}

/*
 * Reads a whole file for a loader.  Returns 0 with data filled in (free
 * with gnutls_free), or -1 with a message naming the file and the reason
 * the operating system gave.
 */
static int load_file(const char *what, const char *path,
                     gnutls_datum_t *data, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");

    if (f == NULL) {
        snprintf(err, errlen, "%s '%s' cannot be read: %s", what, path,
                 strerror(errno));
        return -1;
    }
    fclose(f);
    if (gnutls_load_file(path, data) < 0) {
        snprintf(err, errlen, "%s '%s' cannot be read", what, path);
        return -1;
    }
    return 0;
}

int pgc_tls_ctx_trust_file(pgc_tls_ctx *ctx, const char *path,
                           char *err, size_t errlen)
{
    gnutls_datum_t data;
    int n;

    if (load_file("CA certificate file", path, &data, err, errlen) < 0)
        return -1;
    n = gnutls_certificate_set_x509_trust_mem(ctx->cred, &data,
                                              GNUTLS_X509_FMT_PEM);
    gnutls_free(data.data);
    if (n <= 0) {
        snprintf(err, errlen, "CA certificate file '%s' holds no usable "
                 "PEM certificate%s%s", path, n < 0 ? ": " : "",
                 n < 0 ? gnutls_strerror(n) : "");
        return -1;
    }
    ctx->trust_count += n;
    return 0;
}

/*
 * Checks that data holds at least one PEM certificate, so that a bad
 * certificate file is reported as such rather than as a key problem.
 */
static int check_cert_pem(const char *path, const gnutls_datum_t *data,
                          char *err, size_t errlen)
{
    gnutls_x509_crt_t *list = NULL;
    unsigned n = 0, i;
    int rc = gnutls_x509_crt_list_import2(&list, &n, data,
                                          GNUTLS_X509_FMT_PEM, 0);

    if (rc < 0 || n == 0) {
        snprintf(err, errlen, "certificate file '%s' holds no usable PEM "
                 "certificate: %s", path,
                 rc < 0 ? gnutls_strerror(rc) : "none found");
        return -1;
    }
    for (i = 0; i < n; i++)
        gnutls_x509_crt_deinit(list[i]);
    gnutls_free(list);
    return 0;
}

/* The same for the private key, which may be encrypted. */
static int check_key_pem(const char *path, const gnutls_datum_t *data,
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
        snprintf(err, errlen, "private key file '%s' is encrypted and no "
                 "key_password was given", path);
        return -1;
    }
    if (rc == GNUTLS_E_DECRYPTION_FAILED) {
        snprintf(err, errlen, "private key file '%s' could not be "
                 "decrypted: wrong key_password?", path);
        return -1;
    }
    if (rc < 0) {
        snprintf(err, errlen, "private key file '%s' holds no usable PEM "
                 "private key: %s", path, gnutls_strerror(rc));
        return -1;
    }
    return 0;
}

int pgc_tls_ctx_key_pair(pgc_tls_ctx *ctx, const char *cert_file,
                         const char *key_file, const char *password,
                         char *err, size_t errlen)
{
    gnutls_datum_t cert = { NULL, 0 }, key = { NULL, 0 };
    int rc = -1, grc;

    if (load_file("certificate file", cert_file, &cert, err, errlen) < 0)
        goto done;
    if (load_file("private key file", key_file, &key, err, errlen) < 0)
        goto done;
    if (check_cert_pem(cert_file, &cert, err, errlen) < 0 ||
        check_key_pem(key_file, &key, password, err, errlen) < 0)
        goto done;

    grc = gnutls_certificate_set_x509_key_mem2(ctx->cred, &cert, &key,
                                               GNUTLS_X509_FMT_PEM,
                                               password, 0);
    if (grc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
        snprintf(err, errlen, "private key file '%s' does not match "
                 "certificate file '%s'", key_file, cert_file);
        goto done;
    }
    if (grc < 0) {
        snprintf(err, errlen, "certificate '%s' with key '%s' cannot be "
                 "used: %s", cert_file, key_file, gnutls_strerror(grc));
        goto done;
    }
    ctx->has_key = 1;
    rc = 0;

done:
    if (key.data != NULL) {
        memset(key.data, 0, key.size);
        gnutls_free(key.data);
    }
    gnutls_free(cert.data);
    return rc;
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
    char version[16];
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

pgc_tls *pgc_tls_new(pgc_tls_ctx *ctx, pgc_buf *raw_in, pgc_buf *raw_out,
                     const char *sni, char *err, size_t errlen)
{
    pgc_tls *t = calloc(1, sizeof *t);
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

    rc = gnutls_priority_set_direct(t->session,
        "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", &errpos);
    if (rc == 0)
        rc = gnutls_credentials_set(t->session, GNUTLS_CRD_CERTIFICATE,
                                    ctx->cred);
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

/*
 * Appends the names a certificate carries (DNS and IP subjectAltNames,
 * then the CN) to out as "DNS:a, IP:b, CN=c", for error messages.
 */
static void describe_names(gnutls_x509_crt_t crt, char *out, size_t outlen)
{
    size_t used = 0;
    unsigned i;

    out[0] = 0;
    for (i = 0;; i++) {
        unsigned char name[256];
        size_t size = sizeof name;
        char text[300];
        int type = gnutls_x509_crt_get_subject_alt_name(crt, i, name,
                                                        &size, NULL);

        if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (type == GNUTLS_SAN_DNSNAME) {
            snprintf(text, sizeof text, "DNS:%.*s", (int)size, name);
        } else if (type == GNUTLS_SAN_IPADDRESS && (size == 4 ||
                                                    size == 16)) {
            char ip[INET6_ADDRSTRLEN];

            inet_ntop(size == 4 ? AF_INET : AF_INET6, name, ip, sizeof ip);
            snprintf(text, sizeof text, "IP:%s", ip);
        } else {
            continue;
        }
        used += (size_t)snprintf(out + used, outlen - used, "%s%s",
                                 used ? ", " : "", text);
        if (used >= outlen)
            return;
    }
    {
        char cn[256];
        size_t size = sizeof cn;

        if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME,
                                          0, 0, cn, &size) == 0)
            snprintf(out + used, outlen - used, "%sCN=%s",
                     used ? ", " : "", cn);
    }
    if (out[0] == 0)
        snprintf(out, outlen, "no names");
}

int pgc_tls_verify(pgc_tls *t, int check_chain, const char *host,
                   char *err, size_t errlen)
{
    gnutls_x509_crt_t crt;
    unsigned status = 0;
    int rc;

    crt = peer_certificate(t);
    if (crt == NULL) {
        snprintf(err, errlen, "the server presented no certificate");
        return -1;
    }

    if (check_chain) {
        rc = gnutls_certificate_verify_peers2(t->session, &status);
        if (rc < 0 || status != 0) {
            gnutls_datum_t text = { NULL, 0 };

            if (rc >= 0)
                gnutls_certificate_verification_status_print(
                    status, GNUTLS_CRT_X509, &text, 0);
            const char *why = rc < 0 ? gnutls_strerror(rc)
                              : text.data ? (char *)text.data : "untrusted";
            size_t n = strlen(why);

            while (n > 0 && why[n - 1] == ' ')
                n--;
            snprintf(err, errlen, "server certificate verification failed: "
                     "%.*s", (int)n, why);
            gnutls_free(text.data);
            gnutls_x509_crt_deinit(crt);
            return -1;
        }
    }

    if (host != NULL && !gnutls_x509_crt_check_hostname2(crt, host, 0)) {
        char names[400];

        describe_names(crt, names, sizeof names);
        snprintf(err, errlen, "server certificate does not match host "
                 "name '%s' (it names %s)", host, names);
        gnutls_x509_crt_deinit(crt);
        return -1;
    }

    gnutls_x509_crt_deinit(crt);
    return 0;
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
