/*
 * test_auth.c - known-answer and rejection tests for csrc/auth.c: the
 * MD5 password response and the SCRAM-SHA-256 client.  A standalone
 * program that calls auth.h and buffer.h only; it prints one
 * "ok N - ..." or "not ok N - ..." line per check, then a plan line,
 * and exits non-zero if any check failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "buffer.h"

static int checks;
static int failures;

/* Records one check and prints its TAP line. */
static void check(int ok, const char *description)
{
    checks++;
    if (!ok)
        failures++;
    printf("%s %d - %s\n", ok ? "ok" : "not ok", checks, description);
}

/* Records a check that a call failed with err containing want. */
static void check_error(int rc, const char *err, const char *want,
                        const char *description)
{
    int ok = rc == -1 && strstr(err, want) != NULL;

    check(ok, description);
    if (!ok)
        printf("#   rc %d, err \"%s\", wanted \"%s\"\n", rc, err, want);
}

/* True if the live bytes of b are exactly the string want. */
static int buf_equals(const pgc_buf *b, const char *want)
{
    size_t n = strlen(want);

    return pgc_buf_len(b) == n && memcmp(pgc_buf_head(b), want, n) == 0;
}

/* True if the live bytes of b start with the string want. */
static int buf_starts_with(const pgc_buf *b, const char *want)
{
    size_t n = strlen(want);

    return pgc_buf_len(b) >= n && memcmp(pgc_buf_head(b), want, n) == 0;
}

/* Prints the live bytes of b as a diagnostic line. */
static void show_buf(const char *label, const pgc_buf *b)
{
    printf("#   %s: \"%.*s\"\n", label, (int)pgc_buf_len(b),
           pgc_buf_head(b));
}

/* ------------------------------------------------------------------ */
/* the RFC 7677 example                                                */
/* ------------------------------------------------------------------ */

#define RFC_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE RFC_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_SERVER_FIRST "r=" RFC_SERVER_NONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CLIENT_FINAL \
    "c=biws,r=" RFC_SERVER_NONCE \
    ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/*
 * Starts an exchange with password "pencil", the RFC client nonce and
 * the given user name, and sends the client-first-message into first.
 * Returns 0 if every step succeeded.
 */
static int start_exchange(pgc_scram *s, char flag,
                          const unsigned char *cbind, size_t cbind_len,
                          const char *user, pgc_buf *first, char *err)
{
    if (pgc_scram_init(s, "pencil", flag, cbind, cbind_len,
                       err, 256) < 0)
        return -1;
    if (user != NULL && pgc_scram_set_user(s, user, err, 256) < 0)
        return -1;
    if (pgc_scram_test_set_nonce(s, RFC_NONCE) < 0)
        return -1;
    return pgc_scram_client_first(s, first, err, 256);
}

/*
 * Runs client-final on server_first (NUL-terminated) after a standard
 * start as user "user".  Returns what pgc_scram_client_final returned,
 * or -2 if the start failed.  The caller frees s and the buffers.
 */
static int final_for(pgc_scram *s, const char *server_first,
                     pgc_buf *first, pgc_buf *final, char *err)
{
    if (start_exchange(s, 'n', NULL, 0, "user", first, err) < 0)
        return -2;
    return pgc_scram_client_final(s, server_first, strlen(server_first),
                                  final, err, 256);
}

/* Checks the whole RFC 7677 exchange. */
static void test_rfc_exchange(void)
{
    pgc_scram s;
    pgc_buf first, final;
    char err[256] = "";
    int rc;

    pgc_buf_init(&first);
    pgc_buf_init(&final);
    rc = start_exchange(&s, 'n', NULL, 0, "user", &first, err);
    check(rc == 0 && buf_equals(&first, "n,,n=user,r=" RFC_NONCE),
          "builds the RFC 7677 client-first-message");
    if (rc != 0)
        printf("#   err: %s\n", err);

    rc = pgc_scram_client_final(&s, RFC_SERVER_FIRST,
                                strlen(RFC_SERVER_FIRST), &final,
                                err, sizeof err);
    check(rc == 0 && buf_equals(&final, RFC_CLIENT_FINAL),
          "computes the RFC 7677 client-final-message and proof");
    if (rc != 0)
        printf("#   err: %s\n", err);
    else if (!buf_equals(&final, RFC_CLIENT_FINAL))
        show_buf("client-final", &final);

    rc = pgc_scram_verify_final(&s, RFC_SERVER_FINAL,
                                strlen(RFC_SERVER_FINAL), err, sizeof err);
    check(rc == 0, "accepts the RFC 7677 server signature");
    if (rc != 0)
        printf("#   err: %s\n", err);

    rc = pgc_scram_verify_final(&s, RFC_SERVER_FINAL,
                                strlen(RFC_SERVER_FINAL), err, sizeof err);
    check_error(rc, err, "out of order",
                "refuses to verify a server-final-message twice");

    pgc_scram_free(&s);
    pgc_buf_free(&first);
    pgc_buf_free(&final);
}

