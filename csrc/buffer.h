/*
 * buffer.h - growable byte buffer with start/end offsets.
 *
 * Live bytes are data[start..end).  Readers consume from the front by
 * advancing start; writers append at end.  Before growing, live data is
 * moved to the front.  Uses only the C library.
 */
#ifndef PGC_BUFFER_H
#define PGC_BUFFER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct pgc_buf {
    char *data;
    size_t start;
    size_t end;
    size_t cap;
} pgc_buf;

void pgc_buf_init(pgc_buf *b);
void pgc_buf_free(pgc_buf *b);

/* Bytes available to read. */
#define pgc_buf_len(b) ((b)->end - (b)->start)
/* Pointer to the first live byte. */
#define pgc_buf_head(b) ((b)->data + (b)->start)

/*
 * Make room for at least n more bytes after end.  Returns a pointer to
 * the free space, or NULL when memory is exhausted (the buffer is left
 * as it was).
 */
char *pgc_buf_reserve(pgc_buf *b, size_t n);

/*
 * Appenders: return 0 on success, -1 when memory is exhausted.  They are
 * inline because messages are built from many small pieces; only growing
 * the buffer is a call.
 */
static inline int pgc_buf_append(pgc_buf *b, const void *p, size_t n)
{
    char *w = b->cap - b->end >= n ? b->data + b->end
                                   : pgc_buf_reserve(b, n);

    if (w == NULL)
        return -1;
    if (n > 0)
        memcpy(w, p, n);
    b->end += n;
    return 0;
}

static inline int pgc_buf_append_u8(pgc_buf *b, uint8_t v)
{
    char *w = b->cap - b->end >= 1 ? b->data + b->end
                                   : pgc_buf_reserve(b, 1);

    if (w == NULL)
        return -1;
    w[0] = (char)v;
    b->end += 1;
    return 0;
}

static inline int pgc_buf_append_i16(pgc_buf *b, int16_t v)
{
    uint16_t u = (uint16_t)v;
    unsigned char s[2];

    s[0] = (unsigned char)(u >> 8);
    s[1] = (unsigned char)u;
    return pgc_buf_append(b, s, 2);
}

static inline int pgc_buf_append_i32(pgc_buf *b, int32_t v)
{
    uint32_t u = (uint32_t)v;
    unsigned char s[4];

    s[0] = (unsigned char)(u >> 24);
    s[1] = (unsigned char)(u >> 16);
    s[2] = (unsigned char)(u >> 8);
    s[3] = (unsigned char)u;
    return pgc_buf_append(b, s, 4);
}

/* Appends the string and its terminating NUL. */
static inline int pgc_buf_append_cstr(pgc_buf *b, const char *s)
{
    return pgc_buf_append(b, s, strlen(s) + 1);
}

/* Drops n bytes from the front (n must not exceed the live length). */
void pgc_buf_consume(pgc_buf *b, size_t n);
/* Drops everything. */
void pgc_buf_clear(pgc_buf *b);

/* Writes a big-endian 32-bit value at an absolute offset in data. */
void pgc_buf_put_i32_at(pgc_buf *b, size_t offset, int32_t v);

/* Reads big-endian integers from raw bytes. */
uint16_t pgc_get_u16(const void *p);
uint32_t pgc_get_u32(const void *p);

#endif
