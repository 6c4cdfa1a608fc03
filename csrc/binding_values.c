/*
 * binding_values.c - part of the Lua binding: column values to Lua values
 * and Lua values to Bind parameters.  See binding_values.h.  Uses lua.h,
 * lauxlib.h, protocol.h and buffer.h; no I/O.
 */
#include "binding_values.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#define JSON_MT "pg.json"
#define BYTEA_MT "pg.bytea"

/* Deepest array nesting accepted in either direction (PostgreSQL allows
 * six dimensions). */
#define MAX_ARRAY_DEPTH 16

/* ------------------------------------------------------------------ */
/* types                                                               */
/* ------------------------------------------------------------------ */

typedef struct type_info {
    uint32_t oid;
    const char *name;
    unsigned char kind;
    uint32_t elem;          /* element type of an array type, else 0 */
} type_info;

/* The built-in types this client knows by name; arrays list their
 * element type. */
static const type_info types[] = {
    { 16, "bool", PGC_K_BOOL, 0 },
    { 17, "bytea", PGC_K_BYTEA, 0 },
    { 18, "char", PGC_K_STRING, 0 },
    { 19, "name", PGC_K_STRING, 0 },
    { 20, "int8", PGC_K_INTEGER, 0 },
    { 21, "int2", PGC_K_INTEGER, 0 },
    { 23, "int4", PGC_K_INTEGER, 0 },
    { 24, "regproc", PGC_K_STRING, 0 },
    { 25, "text", PGC_K_STRING, 0 },
    { 26, "oid", PGC_K_INTEGER, 0 },
    { 114, "json", PGC_K_JSON, 0 },
    { 142, "xml", PGC_K_STRING, 0 },
    { 199, "_json", PGC_K_ARRAY, 114 },
    { 600, "point", PGC_K_STRING, 0 },
    { 650, "cidr", PGC_K_STRING, 0 },
    { 651, "_cidr", PGC_K_ARRAY, 650 },
    { 700, "float4", PGC_K_FLOAT, 0 },
    { 701, "float8", PGC_K_FLOAT, 0 },
    { 705, "unknown", PGC_K_STRING, 0 },
    { 774, "macaddr8", PGC_K_STRING, 0 },
    { 790, "money", PGC_K_STRING, 0 },
    { 829, "macaddr", PGC_K_STRING, 0 },
    { 869, "inet", PGC_K_STRING, 0 },
    { 1000, "_bool", PGC_K_ARRAY, 16 },
    { 1001, "_bytea", PGC_K_ARRAY, 17 },
    { 1002, "_char", PGC_K_ARRAY, 18 },
    { 1003, "_name", PGC_K_ARRAY, 19 },
    { 1005, "_int2", PGC_K_ARRAY, 21 },
    { 1007, "_int4", PGC_K_ARRAY, 23 },
    { 1009, "_text", PGC_K_ARRAY, 25 },
    { 1014, "_bpchar", PGC_K_ARRAY, 1042 },
    { 1015, "_varchar", PGC_K_ARRAY, 1043 },
    { 1016, "_int8", PGC_K_ARRAY, 20 },
    { 1021, "_float4", PGC_K_ARRAY, 700 },
    { 1022, "_float8", PGC_K_ARRAY, 701 },
    { 1028, "_oid", PGC_K_ARRAY, 26 },
    { 1040, "_macaddr", PGC_K_ARRAY, 829 },
    { 1041, "_inet", PGC_K_ARRAY, 869 },
    { 1042, "bpchar", PGC_K_STRING, 0 },
    { 1043, "varchar", PGC_K_STRING, 0 },
    { 1082, "date", PGC_K_STRING, 0 },
    { 1083, "time", PGC_K_STRING, 0 },
    { 1114, "timestamp", PGC_K_STRING, 0 },
    { 1115, "_timestamp", PGC_K_ARRAY, 1114 },
    { 1182, "_date", PGC_K_ARRAY, 1082 },
    { 1183, "_time", PGC_K_ARRAY, 1083 },
    { 1184, "timestamptz", PGC_K_STRING, 0 },
    { 1185, "_timestamptz", PGC_K_ARRAY, 1184 },
    { 1186, "interval", PGC_K_STRING, 0 },
    { 1187, "_interval", PGC_K_ARRAY, 1186 },
    { 1231, "_numeric", PGC_K_ARRAY, 1700 },
    { 1266, "timetz", PGC_K_STRING, 0 },
    { 1270, "_timetz", PGC_K_ARRAY, 1266 },
    { 1560, "bit", PGC_K_STRING, 0 },
    { 1562, "varbit", PGC_K_STRING, 0 },
    { 1700, "numeric", PGC_K_NUMERIC, 0 },
    { 2205, "regclass", PGC_K_STRING, 0 },
    { 2206, "regtype", PGC_K_STRING, 0 },
    { 2249, "record", PGC_K_STRING, 0 },
    { 2275, "cstring", PGC_K_STRING, 0 },
    { 2278, "void", PGC_K_STRING, 0 },
    { 2950, "uuid", PGC_K_UUID, 0 },
    { 2951, "_uuid", PGC_K_ARRAY, 2950 },
    { 3614, "tsvector", PGC_K_STRING, 0 },
    { 3802, "jsonb", PGC_K_JSON, 0 },
    { 3807, "_jsonb", PGC_K_ARRAY, 3802 },
    { 3904, "int4range", PGC_K_STRING, 0 },
    { 3926, "int8range", PGC_K_STRING, 0 },
    { 4072, "jsonpath", PGC_K_STRING, 0 },
};