/* Checks that message lengths, not NUL terminators, are honoured. */
static void test_unterminated_input(void)
{
    static const char tail[] = ",x=trailing bytes past the length";
    char server_first[sizeof RFC_SERVER_FIRST + sizeof tail];
    char server_final[sizeof RFC_SERVER_FINAL + sizeof tail];
    pgc_scram s;
    pgc_buf first, final;
    char err[256] = "";
    int rc;

    memcpy(server_first, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST));
    memcpy(server_first + strlen(RFC_SERVER_FIRST), tail, sizeof tail);
    memcpy(server_final, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL));
    memcpy(server_final + strlen(RFC_SERVER_FINAL), tail, sizeof tail);

    pgc_buf_init(&first);
    pgc_buf_init(&final);
    rc = start_exchange(&s, 'n', NULL, 0, "user", &first, err);
    if (rc == 0)
        rc = pgc_scram_client_final(&s, server_first,
                                    strlen(RFC_SERVER_FIRST), &final,
                                    err, sizeof err);
    if (rc == 0)
        rc = pgc_scram_verify_final(&s, server_final,
                                    strlen(RFC_SERVER_FINAL),
                                    err, sizeof err);
    check(rc == 0 && buf_equals(&final, RFC_CLIENT_FINAL),
          "reads server messages by length, ignoring bytes past it");
    if (rc != 0)
        printf("#   err: %s\n", err);

    pgc_scram_free(&s);
    pgc_buf_free(&first);
    pgc_buf_free(&final);
}

/* ------------------------------------------------------------------ */
/* client-first-message                                                */
/* ------------------------------------------------------------------ */

static void test_client_first(void)
{
    pgc_scram s, t;
    pgc_buf a, b;
    char err[256] = "";
    const char *nonce;
    size_t i, n;
    int rc, ok;

    pgc_buf_init(&a);
    pgc_buf_init(&b);

    rc = start_exchange(&s, 'n', NULL, 0, NULL, &a, err);
    check(rc == 0 && buf_equals(&a, "n,,n=,r=" RFC_NONCE),
          "sends an empty user name by default");
    pgc_scram_free(&s);
    pgc_buf_clear(&a);

    rc = start_exchange(&s, 'n', NULL, 0, "a=b,c", &a, err);
    check(rc == 0 && buf_equals(&a, "n,,n=a=3Db=2Cc,r=" RFC_NONCE),
          "escapes '=' and ',' in the user name");
    pgc_scram_free(&s);
    pgc_buf_clear(&a);

    rc = pgc_scram_init(&s, "pencil", 'n', NULL, 0, err, sizeof err);
    if (rc == 0)
        rc = pgc_scram_client_first(&s, &a, err, sizeof err);
    ok = rc == 0 && buf_starts_with(&a, "n,,n=,r=");
    n = ok ? pgc_buf_len(&a) - 8 : 0;
    nonce = pgc_buf_head(&a) + 8;
    ok = ok && n == 24;
    for (i = 0; ok && i < n; i++)
        ok = strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                    "0123456789+/", nonce[i]) != NULL;
    check(ok, "makes a random nonce of 18 bytes in base64");
    if (!ok)
        show_buf("client-first", &a);

    rc = pgc_scram_init(&t, "pencil", 'n', NULL, 0, err, sizeof err);
    if (rc == 0)
        rc = pgc_scram_client_first(&t, &b, err, sizeof err);
    check(rc == 0 && pgc_buf_len(&a) == pgc_buf_len(&b) &&
          memcmp(pgc_buf_head(&a), pgc_buf_head(&b), pgc_buf_len(&a)) != 0,
          "makes a different nonce for each exchange");
    pgc_scram_free(&s);
    pgc_scram_free(&t);

    pgc_buf_clear(&a);
    pgc_buf_append(&a, "XY", 2);
    rc = start_exchange(&s, 'n', NULL, 0, NULL, &a, err);
    check(rc == 0 && buf_equals(&a, "XYn,,n=,r=" RFC_NONCE),
          "appends to what the output buffer already holds");
    pgc_scram_free(&s);

    pgc_buf_free(&a);
    pgc_buf_free(&b);
}

