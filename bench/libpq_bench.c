/*
 * libpq_bench.c - the floor of the benchmark: the cases of bench/case.lua
 * done in C with libpq, building no Lua values.
 *
 *   bench/bin/libpq_bench CASE N
 *
 * CASE is one of
 *   read                PQexec of N rows of bench_rows; every value is
 *                       touched (atoi, strlen, strtod)
 *   roundtrip           N sequential PQexecParams("select $1::int") with
 *                       one text parameter
 *   roundtrip-prepared  the same through PQprepare and PQexecPrepared
 *   insert              N rows into bench_ins through PQexecPrepared
 *   insert-batch        the same in one transaction, in pipeline mode
 *
 * The server is PGC_TEST_HOST:PGC_TEST_PORT, database pgtest, user
 * trustuser, without TLS.  Prints one line in the format of case.lua:
 *   seconds=S rss_kb=K base_rss_kb=K heap_kb=0 base_heap_kb=0 count=N
 * Exits 1, with a message on stderr, on any failure or wrong answer.
 * Only libpq and the C library are used.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#define READ_SQL "select id, name, score from bench_rows limit %ld"
#define INSERT_SQL "insert into bench_ins values ($1, $2, $3)"

/* Prints a message and the connection's error, and exits 1. */
static void die(PGconn *conn, const char *what)
{
    fprintf(stderr, "libpq_bench: %s: %s\n", what,
            conn ? PQerrorMessage(conn) : "");
    exit(1);
}

/* The monotonic clock in seconds. */
static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The peak resident size of this process so far in kB (VmHWM), or -1. */
static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* Runs sql that returns no rows; exits on failure. */
static void command(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);

    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        die(conn, sql);
    PQclear(res);
}

/* Prepares sql as the statement named name; exits on failure. */
static void prepare(PGconn *conn, const char *name, const char *sql,
                    int nparams)
{
    PGresult *res = PQprepare(conn, name, sql, nparams, NULL);

    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        die(conn, "PQprepare");
    PQclear(res);
}

/* Fetches n rows and touches every value.  Returns the result, which the
 * caller clears, so that it is alive when the peak size is read. */
static PGresult *bench_read(PGconn *conn, long n)
{
    char sql[128];
    PGresult *res;
    long sum = 0, i, rows;
    size_t chars = 0;
    double total = 0;

    snprintf(sql, sizeof sql, READ_SQL, n);
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        die(conn, "read");
    rows = PQntuples(res);
    for (i = 0; i < rows; i++) {
        sum += atoi(PQgetvalue(res, (int)i, 0));
        chars += strlen(PQgetvalue(res, (int)i, 1));
        total += strtod(PQgetvalue(res, (int)i, 2), NULL);
    }
    if (rows != n || sum <= 0 || chars == 0 || !(total > 0))
        die(NULL, "read: wrong answer");
    return res;
}

/* Checks that res holds the single value i. */
static void check_value(PGconn *conn, PGresult *res, long i)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        die(conn, "roundtrip");
    if (PQntuples(res) != 1 || atol(PQgetvalue(res, 0, 0)) != i)
        die(NULL, "roundtrip: wrong answer");
}

/* n sequential "select $1::int", by PQexecParams or by PQexecPrepared. */
static void bench_roundtrip(PGconn *conn, long n, int prepared)
{
    char value[32];
    const char *params[1] = { value };
    long i;

    for (i = 1; i <= n; i++) {
        PGresult *res;

        snprintf(value, sizeof value, "%ld", i);
        if (prepared)
            res = PQexecPrepared(conn, "roundtrip", 1, params, NULL, NULL,
                                 0);
        else
            res = PQexecParams(conn, "select $1::int", 1, NULL, params,
                               NULL, NULL, 0);
        check_value(conn, res, i);
        PQclear(res);
    }
}

