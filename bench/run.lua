-- run.lua - runs every measurement of the benchmark and prints the table.
--
--   lua5.4 bench/run.lua
--
-- bench/run.sh calls this once the server runs and holds the data: with
-- PGC_TEST_HOST and PGC_TEST_PORT set, bench/bin/ built, from the top of
-- the work tree.  Each measurement is a new process (bench/case.lua for
-- the Lua clients, bench/bin/libpq_bench for the C floor), so no client
-- inherits another's heap.  The runs of a case alternate between the
-- clients, starting with a different one each time.  PGC_BENCH_RUNS
-- (default 5) sets the number of runs; the 1,000,000-row read does at most
-- 3.  Exits 1 when a measurement failed; a missed target is reported, and
-- does not change the exit status.

local string_format = string.format

local RUNS = math.tointeger(tonumber(os.getenv("PGC_BENCH_RUNS") or "5")) or 5

-- The commands of each client line.
local function lua_case(client, case)
  return function(n)
    return string_format("lua5.4 bench/case.lua %s %s %d", client, case, n)
  end
end

local function c_case(case)
  return function(n) return string_format("bench/bin/libpq_bench %s %d", case, n) end
end

-- A group is one case at one size: its lines (one client each), the
-- runs it does and where the client runs (see placed).  A line is
-- compared with the line "luasql" and with its floor, "libpq" unless it
-- names another.
local function read_lines()
  return {
    { id = "pg", name = "pg-client conn:query", cmd = lua_case("pgclient", "read") },
    { id = "pgx", name = "pg-client conn:execute", cmd = lua_case("pgclient", "read-execute") },
    { id = "luasql", name = "LuaSQL", cmd = lua_case("luasql", "read") },
    { id = "libpq", name = "libpq C, PQexec", cmd = c_case("read") },
    { id = "rows", name = "Lua rows alone, no db", cmd = lua_case("luarows", "read") },
  }
end

local groups = {
  { title = "bulk read", n = 100000, units = "rows", runs = RUNS, place = "apart",
    lines = read_lines() },
  { title = "bulk read", n = 1000000, units = "rows", runs = math.min(RUNS, 3), place = "apart",
    lines = read_lines() },
  { title = "round trips", n = 10000, units = "queries", runs = RUNS, place = "together",
    lines = {
      { id = "pg", name = "pg-client conn:execute", cmd = lua_case("pgclient", "roundtrip") },
      { id = "pgp", name = "pg-client stmt:execute", floor = "libpqp",
        cmd = lua_case("pgclient", "roundtrip-prepared") },
      { id = "luasql", name = "LuaSQL, value inlined", cmd = lua_case("luasql", "roundtrip") },
      { id = "libpq", name = "libpq C, PQexecParams", cmd = c_case("roundtrip") },
      { id = "libpqp", name = "libpq C, PQexecPrepared", floor = "libpqp",
        cmd = c_case("roundtrip-prepared") },
    } },
  { title = "inserts", n = 100000, units = "rows", runs = RUNS, place = "together",
    lines = {
      { id = "pg", name = "pg-client stmt:execute", cmd = lua_case("pgclient", "insert") },
      { id = "luasql", name = "LuaSQL, one INSERT each", cmd = lua_case("luasql", "insert") },
      { id = "libpq", name = "libpq C, PQexecPrepared", cmd = c_case("insert") },
    } },
  { title = "inserts in one transaction", n = 100000, units = "rows", runs = RUNS,
    place = "together",
    lines = {
      { id = "pg", name = "pg-client stmt:execute_many",
        cmd = lua_case("pgclient", "insert-batch") },
      { id = "luasql", name = "LuaSQL, one INSERT each", cmd = lua_case("luasql", "insert-batch") },
      { id = "libpq", name = "libpq C, pipeline mode", cmd = c_case("insert-batch") },
    } },
}

-- What must hold, as pg-client's line against another line of a group.
local targets = {
  { group = 1, line = "pg", versus = "luasql", faster = 2 },
  { group = 1, line = "pg", versus = "libpq", within = 1.5 },
  { group = 2, line = "pg", versus = "luasql", faster = 2 },
  { group = 2, line = "pg", versus = "libpq", within = 1.5 },
  { group = 3, line = "pg", versus = "libpq", within = 1.1 },
  { group = 3, line = "pgp", versus = "libpqp", within = 1.1 },
  { group = 5, line = "pg", versus = "luasql", faster = 1.5 },
}

