-- The LuaRocks rockspec builds and installs the whole module.
local ROCKSPEC = "rockspec/pg-client-scm-1.rockspec"

local function run(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok and code == 0, out
end

local function read_rockspec()
  local env = {}
  assert(loadfile(ROCKSPEC, "t", env))()
  return env
end

describe("the rockspec", function()
  it("lists every Lua module and C source of the tree", function()
    local spec = read_rockspec()
    local listed = {}
    for _, entry in pairs(spec.build.modules) do
      if type(entry) == "string" then
        listed[entry] = true
      else
        for _, src in ipairs(entry.sources) do listed[src] = true end
      end
    end
    for _, pattern in ipairs({ "lua/pg/*.lua", "csrc/*.c" }) do
      local p = io.popen("ls " .. pattern)
      for file in p:lines() do
        assert.is_true(listed[file] == true, file .. " is missing from the rockspec")
      end
      p:close()
    end
  end)

  it("installs with luarocks make, after which require 'pg' works from anywhere", function()
    local tmp = os.tmpname()
    os.remove(tmp)
    assert(os.execute("mkdir -p " .. tmp .. "/src " .. tmp .. "/elsewhere"))
    assert(os.execute("cp -r csrc lua rockspec " .. tmp .. "/src/"))
    local ok, out = run("cd " .. tmp .. "/src && luarocks --lua-version=5.4 make --tree="
                        .. tmp .. "/tree " .. ROCKSPEC)
    assert.is_true(ok, out)
    ok, out = run("cd " .. tmp .. "/elsewhere && LUA_PATH='" .. tmp
                  .. "/tree/share/lua/5.4/?.lua;" .. tmp .. "/tree/share/lua/5.4/?/init.lua' "
                  .. "LUA_CPATH='" .. tmp .. "/tree/lib/lua/5.4/?.so' "
                  .. "lua5.4 -e 'local pg = require \"pg\"; require \"pg.edn\"; "
                  .. "print(pg._VERSION, pg.null == require(\"pg.core\").null)'")
    os.execute("rm -rf " .. tmp)
    assert.is_true(ok, out)
    assert.matches("^pg%-client %S+\ttrue", out)
  end)
end)
