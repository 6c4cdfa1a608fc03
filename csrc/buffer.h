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

/* Appenders: return 0 on success, -1 when memory is exhausted. */
int pgc_buf_append(pgc_buf *b, const void *p, size_t n);
int pgc_buf_append_u8(pgc_buf *b, uint8_t v);
int pgc_buf_append_i16(pgc_buf *b, int16_t v);
int pgc_buf_append_i32(pgc_buf *b, int32_t v);
/* Appends the string and its terminating NUL. */
int pgc_buf_append_cstr(pgc_buf *b, const char *s);

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