static const type_info *find_type(uint32_t oid)
{
    size_t lo = 0, hi = sizeof types / sizeof types[0];

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;

        if (types[mid].oid == oid)
            return &types[mid];
        if (types[mid].oid < oid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *pgc_values_type_name(uint32_t oid)
{
    const type_info *t = find_type(oid);

    return t ? t->name : NULL;
}

/* Whether the custom decoder table (if any) has an entry for oid. */
static int has_custom(lua_State *L, const pgc_decode_env *env, uint32_t oid)
{
    int found;

    if (env->custom_idx == 0)
        return 0;
    found = lua_rawgeti(L, env->custom_idx, (lua_Integer)oid) != LUA_TNIL;
    lua_pop(L, 1);
    return found;
}

void pgc_values_describe(lua_State *L, const pgc_decode_env *env,
                         pgc_column *col, uint32_t oid, int format)
{
    const type_info *t = find_type(oid);

    col->oid = oid;
    col->binary = format == 1;
    col->elem = PGC_K_STRING;
    col->elem_oid = 0;
    if (has_custom(L, env, oid)) {
        col->kind = PGC_K_CUSTOM;
        return;
    }
    col->kind = t ? t->kind : PGC_K_STRING;
    if (t != NULL && t->kind == PGC_K_ARRAY) {
        const type_info *e = find_type(t->elem);

        col->elem_oid = t->elem;
        col->elem = e ? e->kind : PGC_K_STRING;
        if (has_custom(L, env, t->elem))
            col->elem = PGC_K_CUSTOM;
        return;
    }
    if (t == NULL && env->arrays_idx != 0) {
        /* An array type the connection learnt from the catalog: of an
         * enum, an extension type, a domain. */
        lua_Integer elem;

        lua_rawgeti(L, env->arrays_idx, (lua_Integer)oid);
        elem = lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (elem > 0) {
            const type_info *e = find_type((uint32_t)elem);

            col->kind = PGC_K_ARRAY;
            col->elem_oid = (uint32_t)elem;
            col->elem = e ? e->kind : PGC_K_STRING;
            if (has_custom(L, env, (uint32_t)elem))
                col->elem = PGC_K_CUSTOM;
        }
    }
}

int pgc_values_c_decimal_point(void)
{
    const struct lconv *lc = localeconv();

    return lc != NULL && lc->decimal_point != NULL &&
           strcmp(lc->decimal_point, ".") == 0;
}

int pgc_values_wants_binary(uint32_t oid)
{
    switch (oid) {
    case 16: case 17: case 20: case 21: case 23: case 26:
    case 701: case 2950:
        return 1;
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------ */
/* decoding scalars                                                    */
/* ------------------------------------------------------------------ */

/*
 * Parses a decimal integer in text format, exact over the whole 64-bit
 * range.  Returns 0 with *out set, or -1 when p is not such a number.
 */
static int parse_integer(const char *p, size_t len, lua_Integer *out)
{
    unsigned long long v = 0, limit;
    int negative = 0;
    size_t i = 0;

    if (len > 0 && (p[0] == '-' || p[0] == '+')) {
        negative = p[0] == '-';
        i = 1;
    }
    if (i == len)
        return -1;
    limit = negative ? (unsigned long long)LUA_MAXINTEGER + 1
                     : (unsigned long long)LUA_MAXINTEGER;
    for (; i < len; i++) {
        unsigned d = (unsigned)((unsigned char)p[i] - '0');

        if (d > 9 || v > (limit - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (negative)
        *out = v == (unsigned long long)LUA_MAXINTEGER + 1
               ? LUA_MININTEGER : -(lua_Integer)v;
    else
        *out = (lua_Integer)v;
    return 0;
}

/*
 * Parses a decimal ("-12.375", "1e5", "214.63569320608156") without
 * strtod when the result is certain to be the correctly rounded double:
 *   - digits below 2^53 and a power of ten up to 22: both are exact
 *     doubles, and one multiplication or division rounds correctly;
 *   - otherwise, where long double has a 64-bit significand, digits below
 *     2^64 and a power of ten up to 27 are exact long doubles, and the one
 *     operation rounds correctly to long double.  Rounding that on to
 *     double gives the correctly rounded double unless it lies exactly
 *     half-way between two doubles (then the exact value may not), which
 *     is checked.
 * Returns 0 with *out set, or -1 when the text is not of these kinds (the
 * caller then uses strtod).
 */
static int parse_short_decimal(const char *p, size_t len, double *out)
{
    static const double powers[] = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
    };
    const char *end = p + len;
    uint64_t digits = 0;
    int negative = 0, scale = 0, ndigits = 0, exp = 0, exp_negative = 0;
    double v;

    if (p < end && (*p == '-' || *p == '+'))
        negative = *p++ == '-';
    for (; p < end && *p >= '0' && *p <= '9'; p++, ndigits++)
        digits = digits * 10 + (uint64_t)(*p - '0');
    if (p < end && *p == '.') {
        for (p++; p < end && *p >= '0' && *p <= '9'; p++, ndigits++) {
            digits = digits * 10 + (uint64_t)(*p - '0');
            scale--;
        }
    }
    /* 19 digits always fit in 64 bits. */
    if (ndigits == 0 || ndigits > 19)
        return -1;
    if (p < end && (*p == 'e' || *p == 'E')) {
        int expdigits = 0;

        p++;
        if (p < end && (*p == '-' || *p == '+'))
            exp_negative = *p++ == '-';
        for (; p < end && *p >= '0' && *p <= '9' && expdigits < 4;
             p++, expdigits++)
            exp = exp * 10 + (*p - '0');
        if (expdigits == 0)
            return -1;
        scale += exp_negative ? -exp : exp;
    }
    if (p != end)
        return -1;
    if (digits <= (UINT64_C(1) << 53) && scale >= -22 && scale <= 22) {
        v = (double)digits;
        v = scale < 0 ? v / powers[-scale] : v * powers[scale];
    } else {
#if LDBL_MANT_DIG >= 64
        /* Exact: 10^27 is 5^27 * 2^27, and 5^27 needs 63 bits. */
        static const long double lpowers[] = {
            1e0L, 1e1L, 1e2L, 1e3L, 1e4L, 1e5L, 1e6L, 1e7L, 1e8L, 1e9L,
            1e10L, 1e11L, 1e12L, 1e13L, 1e14L, 1e15L, 1e16L, 1e17L, 1e18L,
            1e19L, 1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L
        };
        long double q;

        if (scale < -27 || scale > 27)
            return -1;
        q = (long double)digits;
        q = scale < 0 ? q / lpowers[-scale] : q * lpowers[scale];
        v = (double)q;
        /* Half-way between v and a neighbour: let strtod decide. */
        if (q != (long double)v &&
            2 * fabsl(q - (long double)v) ==
            fabsl((long double)nextafter(v, q > v ? HUGE_VAL : -HUGE_VAL) -
                  (long double)v))
            return -1;
#else
        return -1;
#endif
    }
    *out = negative ? -v : v;
    return 0;
}

/*
 * Pushes a number from text ("1.5", "1e+300", "NaN", "Infinity",
 * "-Infinity").  With as_float, integral text still gives a float.
 * Returns 0, or -1 when p is not a number.
 */
static int push_number_text(lua_State *L, const pgc_decode_env *env,
                            const char *p, size_t len, int as_float)
{
    char text[128];
    double d;

    if (as_float && parse_short_decimal(p, len, &d) == 0) {
        lua_pushnumber(L, (lua_Number)d);
        return 0;
    }
    if (as_float && env->c_decimal_point && len > 0 && len < sizeof text &&
        (p[0] == '-' || (p[0] >= '0' && p[0] <= '9'))) {
        char *end;

        memcpy(text, p, len);
        text[len] = 0;
        d = strtod(text, &end);
        if (end == text + len) {
            lua_pushnumber(L, (lua_Number)d);
            return 0;
        }
    }

    if (len == 3 && memcmp(p, "NaN", 3) == 0) {
        lua_pushnumber(L, (lua_Number)NAN);
        return 0;
    }
    if (len == 8 && memcmp(p, "Infinity", 8) == 0) {
        lua_pushnumber(L, (lua_Number)HUGE_VAL);
        return 0;
    }
    if (len == 9 && memcmp(p, "-Infinity", 9) == 0) {
        lua_pushnumber(L, (lua_Number)-HUGE_VAL);
        return 0;
    }
    if (len == 0 || len >= sizeof text)
        return -1;
    memcpy(text, p, len);
    text[len] = 0;
    /* lua_stringtonumber follows Lua's own rules, whatever the locale. */
    if (lua_stringtonumber(L, text) == 0)
        return -1;
    if (as_float && lua_isinteger(L, -1)) {
        lua_Number n = (lua_Number)lua_tointeger(L, -1);

        if (n == 0 && text[0] == '-')
            n = -n;     /* "-0" keeps its sign */
        lua_pop(L, 1);
        lua_pushnumber(L, n);
    }
    return 0;
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Pushes the bytes of a bytea in text format: hex ("\x0a1b") or the
 * older escape format (backslash octal).  Uses scratch.  Returns 0 or -1.
 */
static int push_bytea_text(lua_State *L, pgc_buf *scratch, const char *p,
                           size_t len)
{
    size_t i;
    char *w;

    pgc_buf_clear(scratch);
    if (pgc_buf_reserve(scratch, len + 1) == NULL)
        return -1;
    w = scratch->data;
    if (len >= 2 && p[0] == '\\' && p[1] == 'x') {
        if ((len - 2) % 2 != 0)
            return -1;
        for (i = 2; i < len; i += 2) {
            int hi = hex_value((unsigned char)p[i]);
            int lo = hex_value((unsigned char)p[i + 1]);

            if (hi < 0 || lo < 0)
                return -1;
            *w++ = (char)(hi << 4 | lo);
        }
    } else {
        for (i = 0; i < len; i++) {
            if (p[i] != '\\') {
                *w++ = p[i];
            } else if (i + 1 < len && p[i + 1] == '\\') {
                *w++ = '\\';
                i++;
            } else if (i + 3 < len &&
                       p[i + 1] >= '0' && p[i + 1] <= '3' &&
                       p[i + 2] >= '0' && p[i + 2] <= '7' &&
                       p[i + 3] >= '0' && p[i + 3] <= '7') {
                *w++ = (char)((p[i + 1] - '0') << 6 | (p[i + 2] - '0') << 3 |
                              (p[i + 3] - '0'));
                i += 3;
            } else {
                return -1;
            }
        }
    }
    lua_pushlstring(L, scratch->data, (size_t)(w - scratch->data));
    return 0;
}

/* Pushes a binary uuid (16 bytes) as canonical lower-case text. */
static void push_uuid_binary(lua_State *L, const unsigned char *u)
{
    static const char digits[] = "0123456789abcdef";
    char text[36];
    int i, j = 0;

    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            text[j++] = '-';
        text[j++] = digits[u[i] >> 4];
        text[j++] = digits[u[i] & 15];
    }
    lua_pushlstring(L, text, sizeof text);
}

/* Pushes a binary int2/int4/int8, or an oid (unsigned).  Returns 0, or
 * -1 on a bad length. */
static int push_integer_binary(lua_State *L, const char *p, size_t len,
                               int is_unsigned)
{
    uint64_t v = 0;
    size_t i;

    if (len != 2 && len != 4 && len != 8)
        return -1;
    for (i = 0; i < len; i++)
        v = v << 8 | (unsigned char)p[i];
    if (len == 2)
        lua_pushinteger(L, (int16_t)v);
    else if (len == 4 && is_unsigned)
        lua_pushinteger(L, (lua_Integer)(uint32_t)v);
    else if (len == 4)
        lua_pushinteger(L, (int32_t)v);
    else
        lua_pushinteger(L, (lua_Integer)(int64_t)v);
    return 0;
}

/* Pushes a binary float4/float8.  Returns 0, or -1 on a bad length. */
static int push_float_binary(lua_State *L, const char *p, size_t len)
{
    if (len == 4) {
        uint32_t u = pgc_get_u32(p);
        float f;

        memcpy(&f, &u, sizeof f);
        lua_pushnumber(L, (lua_Number)f);
        return 0;
    }
    if (len == 8) {
        uint64_t u = (uint64_t)pgc_get_u32(p) << 32 | pgc_get_u32(p + 4);
        double d;

        memcpy(&d, &u, sizeof d);
        lua_pushnumber(L, (lua_Number)d);
        return 0;
    }
    return -1;
}

/* Calls the function at fn_idx with the text; pushes its result (nil
 * becomes pg.null).  Returns 0, or -1 with the error text in err. */
static int call_decoder(lua_State *L, int fn_idx, const char *p, size_t len,
                        char *err, size_t errlen)
{
    lua_pushvalue(L, fn_idx);
    lua_pushlstring(L, p, len);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);

        snprintf(err, errlen, "%s", msg ? msg : "decoder raised an error");
        lua_pop(L, 1);
        return -1;
    }
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushlightuserdata(L, NULL);
    }
    return 0;
}

/* Pushes a custom-decoded value: the decoder for oid is in the table at
 * env->custom_idx. */
static int push_custom(lua_State *L, const pgc_decode_env *env,
                       uint32_t oid, const char *p, size_t len,
                       char *err, size_t errlen)
{
    int rc;

    lua_rawgeti(L, env->custom_idx, (lua_Integer)oid);
    rc = call_decoder(L, lua_gettop(L), p, len, err, errlen);
    lua_remove(L, rc == 0 ? -2 : -1);
    return rc;
}

/* Pushes one text-format scalar of the given kind. */
static int push_text_scalar(lua_State *L, const pgc_decode_env *env,
                            int kind, uint32_t oid, const char *p,
                            size_t len, char *err, size_t errlen)
{
    lua_Integer i;

    switch (kind) {
    case PGC_K_INTEGER:
        if (parse_integer(p, len, &i) < 0)
            break;
        lua_pushinteger(L, i);
        return 0;
    case PGC_K_FLOAT:
        if (push_number_text(L, env, p, len, 1) < 0)
            break;
        return 0;
    case PGC_K_BOOL:
        if (len != 1 || (p[0] != 't' && p[0] != 'f'))
            break;
        lua_pushboolean(L, p[0] == 't');
        return 0;
    case PGC_K_BYTEA:
        if (push_bytea_text(L, env->scratch, p, len) < 0)
            break;
        return 0;
    case PGC_K_NUMERIC:
        if (env->numeric_number) {
            if (push_number_text(L, env, p, len, 0) < 0)
                break;
            return 0;
        }
        lua_pushlstring(L, p, len);
        return 0;
    case PGC_K_JSON:
        if (env->json_idx != 0)
            return call_decoder(L, env->json_idx, p, len, err, errlen);
        lua_pushlstring(L, p, len);
        return 0;
    case PGC_K_CUSTOM:
        return push_custom(L, env, oid, p, len, err, errlen);
    default:
        lua_pushlstring(L, p, len);
        return 0;
    }
    snprintf(err, errlen, "invalid value for type %s",
             pgc_values_type_name(oid) ? pgc_values_type_name(oid) : "?");
    return -1;
}

/* ------------------------------------------------------------------ */
/* decoding arrays                                                     */
/* ------------------------------------------------------------------ */

typedef struct array_cursor {
    const char *p;
    const char *end;
} array_cursor;

/*
 * Parses one brace-enclosed level of a text-format array at the cursor
 * and pushes it as a sequence table.  Elements are decoded with the
 * column's element kind; unquoted NULL is pg.null.  Returns 0, or -1 with
 * err set (nothing pushed).
 */
static int parse_array_level(lua_State *L, const pgc_decode_env *env,
                             const pgc_column *col, array_cursor *c,
                             int depth, char *err, size_t errlen)
{
    lua_Integer n = 0;
    int top = lua_gettop(L);

    if (depth > MAX_ARRAY_DEPTH || !lua_checkstack(L, 8))
        goto bad;
    if (c->p >= c->end || *c->p != '{')
        goto bad;
    c->p++;
    lua_newtable(L);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return 0;
    }

    for (;;) {
        if (c->p >= c->end)
            goto bad;
        if (*c->p == '{') {
            if (parse_array_level(L, env, col, c, depth + 1, err,
                                  errlen) < 0)
                goto fail;
        } else if (*c->p == '"') {
            pgc_buf *s = env->scratch;
            const char *start;

            c->p++;
            pgc_buf_clear(s);
            for (;;) {
                start = c->p;
                while (c->p < c->end && *c->p != '"' && *c->p != '\\')
                    c->p++;
                if (pgc_buf_append(s, start, (size_t)(c->p - start)) < 0)
                    goto bad;
                if (c->p >= c->end)
                    goto bad;
                if (*c->p == '"')
                    break;
                if (++c->p >= c->end || pgc_buf_append(s, c->p, 1) < 0)
                    goto bad;
                c->p++;
            }
            c->p++;
            {
                /* The element's decoder may reuse scratch: copy first. */
                size_t len = pgc_buf_len(s);

                lua_pushlstring(L, pgc_buf_head(s), len);
                if (col->elem != PGC_K_STRING) {
                    size_t l2;
                    const char *q = lua_tolstring(L, -1, &l2);

                    if (push_text_scalar(L, env, col->elem, col->elem_oid,
                                         q, l2, err, errlen) < 0)
                        goto fail;
                    lua_remove(L, -2);
                }
            }
        } else {
            const char *start = c->p;
            size_t len;

            while (c->p < c->end && *c->p != ',' && *c->p != '}')
                c->p++;
            len = (size_t)(c->p - start);
            if (len == 4 && strncasecmp(start, "NULL", 4) == 0)
                lua_pushlightuserdata(L, NULL);
            else if (push_text_scalar(L, env, col->elem, col->elem_oid,
                                      start, len, err, errlen) < 0)
                goto fail;
        }
        lua_rawseti(L, top + 1, ++n);

        if (c->p >= c->end)
            goto bad;
        if (*c->p == '}') {
            c->p++;
            return 0;
        }
        if (*c->p != ',')
            goto bad;
        c->p++;
    }

bad:
    snprintf(err, errlen, "malformed array value");
fail:
    lua_settop(L, top);
    return -1;
}

/* Pushes a text-format array, skipping any "[1:2]=" bounds prefix. */
static int push_array_text(lua_State *L, const pgc_decode_env *env,
                           const pgc_column *col, const char *p, size_t len,
                           char *err, size_t errlen)
{
    array_cursor c;

    c.p = p;
    c.end = p + len;
    if (len > 0 && p[0] == '[') {
        const char *eq = memchr(p, '=', len);

        if (eq == NULL) {
            snprintf(err, errlen, "malformed array value");
            return -1;
        }
        c.p = eq + 1;
    }
    if (parse_array_level(L, env, col, &c, 1, err, errlen) < 0)
        return -1;
    if (c.p != c.end) {
        lua_pop(L, 1);
        snprintf(err, errlen, "malformed array value");
        return -1;
    }
    return 0;
}

int pgc_values_push(lua_State *L, const pgc_decode_env *env,
                    const pgc_column *col, const char *p, size_t len,
                    char *err, size_t errlen)
{
    if (col->binary) {
        int rc;

        switch (col->kind) {
        case PGC_K_INTEGER:
            rc = push_integer_binary(L, p, len, col->oid == 26);
            break;
        case PGC_K_FLOAT:
            rc = push_float_binary(L, p, len);
            break;
        case PGC_K_BOOL:
            rc = len == 1 ? (lua_pushboolean(L, p[0] != 0), 0) : -1;
            break;
        case PGC_K_UUID:
            rc = len == 16
                 ? (push_uuid_binary(L, (const unsigned char *)p), 0) : -1;
            break;
        default:
            lua_pushlstring(L, p, len);
            rc = 0;
        }
        if (rc < 0)
            snprintf(err, errlen, "invalid binary value for type %s",
                     pgc_values_type_name(col->oid));
        return rc;
    }
    if (col->kind == PGC_K_ARRAY)
        return push_array_text(L, env, col, p, len, err, errlen);
    return push_text_scalar(L, env, col->kind, col->oid, p, len, err,
                            errlen);
}

/* ------------------------------------------------------------------ */
/* encoding parameters                                                 */
/* ------------------------------------------------------------------ */

/* What an array's leaves were, to choose its declared type. */
enum { LEAF_INT = 1, LEAF_FLOAT = 2, LEAF_BOOL = 4, LEAF_OTHER = 8 };

/* Raises when out of memory while encoding. */
static void check_mem(lua_State *L, int rc)
{
    if (rc < 0)
        luaL_error(L, "out of memory");
}

/* Whether the value at idx is a table with the named metatable. */
static int has_mt(lua_State *L, int idx, const char *mt)
{
    int same;

    if (!lua_getmetatable(L, idx))
        return 0;
    luaL_getmetatable(L, mt);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return same;
}

/* Appends a float as PostgreSQL reads it. */
static void append_float(lua_State *L, pgc_buf *out, lua_Number n)
{
    char text[64];

    if (n != n)
        snprintf(text, sizeof text, "NaN");
    else if (isinf(n))
        snprintf(text, sizeof text, n > 0 ? "Infinity" : "-Infinity");
    else
        snprintf(text, sizeof text, "%.17g", (double)n);
    check_mem(L, pgc_buf_append(out, text, strlen(text)));
}

static void append_integer(lua_State *L, pgc_buf *out, lua_Integer i)
{
    char text[32];

    snprintf(text, sizeof text, LUA_INTEGER_FMT, i);
    check_mem(L, pgc_buf_append(out, text, strlen(text)));
}

/* Appends bytes as bytea hex text ("\x..."). */
static void append_bytea_hex(lua_State *L, pgc_buf *out, const char *p,
                             size_t len)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    check_mem(L, pgc_buf_append(out, "\\x", 2));
    for (i = 0; i < len; i++) {
        char pair[2];

        pair[0] = digits[(unsigned char)p[i] >> 4];
        pair[1] = digits[(unsigned char)p[i] & 15];
        check_mem(L, pgc_buf_append(out, pair, 2));
    }
}

/*
 * Appends the JSON text of the pg.json wrapper at idx: a string is taken
 * as JSON text already; anything else goes through the JSON encoder.
 */
static void append_json(lua_State *L, int idx, int position,
                        int json_encode_idx, pgc_buf *out)
{
    size_t len;
    const char *text;

    lua_getfield(L, idx, "value");
    if (lua_type(L, -1) != LUA_TSTRING) {
        if (json_encode_idx == 0)
            luaL_error(L, "parameter $%d: pg.json needs lua-cjson to "
                       "encode a %s", position, luaL_typename(L, -1));
        lua_pushvalue(L, json_encode_idx);
        lua_insert(L, -2);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK)
            luaL_error(L, "parameter $%d: cannot encode as JSON: %s",
                       position, lua_tostring(L, -1));
    }
    text = lua_tolstring(L, -1, &len);
    if (text == NULL)
        luaL_error(L, "parameter $%d: JSON encoder returned no string",
                   position);
    check_mem(L, pgc_buf_append(out, text, len));
    lua_pop(L, 1);
}