/* n rows into bench_ins through a prepared statement, text parameters. */
static void bench_insert(PGconn *conn, long n)
{
    char id[32], name[48], score[40];
    const char *params[3] = { id, name, score };
    long i;

    for (i = 1; i <= n; i++) {
        PGresult *res;

        snprintf(id, sizeof id, "%ld", i);
        snprintf(name, sizeof name, "name%ld", i);
        snprintf(score, sizeof score, "%.17g", (double)i * 0.5);
        res = PQexecPrepared(conn, "insert", 3, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            die(conn, "insert");
        PQclear(res);
    }
}

/* Rows of one pipeline batch, as pg-client's execute_many sends them. */
#define BATCH 500

/* Reads the results of count queued inserts and the Sync after them. */
static void drain_batch(PGconn *conn, long count)
{
    long i;

    for (i = 0; i < count; i++) {
        PGresult *res = PQgetResult(conn);

        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            die(conn, "insert");
        PQclear(res);
        if (PQgetResult(conn) != NULL)      /* the end of this query */
            die(conn, "insert: more results than expected");
    }
    {
        PGresult *res = PQgetResult(conn);

        if (PQresultStatus(res) != PGRES_PIPELINE_SYNC)
            die(conn, "pipeline sync");
        PQclear(res);
    }
}

/* n rows into bench_ins in one transaction, in pipeline mode: BATCH
 * executions of the prepared statement, then a Sync, per round trip. */
static void bench_insert_batch(PGconn *conn, long n)
{
    char id[32], name[48], score[40];
    const char *params[3] = { id, name, score };
    long i, queued = 0;

    command(conn, "begin");
    if (!PQenterPipelineMode(conn))
        die(conn, "pipeline mode");
    for (i = 1; i <= n; i++) {
        snprintf(id, sizeof id, "%ld", i);
        snprintf(name, sizeof name, "name%ld", i);
        snprintf(score, sizeof score, "%.17g", (double)i * 0.5);
        if (!PQsendQueryPrepared(conn, "insert", 3, params, NULL, NULL, 0))
            die(conn, "send insert");
        if (++queued == BATCH || i == n) {
            if (!PQpipelineSync(conn))
                die(conn, "pipeline sync");
            drain_batch(conn, queued);
            queued = 0;
        }
    }
    if (!PQexitPipelineMode(conn))
        die(conn, "leave pipeline mode");
    command(conn, "commit");
}

int main(int argc, char **argv)
{
    const char *host = getenv("PGC_TEST_HOST");
    const char *port = getenv("PGC_TEST_PORT");
    const char *cs;
    char conninfo[256];
    PGconn *conn;
    PGresult *kept = NULL;
    long n, base_rss, rss;
    double start, seconds;

    if (argc != 3 || (n = strtol(argv[2], NULL, 10)) <= 0) {
        fprintf(stderr, "usage: libpq_bench CASE N\n");
        return 2;
    }
    cs = argv[1];
    if (port == NULL)
        die(NULL, "PGC_TEST_PORT is not set");
    snprintf(conninfo, sizeof conninfo, "dbname=pgtest user=trustuser "
             "host=%s port=%s sslmode=disable", host ? host : "127.0.0.1",
             port);
    conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK)
        die(conn, "connect");

    if (strcmp(cs, "roundtrip-prepared") == 0)
        prepare(conn, "roundtrip", "select $1::int", 1);
    else if (strcmp(cs, "insert") == 0 || strcmp(cs, "insert-batch") == 0) {
        command(conn, "truncate bench_ins");
        prepare(conn, "insert", INSERT_SQL, 3);
    } else if (strcmp(cs, "read") != 0 && strcmp(cs, "roundtrip") != 0)
        die(NULL, "unknown case");

    base_rss = peak_rss_kb();
    start = now();
    if (strcmp(cs, "read") == 0)
        kept = bench_read(conn, n);
    else if (strcmp(cs, "insert") == 0)
        bench_insert(conn, n);
    else if (strcmp(cs, "insert-batch") == 0)
        bench_insert_batch(conn, n);
    else
        bench_roundtrip(conn, n, strcmp(cs, "roundtrip-prepared") == 0);
    seconds = now() - start;
    rss = peak_rss_kb();

    PQclear(kept);
    printf("seconds=%.6f rss_kb=%ld base_rss_kb=%ld heap_kb=0 "
           "base_heap_kb=0 count=%ld\n", seconds, rss, base_rss, n);
    PQfinish(conn);
    return 0;
}
