-- Starts the hostile test server (support/hostile_server.lua) in a
-- process of its own, for specs that need a server to misbehave in ways
-- a real PostgreSQL will not.  Needs LuaSocket and a POSIX shell.
--
--   local hostile = require "support.hostile"
--   local srv = hostile.start("answer-N")
--   -- connect to 127.0.0.1:srv.port ...
--   local bytes = srv.received()   -- all the client sent, once it is over
--   srv.stop()
--
-- The server serves one connection and exits by itself within about ten
-- seconds; stop() ends it sooner and removes its files.  Call stop() from
-- a busted finally() so that a failing spec does not leave it behind.

local socket = require "socket"
local H = require "support.helper"

local gettime, sleep = socket.gettime, socket.sleep

local hostile = {}

-- How long start() waits for the port, and received() for the end, in
-- seconds.  The server gives up on its own after 10.
local START_WAIT = 5
local FINISH_WAIT = 12
local POLL = 0.01

local SCRIPT = package.searchpath("support.hostile_server", package.path)
  or "spec/support/hostile_server.lua"

local shell_quote = H.shell_quote

-- Returns the whole content of path, or nil when it cannot be read.
local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("a")
  f:close()
  return data
end

-- Waits until path can be read or seconds pass.  Returns its content, or
-- nil at the time limit.
local function wait_for_file(path, seconds)
  local stop = gettime() + seconds
  repeat
    local data = read_file(path)
    if data then return data end
    sleep(POLL)
  until gettime() >= stop
  return nil
end

-- Starts the server playing scenario with extra arguments (file names for
-- the tls-relay scenarios).  Returns a table with
--   port        the port it listens on
--   received()  waits for the server to finish, then returns every byte
--               the client sent; raises an error if the scenario could
--               not be played (the server's own failure, not the client's)
--   stop()      ends the server if it still runs and removes its files
-- Raises an error when the server does not start.
function hostile.start(scenario, ...)
  local base = os.tmpname()
  local files = {
    base = base,
    port = base .. ".port",
    record = base .. ".rec",
    done = base .. ".rec.done",
    log = base .. ".log",
  }

  local words = { "lua5.4", shell_quote(SCRIPT), shell_quote(scenario),
                  shell_quote(files.port), shell_quote(files.record) }
  for _, extra in ipairs({ ... }) do
    words[#words + 1] = shell_quote(extra)
  end
  local command = table.concat(words, " ")
    .. " </dev/null >" .. shell_quote(files.log) .. " 2>&1 & echo $!"
  local pipe = assert(io.popen(command, "r"))
  local pid = math.tointeger(tonumber(pipe:read("l")))
  pipe:close()
  assert(pid, "could not start the hostile server")

  local srv = {}
  local finished, recorded = false, nil

  -- Removes every file of this server; the names are all known.
  local function remove_files()
    for _, path in pairs(files) do
      os.remove(path)
    end
    os.remove(files.port .. ".tmp")
    os.remove(files.done .. ".tmp")
  end

  function srv.stop()
    if not finished then
      os.execute("kill " .. pid .. " 2>/dev/null")
      finished = true
    end
    remove_files()
  end

  function srv.received()
    if recorded then return recorded end
    local status = wait_for_file(files.done, FINISH_WAIT)
    finished = true
    if status ~= "ok" then
      local log = read_file(files.log) or ""
      error(string.format("hostile server (%s) %s%s", scenario,
                          status and "failed: " .. status or "did not finish",
                          log ~= "" and "\n" .. log or ""), 2)
    end
    recorded = read_file(files.record) or ""
    return recorded
  end

  -- The port file appears once the server listens; a done file first
  -- means it gave up before that.
  local stop = gettime() + START_WAIT
  repeat
    local text = read_file(files.port)
    if text then
      srv.port = math.tointeger(tonumber(text:match("%d+")))
      break
    end
    if read_file(files.done) then break end
    sleep(POLL)
  until gettime() >= stop

  if not srv.port then
    local status = read_file(files.done) or "did not start"
    local log = read_file(files.log) or ""
    srv.stop()
    error(string.format("hostile server (%s): %s\n%s", scenario, status, log), 2)
  end
  return srv
end

return hostile