/* Appends a quoted array element. */
static void append_quoted(lua_State *L, pgc_buf *out, const char *p,
                          size_t len)
{
    size_t i;

    check_mem(L, pgc_buf_append_u8(out, '"'));
    for (i = 0; i < len; i++) {
        if (p[i] == '"' || p[i] == '\\')
            check_mem(L, pgc_buf_append_u8(out, '\\'));
        check_mem(L, pgc_buf_append_u8(out, (uint8_t)p[i]));
    }
    check_mem(L, pgc_buf_append_u8(out, '"'));
}

/* Checks that the table at idx is a sequence 1..n; returns n. */
static lua_Integer sequence_length(lua_State *L, int idx, int position)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;

    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 ||
            lua_tointeger(L, -1) > n)
            luaL_error(L, "parameter $%d: a table parameter must be a "
                       "sequence (an array); wrap other tables in pg.json",
                       position);
        count++;
    }
    if (count != n)
        luaL_error(L, "parameter $%d: a table parameter must be a "
                   "sequence (an array); wrap other tables in pg.json",
                   position);
    return n;
}

/*
 * The shape of an array parameter seen so far.  A PostgreSQL array is
 * rectangular: the sub-arrays at one depth have one length, values stand
 * at one depth only, and only the whole array may be empty.
 */
