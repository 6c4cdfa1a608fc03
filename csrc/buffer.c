/*
 * buffer.c - growable byte buffer.  See buffer.h.  C library only.
 */
#include "buffer.h"

#include <stdlib.h>
#include <string.h>

void pgc_buf_init(pgc_buf *b)
{
    b->data = NULL;
    b->start = b->end = b->cap = 0;
}

void pgc_buf_free(pgc_buf *b)
{
    free(b->data);
    pgc_buf_init(b);
}

/*
 * Ensures n free bytes after end: first by moving live data to the
 * front, then by doubling the allocation.  Returns the write pointer, or
 * NULL on overflow or when out of memory.
 */
char *pgc_buf_reserve(pgc_buf *b, size_t n)
{
    size_t live = b->end - b->start;
    size_t want, newcap;
    char *p;

    if (b->cap - b->end >= n)
        return b->data + b->end;

    if (b->start > 0) {
        memmove(b->data, b->data + b->start, live);
        b->start = 0;
        b->end = live;
        if (b->cap - b->end >= n)
            return b->data + b->end;
    }

    if (n > SIZE_MAX - live)
        return NULL;
    want = live + n;
    newcap = b->cap ? b->cap : 256;
    while (newcap < want) {
        if (newcap > SIZE_MAX / 2)
            return NULL;
        newcap *= 2;
    }
    p = realloc(b->data, newcap);
    if (p == NULL)
        return NULL;
    b->data = p;
    b->cap = newcap;
    return b->data + b->end;
}

void pgc_buf_consume(pgc_buf *b, size_t n)
{
    b->start += n;
    if (b->start >= b->end)
        b->start = b->end = 0;
}

void pgc_buf_clear(pgc_buf *b)
{
    b->start = b->end = 0;
}

void pgc_buf_put_i32_at(pgc_buf *b, size_t offset, int32_t v)
{
    unsigned char *s = (unsigned char *)b->data + offset;
    uint32_t u = (uint32_t)v;

    s[0] = (unsigned char)(u >> 24);
    s[1] = (unsigned char)(u >> 16);
    s[2] = (unsigned char)(u >> 8);
    s[3] = (unsigned char)u;
}

uint16_t pgc_get_u16(const void *p)
{
    const unsigned char *s = p;

    return (uint16_t)((s[0] << 8) | s[1]);
}

uint32_t pgc_get_u32(const void *p)
{
    const unsigned char *s = p;

    return ((uint32_t)s[0] << 24) | ((uint32_t)s[1] << 16) |
           ((uint32_t)s[2] << 8) | (uint32_t)s[3];
}