/* ------------------------------------------------------------------ */
/* channel binding                                                     */
/* ------------------------------------------------------------------ */

/*
 * The expected c= value for flag 'p' with the bytes 0x00..0x1f, from
 *   (printf 'p=tls-server-end-point,,'; printf '\x00\x01...\x1f') | base64
 */
#define CBIND_P_VALUE \
    "cD10bHMtc2VydmVyLWVuZC1wb2ludCwsAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBka" \
    "GxwdHh8="

static void test_channel_binding(void)
{
    unsigned char hash[32];
    pgc_scram s;
    pgc_buf first, final;
    char err[256] = "";
    size_t i;
    int rc;

    for (i = 0; i < sizeof hash; i++)
        hash[i] = (unsigned char)i;
    pgc_buf_init(&first);
    pgc_buf_init(&final);

    rc = start_exchange(&s, 'p', hash, sizeof hash, NULL, &first, err);
    check(rc == 0 && buf_equals(&first, "p=tls-server-end-point,,n=,r="
                                RFC_NONCE),
          "starts with the tls-server-end-point header for flag 'p'");
    if (rc == 0)
        rc = pgc_scram_client_final(&s, RFC_SERVER_FIRST,
                                    strlen(RFC_SERVER_FIRST), &final,
                                    err, sizeof err);
    check(rc == 0 && buf_starts_with(&final, "c=" CBIND_P_VALUE ",r="
                                     RFC_SERVER_NONCE ",p="),
          "sends the header and certificate hash in c= for flag 'p'");
    if (rc != 0)
        printf("#   err: %s\n", err);
    pgc_scram_free(&s);
    pgc_buf_clear(&first);
    pgc_buf_clear(&final);

    /* printf 'y,,' | base64  ->  eSws */
    rc = start_exchange(&s, 'y', NULL, 0, NULL, &first, err);
    if (rc == 0)
        rc = pgc_scram_client_final(&s, RFC_SERVER_FIRST,
                                    strlen(RFC_SERVER_FIRST), &final,
                                    err, sizeof err);
    check(rc == 0 && buf_starts_with(&first, "y,,n=,r=") &&
          buf_starts_with(&final, "c=eSws,r="),
          "sends y,, for a client that supports channel binding");
    pgc_scram_free(&s);

    rc = pgc_scram_init(&s, "pencil", 'p', NULL, 0, err, sizeof err);
    check_error(rc, err, "certificate hash",
                "refuses flag 'p' without a certificate hash");
    pgc_scram_free(&s);

    rc = pgc_scram_init(&s, "pencil", 'n', hash, sizeof hash,
                        err, sizeof err);
    check_error(rc, err, "channel binding data given",
                "refuses channel binding data with flag 'n'");
    pgc_scram_free(&s);

    rc = pgc_scram_init(&s, "pencil", 'x', NULL, 0, err, sizeof err);
    check_error(rc, err, "invalid channel binding flag",
                "refuses an unknown channel binding flag");
    pgc_scram_free(&s);

    pgc_buf_free(&first);
    pgc_buf_free(&final);
}

/* ------------------------------------------------------------------ */
/* server-first-message rejections                                     */
/* ------------------------------------------------------------------ */

/* One malformed or hostile server-first-message and the error wanted. */
typedef struct bad_first {
    const char *message;
    const char *error;
    const char *description;
} bad_first;

