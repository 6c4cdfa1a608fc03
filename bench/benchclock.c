/*
 * benchclock.c - the monotonic clock for the Lua side of the benchmark.
 *
 * A Lua module (require "benchclock") with one function, now(), the
 * seconds of CLOCK_MONOTONIC as a float.  LuaSocket's gettime reads the
 * wall clock, which may be stepped while a case runs; this one is not.
 * Built into bench/bin/ by `make bench`; no part of pg-client.
 */
#include <time.h>

#include <lua.h>
#include <lauxlib.h>

/* now() returns the monotonic clock in seconds. */
static int clock_now(lua_State *L)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return luaL_error(L, "clock_gettime(CLOCK_MONOTONIC) failed");
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

int luaopen_benchclock(lua_State *L)
{
    static const luaL_Reg functions[] = {
        { "now", clock_now },
        { NULL, NULL }
    };

    luaL_newlib(L, functions);
    return 1;
}