typedef struct array_shape {
    lua_Integer len[MAX_ARRAY_DEPTH + 1];   /* at each depth; -1: unseen */
    int leaf_depth;                         /* where values stand; 0: unseen */
    int leaves;                             /* LEAF_* of the values */
} array_shape;

static void init_shape(array_shape *shape)
{
    int d;

    for (d = 0; d <= MAX_ARRAY_DEPTH; d++)
        shape->len[d] = -1;
    shape->leaf_depth = 0;
    shape->leaves = 0;
}

static void not_rectangular(lua_State *L, int position)
{
    luaL_error(L, "parameter $%d: not a PostgreSQL array: sub-arrays must "
               "all have the same length and hold values at the same depth, "
               "and only the whole array may be empty", position);
}

/* Notes an element at depth that is a sub-array (or a value). */
static void shape_element(lua_State *L, array_shape *shape, int depth,
                          int sub, int position)
{
    if (sub ? shape->leaf_depth != 0 && shape->leaf_depth <= depth
            : shape->leaf_depth != 0 && shape->leaf_depth != depth)
        not_rectangular(L, position);
    if (!sub)
        shape->leaf_depth = depth;
}

/* Appends the array literal for the sequence at idx; ORs into
 * shape->leaves what its elements were. */
static void append_array(lua_State *L, int idx, int position, int depth,
                         int json_encode_idx, pgc_buf *out,
                         array_shape *shape)
{
    lua_Integer n, i;
    int *leaves = &shape->leaves;

    if (depth > MAX_ARRAY_DEPTH)
        luaL_error(L, "parameter $%d: array nested too deeply", position);
    luaL_checkstack(L, 8, "array parameter");
    idx = lua_absindex(L, idx);
    n = sequence_length(L, idx, position);
    if ((n == 0 && depth > 1) ||
        (shape->len[depth] != -1 && shape->len[depth] != n))
        not_rectangular(L, position);
    shape->len[depth] = n;
    check_mem(L, pgc_buf_append_u8(out, '{'));
    for (i = 1; i <= n; i++) {
        int t = lua_rawgeti(L, idx, i);
        size_t len;
        const char *s;

        if (i > 1)
            check_mem(L, pgc_buf_append_u8(out, ','));
        shape_element(L, shape, depth, t == LUA_TTABLE &&
                      !has_mt(L, -1, JSON_MT) && !has_mt(L, -1, BYTEA_MT),
                      position);
        if (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) == NULL) {
            check_mem(L, pgc_buf_append(out, "NULL", 4));
        } else if (t == LUA_TBOOLEAN) {
            check_mem(L, pgc_buf_append_u8(out,
                                           lua_toboolean(L, -1) ? 't' : 'f'));
            *leaves |= LEAF_BOOL;
        } else if (t == LUA_TNUMBER && lua_isinteger(L, -1)) {
            append_integer(L, out, lua_tointeger(L, -1));
            *leaves |= LEAF_INT;
        } else if (t == LUA_TNUMBER) {
            append_float(L, out, lua_tonumber(L, -1));
            *leaves |= LEAF_FLOAT;
        } else if (t == LUA_TSTRING) {
            s = lua_tolstring(L, -1, &len);
            append_quoted(L, out, s, len);
            *leaves |= LEAF_OTHER;
        } else if (t == LUA_TTABLE && has_mt(L, -1, JSON_MT)) {
            lua_getfield(L, -1, "value");
            if (lua_type(L, -1) != LUA_TSTRING) {
                lua_pop(L, 1);
                if (json_encode_idx == 0)
                    luaL_error(L, "parameter $%d: pg.json needs lua-cjson",
                               position);
                lua_pushvalue(L, json_encode_idx);
                lua_getfield(L, -2, "value");
                if (lua_pcall(L, 1, 1, 0) != LUA_OK)
                    luaL_error(L, "parameter $%d: cannot encode as JSON: %s",
                               position, lua_tostring(L, -1));
            }
            s = lua_tolstring(L, -1, &len);
            append_quoted(L, out, s ? s : "null", s ? len : 4);
            lua_pop(L, 1);
            *leaves |= LEAF_OTHER;
        } else if (t == LUA_TTABLE && has_mt(L, -1, BYTEA_MT)) {
            lua_getfield(L, -1, "value");
            s = lua_tolstring(L, -1, &len);
            /* quote, and a backslash escaping the one of "\x" */
            check_mem(L, pgc_buf_append(out, "\"\\", 2));
            append_bytea_hex(L, out, s ? s : "", s ? len : 0);
            check_mem(L, pgc_buf_append_u8(out, '"'));
            lua_pop(L, 1);
            *leaves |= LEAF_OTHER;
        } else if (t == LUA_TTABLE) {
            append_array(L, -1, position, depth + 1, json_encode_idx, out,
                         shape);
        } else {
            luaL_error(L, "parameter $%d: cannot encode a %s inside an "
                       "array", position, luaL_typename(L, -1));
        }
        lua_pop(L, 1);
    }
    check_mem(L, pgc_buf_append_u8(out, '}'));
}