static const bad_first bad_firsts[] = {
    { "r=someoneelse%hvYDpWUa2RaTCAfuxFIlj,s=" RFC_SALT ",i=4096",
      "does not extend the client nonce",
      "rejects a server nonce that does not extend the client nonce" },
    { "r=" RFC_NONCE ",s=" RFC_SALT ",i=4096",
      "does not extend the client nonce",
      "rejects a server nonce equal to the client nonce" },
    { "r=" RFC_NONCE "ab cd,s=" RFC_SALT ",i=4096",
      "invalid character in the nonce",
      "rejects a server nonce with a space in it" },
    { "r=" RFC_SERVER_NONCE ",i=4096", "missing salt",
      "rejects a server-first-message without s=" },
    { "r=" RFC_SERVER_NONCE ",s=" RFC_SALT, "missing iteration count",
      "rejects a server-first-message without i=" },
    { "s=" RFC_SALT ",i=4096", "missing nonce",
      "rejects a server-first-message without r=" },
    { "r=" RFC_SERVER_NONCE ",s=,i=4096", "empty salt",
      "rejects an empty salt" },
    { "r=" RFC_SERVER_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096",
      "invalid base64 in the salt",
      "rejects a salt whose base64 length is not a multiple of 4" },
    { "r=" RFC_SERVER_NONCE ",s=W22ZaJ0S*Y7soEsUEjb6gQ==,i=4096",
      "invalid base64 in the salt",
      "rejects a salt with a character outside the base64 alphabet" },
    { "r=" RFC_SERVER_NONCE ",s=W22ZaJ0SNY7soEsUEj=6gQ==,i=4096",
      "invalid base64 in the salt",
      "rejects a salt with padding in the middle" },
    { "r=" RFC_SERVER_NONCE ",s=W22ZaJ0SNY7soEsUEjb6gR==,i=4096",
      "invalid base64 in the salt",
      "rejects a salt with non-zero bits in the padding" },
    { "r=" RFC_SERVER_NONCE ",s=" RFC_SALT ",i=0",
      "iteration count 0 is invalid",
      "rejects an iteration count of 0" },
    { "r=" RFC_SERVER_NONCE ",s=" RFC_SALT ",i=10000001",
      "exceeds the limit of 10000000",
      "rejects an iteration count above the limit" },
    { "r=" RFC_SERVER_NONCE ",s=" RFC_SALT ",i=99999999999999999999999",
      "exceeds the limit",
      "rejects an iteration count that would overflow" },
    { "r=" RFC_SERVER_NONCE ",s=" RFC_SALT ",i=-1", "is not a number",
      "rejects a negative iteration count" },
    { "r=" RFC_SERVER_NONCE ",s=" RFC_SALT ",i=40a6", "is not a number",
      "rejects an iteration count with a letter in it" },
    { "r=" RFC_SERVER_NONCE ",s=" RFC_SALT ",i=", "empty iteration count",
      "rejects an empty iteration count" },
    { "r=" RFC_SERVER_NONCE ",s=" RFC_SALT ",i=4096,", "unexpected data",
      "rejects a trailing comma after the iteration count" },
    { "r=" RFC_SERVER_NONCE ",s=" RFC_SALT ",i=4096 junk",
      "is not a number",
      "rejects junk after the iteration count" },
    { "m=ext,r=" RFC_SERVER_NONCE ",s=" RFC_SALT ",i=4096",
      "mandatory extension",
      "rejects a mandatory extension it does not know" },
    { "", "empty server-first-message",
      "rejects an empty server-first-message" },
};

