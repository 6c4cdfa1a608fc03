/*
 * tls_names.c - a test program for the host name rules of csrc/tls.c.
 * Usage: tls_names CERT.pem HOST...  For each HOST it prints one line:
 * "match", "no <message>" or "error <message>".  Calls tls.h only.
 */
#include <stdio.h>
#include <stdlib.h>

#include "tls.h"

/* Reads the whole file at path into a new heap block (caller frees it);
 * returns NULL when it cannot be read. */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data;
    long size;

    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    data = malloc((size_t)size + 1);
    if (data != NULL && fread(data, 1, (size_t)size, f) != (size_t)size) {
        free(data);
        data = NULL;
    }
    fclose(f);
    *len = (size_t)size;
    return data;
}

int main(int argc, char **argv)
{
    char err[PGC_TLS_ERRLEN];
    size_t len = 0;
    char *pem;
    int i;

    if (argc < 3) {
        fprintf(stderr, "usage: %s CERT.pem HOST...\n", argv[0]);
        return 2;
    }
    pem = read_all(argv[1], &len);
    if (pem == NULL) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 2;
    }
    for (i = 2; i < argc; i++) {
        int rc = pgc_tls_pem_names_host(pem, len, argv[i], err, sizeof err);

        if (rc == 1)
            printf("match\n");
        else
            printf("%s %s\n", rc == 0 ? "no" : "error", err);
    }
    free(pem);
    return 0;
}