/* Appends an Int32 length placeholder; returns its offset. */
static size_t begin_value(lua_State *L, pgc_buf *values)
{
    size_t at = values->end;

    check_mem(L, pgc_buf_append_i32(values, 0));
    return at;
}

static void end_value(pgc_buf *values, size_t at)
{
    pgc_buf_put_i32_at(values, at, (int32_t)(values->end - at - 4));
}

/* Appends a big-endian integer of width bytes. */
static void append_be(lua_State *L, pgc_buf *out, uint64_t v, int width)
{
    unsigned char b[8];
    int i;

    for (i = width - 1; i >= 0; i--) {
        b[i] = (unsigned char)v;
        v >>= 8;
    }
    check_mem(L, pgc_buf_append(out, b, (size_t)width));
}

/*
 * Encodes an integer for a parameter whose type is an integer type of
 * the given width, in binary, checking the range.
 */
static void encode_int_binary(lua_State *L, pgc_buf *values, lua_Integer v,
                              int width, int position, const char *type)
{
    size_t at;

    if ((width == 2 && (v < INT16_MIN || v > INT16_MAX)) ||
        (width == 4 && (v < INT32_MIN || v > INT32_MAX)))
        luaL_error(L, "parameter $%d: %I is out of range for %s", position,
                   v, type);
    at = begin_value(L, values);
    append_be(L, values, (uint64_t)v, width);
    end_value(values, at);
}