static void test_bad_server_first(void)
{
    static const char with_nul[] = "r=" RFC_SERVER_NONCE "\0,s=" RFC_SALT
                                   ",i=4096";
    pgc_scram s;
    pgc_buf first, final;
    char err[256];
    size_t i;
    int rc;

    pgc_buf_init(&first);
    pgc_buf_init(&final);
    for (i = 0; i < sizeof bad_firsts / sizeof bad_firsts[0]; i++) {
        const bad_first *t = &bad_firsts[i];

        err[0] = '\0';
        pgc_buf_clear(&first);
        rc = final_for(&s, t->message, &first, &final, err);
        check_error(rc, err, t->error, t->description);
        if (pgc_buf_len(&final) != 0)
            printf("#   output left behind after a failure\n");
        pgc_scram_free(&s);
    }

    err[0] = '\0';
    pgc_buf_clear(&first);
    rc = start_exchange(&s, 'n', NULL, 0, "user", &first, err);
    if (rc == 0)
        rc = pgc_scram_client_final(&s, with_nul, sizeof with_nul - 1,
                                    &final, err, sizeof err);
    check_error(rc, err, "NUL byte",
                "rejects a server-first-message with a NUL byte in it");
    pgc_scram_free(&s);

    err[0] = '\0';
    pgc_buf_clear(&first);
    pgc_buf_clear(&final);
    pgc_buf_append(&final, "keep", 4);
    rc = final_for(&s, "r=" RFC_SERVER_NONCE ",i=4096", &first, &final,
                   err);
    check(rc == -1 && buf_equals(&final, "keep"),
          "leaves the output buffer as it was when it fails");
    rc = pgc_scram_verify_final(&s, RFC_SERVER_FINAL,
                                strlen(RFC_SERVER_FINAL), err, sizeof err);
    check_error(rc, err, "already failed",
                "refuses to go on after a failed step");
    pgc_scram_free(&s);

    err[0] = '\0';
    pgc_buf_clear(&first);
    pgc_buf_clear(&final);
    rc = final_for(&s, RFC_SERVER_FIRST ",x=an extension", &first, &final,
                   err);
    check(rc == 0, "ignores an extension after the iteration count");
    pgc_scram_free(&s);

    pgc_buf_free(&first);
    pgc_buf_free(&final);
}

/* ------------------------------------------------------------------ */
/* server-final-message                                                */
/* ------------------------------------------------------------------ */

/* Runs an RFC exchange up to client-final, then verifies msg. */
static int verify_for(const char *msg, size_t len, char *err)
{
    pgc_scram s;
    pgc_buf first, final;
    int rc;

    pgc_buf_init(&first);
    pgc_buf_init(&final);
    rc = final_for(&s, RFC_SERVER_FIRST, &first, &final, err);
    if (rc == 0)
        rc = pgc_scram_verify_final(&s, msg, len, err, 256);
    pgc_scram_free(&s);
    pgc_buf_free(&first);
    pgc_buf_free(&final);
    return rc;
}

static void test_server_final(void)
{
    static const char wrong[] =
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5=";
    static const char flipped[] =
        "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    static const char short_sig[] = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5n";
    static const char bad_b64[] =
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4*";
    static const char error[] = "e=invalid-proof";
    static const char error_ctl[] = "e=bad\nnews";
    char err[256];

    err[0] = '\0';
    check_error(verify_for(flipped, strlen(flipped), err), err,
                "server signature mismatch",
                "rejects a wrong server signature");

    err[0] = '\0';
    check_error(verify_for(wrong, strlen(wrong), err), err,
                "invalid base64",
                "rejects a signature with non-zero padding bits");

    err[0] = '\0';
    check_error(verify_for(short_sig, strlen(short_sig), err), err,
                "not 32",
                "rejects a server signature of the wrong length");

    err[0] = '\0';
    check_error(verify_for(bad_b64, strlen(bad_b64), err), err,
                "invalid base64",
                "rejects a server signature that is not base64");

    err[0] = '\0';
    check_error(verify_for(error, strlen(error), err), err,
                "server reported an error: invalid-proof",
                "reports the server's e= error text");

    err[0] = '\0';
    check_error(verify_for(error_ctl, strlen(error_ctl), err), err,
                "bad?news",
                "masks control characters in the server's error text");

    err[0] = '\0';
    check_error(verify_for("x=1", 3, err), err, "missing server signature",
                "rejects a server-final-message without v= or e=");

    err[0] = '\0';
    check_error(verify_for(RFC_SERVER_FINAL "junk",
                           strlen(RFC_SERVER_FINAL "junk"), err), err,
                "invalid base64",
                "rejects junk after the server signature");
}

/* ------------------------------------------------------------------ */
/* state handling                                                      */
/* ------------------------------------------------------------------ */

