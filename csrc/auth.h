/*
 * auth.h - password authentication payloads: the MD5 password response
 * and the client side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as
 * PostgreSQL uses it.  This layer computes message payloads only: it
 * does no I/O and knows nothing of sockets or message framing.  It may
 * call the C library, buffer.h, and the crypto primitives of tls.h.
 */
#ifndef PGC_AUTH_H
#define PGC_AUTH_H

#include <stddef.h>

#include "buffer.h"
#include "tls.h"

/* ------------------------------------------------------------------ */
/* MD5                                                                 */
/* ------------------------------------------------------------------ */

/* Length of the MD5 response: "md5" + 32 hex digits + NUL. */
#define PGC_AUTH_MD5_LEN 36

/*
 * Computes the response to AuthenticationMD5Password:
 * "md5" + hex(md5(hex(md5(password + user)) + salt)), NUL-terminated.
 * Returns 0 on success, -1 on failure (NULL argument, out of memory or
 * a hashing error); out is then an empty string.
 */
int pgc_auth_md5(const char *user, const char *password,
                 const unsigned char salt[4], char out[PGC_AUTH_MD5_LEN]);

/* ------------------------------------------------------------------ */
/* SCRAM-SHA-256                                                       */
/* ------------------------------------------------------------------ */

/* Longest client nonce accepted, in characters. */
#define PGC_SCRAM_NONCE_MAX 64

/*
 * Highest iteration count accepted from a server.  PostgreSQL uses 4096
 * unless scram_iterations is raised; a larger count than this is taken
 * as a server trying to make the client burn CPU time.
 */
#define PGC_SCRAM_MAX_ITERATIONS 10000000u

/* Longest server-first-message or server-final-message accepted. */
#define PGC_SCRAM_MAX_MESSAGE 65536

/*
 * State of one SCRAM exchange.  The caller owns the struct; the heap
 * fields belong to it and are released by pgc_scram_free.  Fields are
 * private to auth.c.
 */
typedef struct pgc_scram {
    int state;
    char cbind_flag;              /* 'n', 'y' or 'p' */
    unsigned char *cbind_data;    /* heap; only with 'p' */
    size_t cbind_len;
    char *password;               /* heap; wiped once used */
    size_t password_len;
    char *user;                   /* heap, escaped saslname; NULL = "" */
    char client_nonce[PGC_SCRAM_NONCE_MAX + 1];
    pgc_buf client_first_bare;    /* kept for the AuthMessage */
    unsigned char salted_password[PGC_SHA256_LEN];
    unsigned char server_signature[PGC_SHA256_LEN];
} pgc_scram;

/*
 * Starts an exchange.  cbind_flag is 'n' (the client does not support
 * channel binding), 'y' (it does, but the server did not offer
 * SCRAM-SHA-256-PLUS) or 'p' (tls-server-end-point is used, and
 * cbind_data/cbind_len hold the hash of the server certificate; they
 * must be empty with the other flags).  The password is copied.
 * Returns 0 on success, -1 with a message in err on failure.  In both
 * cases s must afterwards be released with pgc_scram_free.
 */
int pgc_scram_init(pgc_scram *s, const char *password, char cbind_flag,
                   const unsigned char *cbind_data, size_t cbind_len,
                   char *err, size_t errlen);

/*
 * Sets the user name sent in the n= attribute (empty by default, since
 * PostgreSQL takes the user from the startup message).  Must be called
 * before pgc_scram_client_first.  Returns 0 on success, -1 with a
 * message in err on failure.
 */
int pgc_scram_set_user(pgc_scram *s, const char *user,
                       char *err, size_t errlen);

/*
 * For deterministic tests only: replaces the random client nonce.  Must
 * be called before pgc_scram_client_first.  Returns 0 on success, -1 if
 * the call comes too late or the nonce is empty, longer than
 * PGC_SCRAM_NONCE_MAX or holds a character that is not printable ASCII
 * or is ','.
 */
int pgc_scram_test_set_nonce(pgc_scram *s, const char *nonce);

/*
 * Appends the client-first-message to out, for example "n,,n=,r=<nonce>"
 * or "p=tls-server-end-point,,n=,r=<nonce>".  Returns 0 on success, -1
 * with a message in err on failure.
 */
int pgc_scram_client_first(pgc_scram *s, pgc_buf *out,
                           char *err, size_t errlen);

/*
 * Parses the server-first-message (msg, len bytes, not NUL-terminated),
 * derives the keys and appends the client-final-message
 * "c=<channel binding>,r=<nonce>,p=<proof>" to out.  Returns 0 on
 * success, -1 with a message in err on failure.
 */
int pgc_scram_client_final(pgc_scram *s, const char *msg, size_t len,
                           pgc_buf *out, char *err, size_t errlen);

/*
 * Parses the server-final-message (msg, len bytes, not NUL-terminated).
 * Returns 0 if it carries the expected ServerSignature; -1 with a
 * message in err if the signature differs, the server reported an
 * error (its text is quoted in err) or the message is malformed.
 */
int pgc_scram_verify_final(pgc_scram *s, const char *msg, size_t len,
                           char *err, size_t errlen);

/* Releases the heap fields and wipes the secrets.  Idempotent. */
void pgc_scram_free(pgc_scram *s);

#endif