static void encode_float_binary(lua_State *L, pgc_buf *values,
                                lua_Number n, int width)
{
    size_t at = begin_value(L, values);

    if (width == 4) {
        float f = (float)n;
        uint32_t u;

        memcpy(&u, &f, sizeof u);
        append_be(L, values, u, 4);
    } else {
        double d = (double)n;
        uint64_t u;

        memcpy(&u, &d, sizeof u);
        append_be(L, values, u, 8);
    }
    end_value(values, at);
}

/*
 * Encodes for a parameter whose type the server described.  Returns 1
 * when the value was written (binary), 0 when the generic text encoding
 * should be used.
 */
static int encode_for_type(lua_State *L, int idx, int position,
                           uint32_t oid, pgc_buf *values)
{
    int t = lua_type(L, idx);
    int width = oid == 21 ? 2 : oid == 23 ? 4 : 8;
    size_t at, len;
    const char *s;

    switch (oid) {
    case 20: case 21: case 23:
        if (t == LUA_TNUMBER) {
            lua_Integer v = 0;

            if (!lua_isinteger(L, idx)) {
                lua_Number n = lua_tonumber(L, idx);

                if (n != floor(n) || !lua_numbertointeger(n, &v))
                    luaL_error(L, "parameter $%d: %f is not an integer",
                               position, (double)n);
            } else {
                v = lua_tointeger(L, idx);
            }
            encode_int_binary(L, values, v, width, position,
                              pgc_values_type_name(oid));
            return 1;
        }
        return 0;
    case 700: case 701:
        if (t == LUA_TNUMBER) {
            encode_float_binary(L, values, lua_tonumber(L, idx),
                                oid == 700 ? 4 : 8);
            return 1;
        }
        return 0;
    case 16:
        if (t == LUA_TBOOLEAN) {
            at = begin_value(L, values);
            check_mem(L, pgc_buf_append_u8(values,
                                           (uint8_t)lua_toboolean(L, idx)));
            end_value(values, at);
            return 1;
        }
        return 0;
    case 17:
        if (t == LUA_TSTRING) {
            s = lua_tolstring(L, idx, &len);
            at = begin_value(L, values);
            check_mem(L, pgc_buf_append(values, s, len));
            end_value(values, at);
            return 1;
        }
        return 0;
    default:
        return 0;
    }
}