static void test_state(void)
{
    static const unsigned char zero[sizeof(pgc_scram)];
    pgc_scram s;
    pgc_buf out;
    char err[256] = "";
    int rc;

    pgc_buf_init(&out);

    rc = pgc_scram_init(&s, "", 'n', NULL, 0, err, sizeof err);
    check_error(rc, err, "no password", "refuses an empty password");
    rc = pgc_scram_client_first(&s, &out, err, sizeof err);
    check_error(rc, err, "not initialised",
                "refuses to build messages after a failed init");
    pgc_scram_free(&s);

    rc = pgc_scram_init(&s, "pencil", 'n', NULL, 0, err, sizeof err);
    rc = rc == 0 ? pgc_scram_client_final(&s, RFC_SERVER_FIRST,
                                          strlen(RFC_SERVER_FIRST), &out,
                                          err, sizeof err) : rc;
    check_error(rc, err, "out of order",
                "refuses client-final before client-first");

    check(pgc_scram_test_set_nonce(&s, "a,b") == -1,
          "refuses a test nonce containing ','");
    check(pgc_scram_test_set_nonce(&s, "") == -1,
          "refuses an empty test nonce");

    rc = pgc_scram_client_first(&s, &out, err, sizeof err);
    check(rc == 0 && pgc_scram_test_set_nonce(&s, RFC_NONCE) == -1,
          "refuses a test nonce after client-first");
    rc = pgc_scram_set_user(&s, "late", err, sizeof err);
    check_error(rc, err, "out of order",
                "refuses a user name after client-first");

    pgc_scram_free(&s);
    check(memcmp(&s, zero, sizeof s) == 0,
          "wipes the whole state when freed");
    pgc_scram_free(&s);
    check(memcmp(&s, zero, sizeof s) == 0, "can be freed twice");

    pgc_buf_free(&out);
}

/* After a full exchange, the derived keys are wiped by free. */
static void test_free_wipes_keys(void)
{
    static const unsigned char zero[PGC_SHA256_LEN];
    pgc_scram s;
    pgc_buf first, final;
    char err[256] = "";
    int rc, had_keys;

    pgc_buf_init(&first);
    pgc_buf_init(&final);
    rc = final_for(&s, RFC_SERVER_FIRST, &first, &final, err);
    had_keys = rc == 0 &&
               memcmp(s.salted_password, zero, sizeof zero) != 0 &&
               s.password == NULL;
    pgc_scram_free(&s);
    check(had_keys &&
          memcmp(s.salted_password, zero, sizeof zero) == 0 &&
          memcmp(s.server_signature, zero, sizeof zero) == 0,
          "drops the password once used and wipes the keys when freed");
    pgc_buf_free(&first);
    pgc_buf_free(&final);
}

/* ------------------------------------------------------------------ */
/* MD5                                                                 */
/* ------------------------------------------------------------------ */

static void test_md5(void)
{
    static const unsigned char salt1[4] = { 0x01, 0x02, 0x03, 0x04 };
    static const unsigned char salt2[4] = { 0xde, 0xad, 0xbe, 0xef };
    char out[PGC_AUTH_MD5_LEN];
    int rc;

    /*
     * user "postgres", password "secret", salt 01 02 03 04:
     *   inner=$(printf '%s' 'secretpostgres' | md5sum | cut -d' ' -f1)
     *   printf '%s\x01\x02\x03\x04' "$inner" | md5sum
     */
    rc = pgc_auth_md5("postgres", "secret", salt1, out);
    check(rc == 0 && strcmp(out, "md5bb41a296aab6baccb36ff243a562abff") == 0,
          "computes the MD5 password response");

    /*
     * user "alice", password "pa,ss=word", salt de ad be ef:
     *   inner=$(printf '%s' 'pa,ss=wordalice' | md5sum | cut -d' ' -f1)
     *   printf '%s\xde\xad\xbe\xef' "$inner" | md5sum
     */
    rc = pgc_auth_md5("alice", "pa,ss=word", salt2, out);
    check(rc == 0 && strcmp(out, "md5c7d1ebf6659167ea927956120c3db19a") == 0,
          "computes the MD5 response with high salt bytes");

    check(rc == 0 && strlen(out) == PGC_AUTH_MD5_LEN - 1,
          "writes 35 characters and a NUL for MD5");

    rc = pgc_auth_md5(NULL, "secret", salt1, out);
    check(rc == -1 && out[0] == '\0', "refuses MD5 without a user name");
}

int main(void)
{
    test_rfc_exchange();
    test_unterminated_input();
    test_client_first();
    test_channel_binding();
    test_bad_server_first();
    test_server_final();
    test_state();
    test_free_wipes_keys();
    test_md5();

    printf("1..%d\n", checks);
    if (failures > 0) {
        printf("# %d of %d checks failed\n", failures, checks);
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}
