/*
 * binding_values.h - part of the Lua binding: turns column values from
 * DataRow bytes (text or binary format) into Lua values, and Lua values
 * into Bind parameters.  Uses lua.h, protocol.h and buffer.h.
 */
#ifndef PGC_BINDING_VALUES_H
#define PGC_BINDING_VALUES_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "buffer.h"

/* How a column's values become Lua values. */
enum pgc_kind {
    PGC_K_STRING = 0,   /* text as it is */
    PGC_K_INTEGER,      /* int2, int4, int8, oid */
    PGC_K_FLOAT,        /* float4, float8 */
    PGC_K_BOOL,
    PGC_K_BYTEA,        /* raw bytes */
    PGC_K_NUMERIC,      /* exact string, or a number on request */
    PGC_K_JSON,         /* decoded when a JSON decoder is set */
    PGC_K_UUID,         /* canonical lower-case text */
    PGC_K_ARRAY,        /* nested sequence; elem says of what */
    PGC_K_CUSTOM        /* a decoder registered for the type OID */
};

typedef struct pgc_column {
    uint32_t oid;
    unsigned char kind;     /* enum pgc_kind */
    unsigned char elem;     /* element kind of an array */
    unsigned char binary;   /* values arrive in binary format */
    uint32_t elem_oid;
} pgc_column;

/*
 * Where decoding finds what it needs: stack indexes of the JSON decoder
 * function (0 for none) and of the table mapping type OIDs to custom
 * decoders (0 for none), whether numerics become numbers, and a scratch
 * buffer owned by the caller.
 */
typedef struct pgc_decode_env {
    int json_idx;
    int custom_idx;
    int arrays_idx;         /* table: array type OID -> element OID, or 0 */
    int numeric_number;
    int c_decimal_point;    /* the locale's decimal point is '.' */
    pgc_buf *scratch;
} pgc_decode_env;

/* Whether strtod reads '.' as the decimal point in the current locale. */
int pgc_values_c_decimal_point(void);

/* Fills in col for a column of type oid in format (0 text, 1 binary);
 * looks up custom decoders in env. */
void pgc_values_describe(lua_State *L, const pgc_decode_env *env,
                         pgc_column *col, uint32_t oid, int format);

/* Whether values of type oid are asked for in binary format. */
int pgc_values_wants_binary(uint32_t oid);

/* The name of a built-in type, or NULL. */
const char *pgc_values_type_name(uint32_t oid);

/*
 * Pushes the Lua value of one column value (never SQL NULL: the caller
 * handles length -1).  Returns 0, or -1 with a message in err when the
 * bytes are not a valid value of the type or a decoder failed; nothing is
 * pushed then.
 */
int pgc_values_push(lua_State *L, const pgc_decode_env *env,
                    const pgc_column *col, const char *p, size_t len,
                    char *err, size_t errlen);

/*
 * Encodes the Lua value at idx as parameter number position (1-based)
 * for a parameter of type server_oid (0 when the server has not said).
 * Appends the Bind value (Int32 length, then the bytes; -1 for NULL) to
 * values, and sets *oid to the type to declare in Parse and *format to
 * 0 (text) or 1 (binary).  json_encode_idx is the stack index of a JSON
 * encoder function, or 0.  Raises a Lua error naming the position when
 * the value cannot be encoded.
 */
void pgc_values_encode(lua_State *L, int idx, int position,
                       uint32_t server_oid, int json_encode_idx,
                       pgc_buf *values, uint32_t *oid, int *format);

#endif