void pgc_values_encode(lua_State *L, int idx, int position,
                       uint32_t server_oid, int json_encode_idx,
                       pgc_buf *values, uint32_t *oid, int *format)
{
    int t = lua_type(L, idx);
    size_t at, len;
    const char *s;

    idx = lua_absindex(L, idx);
    *oid = server_oid;
    *format = 0;

    if (t == LUA_TNIL ||
        (t == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL)) {
        check_mem(L, pgc_buf_append_i32(values, -1));
        return;
    }
    if (server_oid != 0 && encode_for_type(L, idx, position, server_oid,
                                           values)) {
        *format = 1;
        return;
    }

    at = begin_value(L, values);
    switch (t) {
    case LUA_TBOOLEAN:
        if (server_oid == 0) {
            *oid = 16;
            *format = 1;
            check_mem(L, pgc_buf_append_u8(values,
                                           (uint8_t)lua_toboolean(L, idx)));
        } else {
            check_mem(L, pgc_buf_append_u8(values,
                                           lua_toboolean(L, idx) ? 't'
                                                                 : 'f'));
        }
        break;
    case LUA_TNUMBER:
        if (server_oid == 0 && lua_isinteger(L, idx)) {
            *oid = 20;
            *format = 1;
            append_be(L, values, (uint64_t)lua_tointeger(L, idx), 8);
        } else if (server_oid == 0) {
            double d = (double)lua_tonumber(L, idx);
            uint64_t u;

            *oid = 701;
            *format = 1;
            memcpy(&u, &d, sizeof u);
            append_be(L, values, u, 8);
        } else if (lua_isinteger(L, idx)) {
            append_integer(L, values, lua_tointeger(L, idx));
        } else {
            append_float(L, values, lua_tonumber(L, idx));
        }
        break;
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &len);
        check_mem(L, pgc_buf_append(values, s, len));
        break;
    case LUA_TTABLE:
        if (has_mt(L, idx, JSON_MT)) {
            if (server_oid == 0)
                *oid = 114;
            append_json(L, idx, position, json_encode_idx, values);
        } else if (has_mt(L, idx, BYTEA_MT)) {
            lua_getfield(L, idx, "value");
            s = lua_tolstring(L, -1, &len);
            if (s == NULL)
                luaL_error(L, "parameter $%d: pg.bytea needs a string",
                           position);
            if (server_oid == 0 || server_oid == 17) {
                *oid = 17;
                *format = 1;
                check_mem(L, pgc_buf_append(values, s, len));
            } else {
                append_bytea_hex(L, values, s, len);
            }
            lua_pop(L, 1);
        } else {
            array_shape shape;
            int leaves;

            init_shape(&shape);
            append_array(L, idx, position, 1, json_encode_idx, values,
                         &shape);
            leaves = shape.leaves;
            if (server_oid == 0)
                *oid = leaves == LEAF_INT ? 1016
                     : (leaves & ~(LEAF_INT | LEAF_FLOAT)) == 0 &&
                       (leaves & LEAF_FLOAT) ? 1022
                     : leaves == LEAF_BOOL ? 1000 : 0;
        }
        break;
    default:
        luaL_error(L, "parameter $%d: cannot encode a %s", position,
                   luaL_typename(L, idx));
    }
    end_value(values, at);
}
