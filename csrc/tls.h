/*
 * tls.h - the TLS layer: every GnuTLS call in the project is behind this
 * header.  Contexts hold credentials; sessions run over two pgc_buf byte
 * buffers (raw bytes in from the network, raw bytes out to it) so that
 * the caller decides how bytes move.  Also the few crypto primitives that
 * authentication needs, and the certificate hash of tls-server-end-point
 * channel binding.
 */
#ifndef PGC_TLS_H
#define PGC_TLS_H

#include <stddef.h>

#include "buffer.h"

#define PGC_TLS_ERRLEN 512

/* ---- crypto primitives (return 0 on success, -1 on failure) ---- */

#define PGC_SHA256_LEN 32
#define PGC_MD5_LEN 16

int pgc_crypto_sha256(const void *data, size_t len,
                      unsigned char out[PGC_SHA256_LEN]);
int pgc_crypto_md5(const void *data, size_t len,
                   unsigned char out[PGC_MD5_LEN]);
int pgc_crypto_hmac_sha256(const void *key, size_t keylen,
                           const void *data, size_t len,
                           unsigned char out[PGC_SHA256_LEN]);
/* PBKDF2 with HMAC-SHA-256 (SCRAM's Hi function), 32 bytes of output. */
int pgc_crypto_pbkdf2_sha256(const void *password, size_t passlen,
                             const void *salt, size_t saltlen,
                             unsigned iterations,
                             unsigned char out[PGC_SHA256_LEN]);
/*
 * Normalises a UTF-8 password as RFC 8265 (OpaqueString) says: non-ASCII
 * spaces become ASCII spaces and the text is put in Unicode NFC.  Returns
 * 0 with a malloc'd, NUL-terminated copy in *out (the caller frees it), or
 * -1 when the text is not such a password (invalid UTF-8, disallowed
 * code points) or memory ran out.
 */
int pgc_crypto_normalize_password(const char *in, size_t len, char **out,
                                  size_t *outlen);

/* Fills out with len bytes from a cryptographically secure generator. */
int pgc_crypto_random(void *out, size_t len);

/* ---- contexts: credentials shared by sessions ---- */

typedef struct pgc_tls_ctx pgc_tls_ctx;

/*
 * Creates an empty context with a reference count of one.  Returns NULL
 * with a message in err when out of memory.
 */
pgc_tls_ctx *pgc_tls_ctx_new(char *err, size_t errlen);
void pgc_tls_ctx_ref(pgc_tls_ctx *ctx);
/* Drops one reference; the last one frees the credentials.  NULL is ok. */
void pgc_tls_ctx_unref(pgc_tls_ctx *ctx);

/*
 * Where a certificate, key or CA list comes from: a file (path), or PEM
 * text in memory (pem, len; path NULL).  The caller keeps both alive for
 * the duration of the call only.
 */
typedef struct pgc_tls_source {
    const char *path;
    const char *pem;
    size_t len;
} pgc_tls_source;

/*
 * Loaders: each returns 0 on success, or -1 with a message in err that
 * names the file (or says "in-memory") and says why it could not be
 * used.
 *
 * pgc_tls_ctx_trust_system loads the system trust store; named says the
 * caller asked for it by name, which counts as an explicit CA.
 */
int pgc_tls_ctx_trust_system(pgc_tls_ctx *ctx, int named,
                             char *err, size_t errlen);
/* Trust anchors from a PEM file or PEM text; they are an explicit CA. */
int pgc_tls_ctx_trust(pgc_tls_ctx *ctx, const pgc_tls_source *ca,
                      char *err, size_t errlen);
/* A certificate revocation list file, PEM or DER. */
int pgc_tls_ctx_crl_file(pgc_tls_ctx *ctx, const char *path,
                         char *err, size_t errlen);
/*
 * A certificate (the leaf first, then any intermediates) and its private
 * key; password may be NULL for an unencrypted key.  A key file is
 * refused when group or others may access it: it must have mode 0600 or
 * less, or 0640 or less when owned by root.
 */
int pgc_tls_ctx_key_pair(pgc_tls_ctx *ctx, const pgc_tls_source *cert,
                         const pgc_tls_source *key, const char *password,
                         char *err, size_t errlen);
/* Whether some trust anchors are loaded, so the chain can be checked. */
int pgc_tls_ctx_has_trust(const pgc_tls_ctx *ctx);
/* Whether a CA was given explicitly (a file, PEM text, or "system"). */
int pgc_tls_ctx_has_explicit_trust(const pgc_tls_ctx *ctx);
int pgc_tls_ctx_has_key(const pgc_tls_ctx *ctx);

/* ---- session parameters ---- */

/* Protocol versions, for pgc_tls_priority. */
enum {
    PGC_TLS_V1_0 = 10,
    PGC_TLS_V1_1 = 11,
    PGC_TLS_V1_2 = 12,
    PGC_TLS_V1_3 = 13
};

