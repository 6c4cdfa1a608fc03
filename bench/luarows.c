/*
 * luarows.c - what the rows of the bulk read cost as Lua values alone.
 *
 * A Lua module (require "luarows") with one function, build(n): a
 * sequence of n tables { id = integer, name = 32 hexadecimal digits, all
 * different, score = float }, the shape of the bulk read, made from C
 * through the Lua API with no database, no protocol and no parsing.  It
 * is the least any Lua client can spend to hand over those rows, and so
 * tells how much of a client's time the Lua values take.  Built into
 * bench/bin/ by `make bench`; no part of pg-client.
 */
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>

/* A 64-bit mix of x (splitmix64's finaliser): distinct for distinct x. */
static uint64_t mix(uint64_t x)
{
    x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
    return x ^ (x >> 31);
}

/* Writes the 16 hexadecimal digits of v at out. */
static void hex16(char *out, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    int i;

    for (i = 15; i >= 0; i--, v >>= 4)
        out[i] = digits[v & 15];
}

/* build(n) returns the n rows. */
static int rows_build(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1), i;
    char name[32];

    lua_settop(L, 0);
    lua_createtable(L, 0, 0);                       /* 1: the rows */
    lua_pushliteral(L, "id");                       /* 2 */
    lua_pushliteral(L, "name");                     /* 3 */
    lua_pushliteral(L, "score");                    /* 4 */
    for (i = 1; i <= n; i++) {
        uint64_t h = mix((uint64_t)i);

        hex16(name, h);
        hex16(name + 16, mix(h));
        lua_createtable(L, 0, 3);
        lua_pushvalue(L, 2);
        lua_pushinteger(L, i);
        lua_rawset(L, -3);
        lua_pushvalue(L, 3);
        lua_pushlstring(L, name, sizeof name);
        lua_rawset(L, -3);
        lua_pushvalue(L, 4);
        lua_pushnumber(L, (lua_Number)(h >> 11) / 9007199254740992.0 * 1000);
        lua_rawset(L, -3);
        lua_rawseti(L, 1, i);
    }
    lua_settop(L, 1);
    return 1;
}

int luaopen_luarows(lua_State *L)
{
    static const luaL_Reg functions[] = {
        { "build", rows_build },
        { NULL, NULL }
    };

    luaL_newlib(L, functions);
    return 1;
}
