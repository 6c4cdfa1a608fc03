-- Non-ASCII SCRAM passwords are normalised as the server normalises them
-- when it makes the verifier.
local pg = require "pg"
local H = require "support.helper"

local NFC = "p\u{E4}ssw\u{F6}rd"            -- composed a and o with diaeresis
local NFD = "pa\u{308}sswo\u{308}rd"        -- the same, decomposed
local NBSP = "open\u{A0}sesame"             -- a no-break space

local admin

local function login(user, password)
  return pg.connect(H.config { user = user, password = password, env = false })
end

describe("SCRAM password normalisation", function()
  setup(function()
    admin = assert(pg.connect(H.config { user = "postgres" }))
    assert(admin:query("drop role if exists scram_nfc; drop role if exists scram_nbsp"))
    assert(admin:execute("select 1"))
    assert(admin:query("create role scram_nfc login password '" .. NFC .. "'"))
    assert(admin:query("create role scram_nbsp login password '" .. NBSP .. "'"))
    assert(admin:query("grant connect on database pgtest to scram_nfc, scram_nbsp"))
  end)

  teardown(function()
    admin:query("drop role if exists scram_nfc; drop role if exists scram_nbsp")
    admin:close()
  end)

  it("accepts the password as it was set", function()
    local conn <close> = assert(login("scram_nfc", NFC))
  end)

  it("accepts the decomposed form of a composed password", function()
    local conn <close> = assert(login("scram_nfc", NFD))
  end)

  it("treats a no-break space as a space, as SASLprep does", function()
    local a <close> = assert(login("scram_nbsp", NBSP))
    local b <close> = assert(login("scram_nbsp", "open sesame"))
  end)

  it("still refuses a wrong non-ASCII password", function()
    local conn, err = login("scram_nfc", "p\u{E4}sswort")
    assert.is_nil(conn)
    assert.equal("28P01", err.code)
  end)
end)