-- The same comparisons for lines no target names, for information: the
-- other pg-client calls, and libpq itself against the LuaSQL targets.
local informative = {
  { group = 1, line = "pgx", versus = "luasql", faster = 2 },
  { group = 1, line = "pgx", versus = "libpq", within = 1.5 },
  { group = 2, line = "pgx", versus = "luasql", faster = 2 },
  { group = 2, line = "pgx", versus = "libpq", within = 1.5 },
  { group = 1, line = "libpq", versus = "luasql", faster = 2 },
  { group = 2, line = "libpq", versus = "luasql", faster = 2 },
  { group = 1, line = "rows", versus = "libpq", within = 1.5 },
  { group = 2, line = "rows", versus = "libpq", within = 1.5 },
  { group = 4, line = "libpq", versus = "luasql", faster = 1.5 },
}

---------------------------------------------------------------------------
-- running
---------------------------------------------------------------------------

-- The CPUs bench/run.sh pinned the server to and left for the client
-- when it pinned; a group's "place" is "together" (the client on the
-- server's CPU) or "apart".
local SERVER_CPU = os.getenv("PGC_BENCH_SERVER_CPU") or ""
local OTHER_CPU = os.getenv("PGC_BENCH_OTHER_CPU") or ""

local function placed(command, place)
  if SERVER_CPU == "" or OTHER_CPU == "" then return command end
  return string_format("taskset -c %s %s", place == "together" and SERVER_CPU or OTHER_CPU,
                       command)
end

-- Runs one measurement.  Returns its fields (seconds, rss_kb, ...), or
-- nil and what went wrong.
local function measure(command)
  local p = assert(io.popen(command, "r"))
  local out = p:read("a")
  local ok, how, code = p:close()
  if not ok then
    return nil, string_format("%s: %s %s", command, tostring(how), tostring(code))
  end
  local fields = {}
  for key, value in out:gmatch("(%w[%w_]*)=(%S+)") do fields[key] = tonumber(value) end
  if not fields.seconds then return nil, command .. ": no result in " .. out end
  return fields
end