#define PGC_TLS_PRIORITY_MAX 1024

/*
 * Builds into out (outlen bytes) the GnuTLS priority string of a
 * session: base, or "NORMAL" when base is NULL, with the protocol
 * versions limited to min..max (PGC_TLS_V*).  GnuTLS checks the result.
 * Returns 0, or -1 with a message in err; for a bad base string the
 * message gives the position where GnuTLS stopped understanding it.
 */
int pgc_tls_priority(const char *base, int min, int max, char *out,
                     size_t outlen, char *err, size_t errlen);

/* ---- sessions over byte buffers ---- */

typedef struct pgc_tls pgc_tls;

/*
 * Creates a client session that reads ciphertext from raw_in and appends
 * ciphertext to raw_out (both owned by the caller and kept alive while
 * the session lives).  sni is the host name to send as server name
 * indication, or NULL; priority a string from pgc_tls_priority, or NULL
 * for the default (TLS 1.2 and 1.3).  The session offers the ALPN
 * protocol "postgresql".  Takes a reference on ctx.  Returns NULL with a
 * message in err on failure.
 */
pgc_tls *pgc_tls_new(pgc_tls_ctx *ctx, pgc_buf *raw_in, pgc_buf *raw_out,
                     const char *sni, const char *priority,
                     char *err, size_t errlen);
void pgc_tls_free(pgc_tls *t);

enum {
    PGC_TLS_DONE = 1,      /* handshake complete / bytes delivered */
    PGC_TLS_WANT_READ = 0, /* more ciphertext must arrive in raw_in */
    PGC_TLS_FAIL = -1,     /* fatal; err says why */
    PGC_TLS_EOF = -2       /* the peer closed the TLS session */
};

/* Advances the handshake.  Returns PGC_TLS_DONE, _WANT_READ or _FAIL. */
int pgc_tls_handshake(pgc_tls *t, char *err, size_t errlen);

/*
 * Checks the peer's certificate chain against the context's trust
 * anchors and revocation lists (when check_chain), then, when host is
 * not NULL, that the certificate names host by libpq's rules:
 * subjectAltName dNSName and iPAddress entries; the CN only when there
 * is no subjectAltName of the host's type; no case; a leading "*."
 * matches one label.  Returns 0, or -1 with a message in err that names
 * host and the names the certificate carries.
 */
int pgc_tls_verify(pgc_tls *t, int check_chain, const char *host,
                   char *err, size_t errlen);

/*
 * The same host name rules, applied to a PEM certificate (for tests and
 * tools).  Returns 1 when it names host, 0 when it does not (with the
 * message in err), -1 when it cannot be read (err says why).
 */
int pgc_tls_pem_names_host(const char *pem, size_t len, const char *host,
                           char *err, size_t errlen);

/* Encrypts n bytes into raw_out.  Returns 0, or -1 with err. */
int pgc_tls_send(pgc_tls *t, const void *p, size_t n,
                 char *err, size_t errlen);

/*
 * Decrypts whatever complete records raw_in holds, appending plaintext to
 * plain.  Returns PGC_TLS_DONE when some plaintext was added,
 * PGC_TLS_WANT_READ when none could be, PGC_TLS_EOF or PGC_TLS_FAIL.
 */
int pgc_tls_recv(pgc_tls *t, pgc_buf *plain, char *err, size_t errlen);

/* Bytes still missing from raw_in to complete the next TLS record. */
size_t pgc_tls_read_hint(const pgc_tls *t);

/* Appends a close_notify alert to raw_out (best effort). */
void pgc_tls_bye(pgc_tls *t);

/* Facts about an established session; strings live as long as t.
 * version is "TLSv1.2" or "TLSv1.3". */
const char *pgc_tls_version(pgc_tls *t);
const char *pgc_tls_cipher(pgc_tls *t);
/* The ALPN protocol the server selected, or NULL for none. */
const char *pgc_tls_alpn(pgc_tls *t);
/* Writes the peer certificate's subject or issuer DN (RFC 4514) into
 * out; returns 0, or -1 when there is no peer certificate. */
int pgc_tls_peer_dn(pgc_tls *t, int issuer, char *out, size_t outlen);

/* Longest tls-server-end-point hash (SHA-512). */
#define PGC_TLS_CBIND_MAX 64

/*
 * The tls-server-end-point channel binding data (RFC 5929) of an
 * established session: the hash of the server's certificate with the
 * hash function of its signature, SHA-256 for MD5 and SHA-1.  Writes it
 * to out and its size to *len.  Returns 0, or -1 with a message in err.
 */
int pgc_tls_server_end_point(pgc_tls *t, unsigned char *out, size_t *len,
                             char *err, size_t errlen);

#endif