-- The median of a sequence of numbers (nil for an empty one).
local function median(values)
  local sorted = {}
  for i, v in ipairs(values) do sorted[i] = v end
  table.sort(sorted)
  local k = #sorted
  if k == 0 then return nil end
  if k % 2 == 1 then return sorted[(k + 1) // 2] end
  return (sorted[k // 2] + sorted[k // 2 + 1]) / 2
end

local failures = 0

-- Runs the measurements of group g and keeps, per line, the runs, the
-- median time and peak size, and the sizes of the last run.
local function run_group(g)
  for _, line in ipairs(g.lines) do line.runs = {} end
  io.stderr:write(string_format("bench: %s, %d %s, %d runs", g.title, g.n, g.units, g.runs))
  for r = 1, g.runs do
    local k = #g.lines
    for j = 0, k - 1 do
      local line = g.lines[(r - 1 + j) % k + 1]
      local fields, err = measure(placed(line.cmd(g.n), g.place))
      if fields then
        line.runs[#line.runs + 1] = fields
      else
        failures = failures + 1
        io.stderr:write("\nbench: failed: " .. err .. "\n")
      end
    end
    io.stderr:write(".")
  end
  io.stderr:write("\n")
  for _, line in ipairs(g.lines) do
    local seconds, rss = {}, {}
    for i, f in ipairs(line.runs) do seconds[i], rss[i] = f.seconds, f.rss_kb end
    line.seconds = median(seconds)
    line.rss_kb = median(rss)
    local last = line.runs[#line.runs]
    if last then
      line.base_rss_kb, line.heap_kb, line.base_heap_kb = last.base_rss_kb, last.heap_kb,
        last.base_heap_kb
    end
  end
end

---------------------------------------------------------------------------
-- printing
---------------------------------------------------------------------------

local function line_of(g, id)
  for _, line in ipairs(g.lines) do if line.id == id then return line end end
end

-- 1000000 as "1,000,000".
local function thousands(n)
  local s = tostring(n)
  repeat
    local k
    s, k = s:gsub("^(%d+)(%d%d%d)", "%1,%2")
  until k == 0
  return s
end

local function mb(kb) return kb and string_format("%.1f MB", kb / 1024) or "-" end

-- "2.31x faster" for a line that takes less time than the other, else
-- "0.80x (slower)": the other's time over this one's.
local function faster_text(line, other)
  if not (line.seconds and other and other.seconds) then return "-" end
  if line == other then return "" end
  local x = other.seconds / line.seconds
  return string_format(x >= 1 and "%.2fx faster" or "%.2fx (slower)", x)
end

-- "1.21x the floor": this line's time over the floor's.
local function floor_text(line, floor)
  if not (line.seconds and floor and floor.seconds) then return "-" end
  if line == floor then return "the floor" end
  return string_format("%.2fx the floor", line.seconds / floor.seconds)
end

local function print_table()
  local fmt = "%-26s %-25s %9s %9s %10s %-15s %-17s\n"
  io.write(string_format(fmt, "case", "client", "median", "per op", "peak RSS",
                         "vs LuaSQL", "vs libpq C"))
  io.write(string.rep("-", 117), "\n")
  for _, g in ipairs(groups) do
    local luasql = line_of(g, "luasql")
    for i, line in ipairs(g.lines) do
      local title = i == 1 and string_format("%s, %s %s", g.title, thousands(g.n), g.units) or ""
      local floor = line_of(g, line.floor or "libpq")
      local median_text = line.seconds and string_format("%.3f s", line.seconds) or "failed"
      local per_op = line.seconds and string_format("%.2f us", line.seconds / g.n * 1e6) or "-"
      local versus = faster_text(line, luasql)
      io.write(string_format(fmt, title, line.name, median_text, per_op, mb(line.rss_kb),
                             versus, floor_text(line, floor)))
    end
    io.write("\n")
  end
end

-- Prints one comparison as PASS or FAIL.  Returns true when it passed.
local function print_check(t)
  local g = groups[t.group]
  local line, other = line_of(g, t.line), line_of(g, t.versus)
  local what = string_format("%s, %s %s, %s", g.title, thousands(g.n), g.units, line.name)
  local ok, text
  if not (line.seconds and other.seconds) then
    ok, text = false, "no measurement"
  elseif t.faster then
    local x = other.seconds / line.seconds
    ok = x >= t.faster
    text = string_format("%.2fx faster than %s (target: at least %gx)", x, other.name, t.faster)
  else
    local x = line.seconds / other.seconds
    ok = x <= t.within
    text = string_format("%.2fx the time of %s (target: within %gx)", x, other.name, t.within)
  end
  io.write(string_format("  %-4s %s: %s\n", ok and "PASS" or "FAIL", what, text))
  return ok
end

local function print_memory(g)
  io.write(string_format("memory, %s-row read: peak resident size of the process, and what "
                           .. "the rows themselves take\n", thousands(g.n)))
  local fmt = "  %-25s %10s %12s %12s %12s %8s\n"
  io.write(string_format(fmt, "client", "peak RSS", "before read", "Lua rows", "beyond rows",
                         "per row"))
  for _, line in ipairs(g.lines) do
    if line.rss_kb and line.base_rss_kb then
      local rows = (line.heap_kb or 0) - (line.base_heap_kb or 0)
      local beyond = line.rss_kb - line.base_rss_kb - rows
      io.write(string_format(fmt, line.name, mb(line.rss_kb), mb(line.base_rss_kb),
                             line.id:match("^libpq") and "(none)" or mb(rows), mb(beyond),
                             string_format("%.0f B", beyond * 1024 / g.n)))
    end
  end
  io.write("  Lua rows: the Lua heap the result holds after a full collection.  Beyond rows:\n"
             .. "  peak RSS less the size before the read and less the rows: malloc's own\n"
             .. "  overhead per block, garbage not yet collected, receive buffers, and for\n"
             .. "  libpq and LuaSQL the whole PGresult.\n")
end

---------------------------------------------------------------------------
-- main
---------------------------------------------------------------------------

local started = os.time()
for _, g in ipairs(groups) do run_group(g) end

io.write("\n")
io.write(string_format("pg-client benchmark: %s on %s, %s CPUs; server %s on 127.0.0.1 "
                         .. "(TCP, no TLS)\n",
                       os.getenv("PGC_BENCH_SYSTEM") or "?",
                       os.getenv("PGC_BENCH_CPU") or "?", os.getenv("PGC_BENCH_NPROC") or "?",
                       os.getenv("PGC_BENCH_SERVER") or "PostgreSQL"))
io.write(string_format("Medians of %d runs (%d for 1,000,000 rows), each run a new process; "
                         .. "wall time of the measured part only.\n", RUNS, math.min(RUNS, 3)))
if SERVER_CPU ~= "" and OTHER_CPU ~= "" then
  io.write(string_format("Server pinned to CPU %s; clients on CPU %s for the bulk reads, on CPU %s "
                           .. "for round trips and inserts.\n", SERVER_CPU, OTHER_CPU, SERVER_CPU))
else
  io.write("No CPU pinning: round trip times depend on where the scheduler puts the processes.\n")
end
io.write("Absolute times depend on the machine; the ratios are what matters.\n\n")
print_table()
print_memory(groups[2])
io.write("\ntargets\n")
local passed, total = 0, 0
for _, t in ipairs(targets) do
  total = total + 1
  if print_check(t) then passed = passed + 1 end
end
io.write("not a target, for comparison:\n")
for _, t in ipairs(informative) do print_check(t) end
io.write(string_format("\n%d of %d targets met; %d measurements failed; %d s in all\n",
                       passed, total, failures, os.time() - started))
os.exit(failures == 0 and 0 or 1)
