-- The Lua side of persimmon-redis's scripting environment (loaded once per Lua VM by
-- lua_env.py).  The Python callables it receives as arguments stay in local upvalues of
-- this chunk: no script can reach them (the debug library is removed before any script
-- runs), and the binding refuses every attribute access on a Python object anyway.
local pycmd, pysha1, pylog, pyhook, pyrand, pyseed, pysetresp, pyrepl, pyregister,
      pybit, pystruct, pymsgnum, pyjnum, pysource = ...

local real = _G                       -- the real globals: never visible to scripts
local dbg = debug
local sethook, getinfo = dbg.sethook, dbg.getinfo
local rawget, rawset_, type, error, pairs, next, select, tostring, tonumber =
      rawget, rawset, type, error, pairs, next, select, tostring, tonumber
local setmetatable_, getmetatable_ = setmetatable, getmetatable
local sfmt, sbyte, schar, ssub, sfind, srep, concat, floor =
      string.format, string.byte, string.char, string.sub, string.find, string.rep,
      table.concat, math.floor
local huge = math.huge

-- Scripts see only what Redis gives them (V, filled below): no os, io, package, require,
-- loadfile, dofile, print, debug, nor the binding's python table.  The real globals stay
-- as they are for the binding's own use, out of the scripts' reach.
local ALLOWED = {"string", "math", "table", "coroutine", "xpcall", "tostring", "getfenv",
                 "setmetatable", "next", "assert", "tonumber", "rawequal", "collectgarbage",
                 "getmetatable", "rawset", "pcall", "type", "select", "unpack", "gcinfo",
                 "pairs", "rawget", "loadstring", "ipairs", "_VERSION", "setfenv", "load",
                 "error", "newproxy"}
local V = {}

------------------------------------------------------------------ read-only tables
local protected = setmetatable_({}, {__mode = "k"})
local function ro_error() error("Attempt to modify a readonly table", 2) end
local ro_meta_view = {}
setmetatable_(ro_meta_view, {__newindex = ro_error, __metatable = false})
protected[ro_meta_view] = true

local function readonly(t)
    local p = setmetatable_({}, {__index = t, __newindex = ro_error,
                                 __metatable = ro_meta_view})
    protected[p] = true
    return p
end

-- the string metatable is reachable through getmetatable(""): protect it too
do
    local smt = getmetatable_("")
    smt.__metatable = ro_meta_view
end

real.setmetatable = function(t, mt)
    if protected[t] then error("Attempt to modify a readonly table", 2) end
    return setmetatable_(t, mt)
end
real.rawset = function(t, k, v)
    if protected[t] then error("Attempt to modify a readonly table", 2) end
    return rawset_(t, k, v)
end

-- loadstring/load: text chunks only (binary chunks can break the VM), run in the
-- scripts' protected globals
local loadstring_, load_ = loadstring, load
local G                                -- the globals scripts see (set below)
real.loadstring = function(s, name)
    if type(s) == "string" and sbyte(s, 1) == 27 then return nil, "binary chunks are not allowed" end
    local f, e = loadstring_(s, name)
    if f then setfenv(f, G) end
    return f, e
end
real.load = function(fn, name)
    local first = true
    local f, e = load_(function()
        local piece = fn()
        if first and type(piece) == "string" and #piece > 0 then
            first = false
            if sbyte(piece, 1) == 27 then error("binary chunks are not allowed") end
        end
        return piece
    end, name)
    if f then setfenv(f, G) end
    return f, e
end
local getfenv_ = getfenv
real.getfenv = function(f)
    local e = getfenv_(type(f) == "number" and f > 0 and f + 1 or f or 2)
    if e == real or e == _G then return G end
    return e
end
local setfenv_ = setfenv
real.setfenv = function(f, t)
    if f == 0 then error("Attempt to modify a readonly table", 2) end
    return setfenv_(type(f) == "number" and f + 1 or f, t)
end

------------------------------------------------------------------ math.random (rand48)
real.math.random = function(...)
    local r = pyrand()
    local n = select("#", ...)
    if n == 0 then return r end
    if n == 1 then
        local u = floor(tonumber((...)) or error("bad argument #1 to 'random' (number expected)", 2))
        if u < 1 then error("bad argument #1 to 'random' (interval is empty)", 2) end
        return floor(r * u) + 1
    end
    if n == 2 then
        local l, u = ...
        l = floor(tonumber(l) or error("bad argument #1 to 'random' (number expected)", 2))
        u = floor(tonumber(u) or error("bad argument #2 to 'random' (number expected)", 2))
        if l > u then error("bad argument #2 to 'random' (interval is empty)", 2) end
        return floor(r * (u - l + 1)) + l
    end
    error("wrong number of arguments", 2)
end
real.math.randomseed = function(s)
    s = tonumber(s)
    if not s then error("bad argument #1 to 'randomseed' (number expected)", 2) end
    pyseed(s)
end

------------------------------------------------------------------ the redis table
local redis = {}
local function raise(msg) error({err = msg}) end

local function cmd(...)
    local n = select("#", ...)
    if n > 64 then return pycmd("\0many", n, {...}) end -- (the C stack is small)
    return pycmd(...)
end
redis.call = function(...)
    local c, v = cmd(...)
    if c then raise(v) end
    return v
end
redis.pcall = function(...)
    local c, v = cmd(...)
    if c then return {err = v} end
    return v
end
redis.sha1hex = function(...)
    if select("#", ...) ~= 1 then raise("ERR wrong number of arguments") end
    local s = ...
    if type(s) == "number" then s = tostring(s) end
    if type(s) ~= "string" then s = "" end
    return pysha1(s)
end
redis.error_reply = function(...)
    local s = ...
    if select("#", ...) ~= 1 or type(s) ~= "string" then
        raise("ERR wrong number or type of arguments")
    end
    if ssub(s, 1, 1) == "-" then s = ssub(s, 2) end
    if not sfind(s, " ", 1, true) then s = "ERR " .. s end -- (as luaPushErrorBuff would)
    return {err = s}
end
redis.status_reply = function(...)
    local s = ...
    if select("#", ...) ~= 1 or type(s) ~= "string" then
        raise("ERR wrong number or type of arguments")
    end
    return {ok = s}
end
redis.log = function(...)
    local n = select("#", ...)
    if n < 2 then raise("ERR redis.log() requires two arguments or more.") end
    local level = ...
    if type(level) ~= "number" then raise("ERR First argument must be a number (log level).") end
    if level < 0 or level > 3 then raise("ERR Invalid debug level.") end
    local parts = {}
    for i = 2, n do
        local x = select(i, ...)
        if type(x) == "string" or type(x) == "number" then parts[#parts + 1] = tostring(x) end
    end
    pylog(level, concat(parts, " "))
end
redis.setresp = function(...)
    if select("#", ...) ~= 1 then raise("ERR redis.setresp() requires one argument.") end
    local r = tonumber((...))
    if r ~= 2 and r ~= 3 then raise("ERR RESP version must be 2 or 3.") end
    pysetresp(r)
end
redis.set_repl = function(...)
    if select("#", ...) ~= 1 then raise("ERR redis.set_repl() requires two arguments.") end
    local f = tonumber((...))
    if not f or f < 0 or f > 3 or f ~= floor(f) then
        raise("ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.")
    end
    pyrepl(f)
end
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.acl_check_cmd = function(...)
    local c, v = pycmd("\0acl_check", ...)
    if c then raise(v) end
    return v
end
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3

-- redis.register_function (FUNCTION LOAD only)
local FLAGS = {["no-writes"] = true, ["allow-oom"] = true, ["allow-stale"] = true,
               ["no-cluster"] = true, ["allow-cross-slot-keys"] = true}
local registering = nil                -- the library being loaded: name -> {cb, flags, desc}
redis.register_function = function(...)
    if not registering then
        raise("ERR redis.register_function can only be called on FUNCTION LOAD command")
    end
    local n = select("#", ...)
    local name, cb, desc, flags
    if n == 1 then
        local t = ...
        if type(t) ~= "table" then
            raise("ERR calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).")
        end
        for k, v in pairs(t) do
            if type(k) ~= "string" then
                raise("ERR named argument key given to redis.register_function is not a string")
            end
            local lk = k:lower()
            if lk == "function_name" then
                if type(v) ~= "string" then raise("ERR function_name argument given to redis.register_function must be a string") end
                name = v
            elseif lk == "description" then
                if type(v) ~= "string" then raise("ERR description argument given to redis.register_function must be a string") end
                desc = v
            elseif lk == "callback" then
                if type(v) ~= "function" then raise("ERR callback argument given to redis.register_function must be a function") end
                cb = v
            elseif lk == "flags" then
                if type(v) ~= "table" then raise("ERR flags argument to redis.register_function must be a table representing function flags") end
                flags = {}
                for _, f in ipairs(v) do
                    if type(f) ~= "string" or not FLAGS[f] then raise("ERR unknown flag given") end
                    flags[#flags + 1] = f
                end
            else
                raise("ERR unknown argument given to redis.register_function")
            end
        end
        if not name then raise("ERR redis.register_function must get a function name argument") end
        if not cb then raise("ERR redis.register_function must get a callback argument") end
    elseif n == 2 then
        name, cb = ...
        if type(name) ~= "string" then raise("ERR first argument to redis.register_function must be a string") end
        if type(cb) ~= "function" then raise("ERR second argument to redis.register_function must be a function") end
    else
        raise("ERR wrong number of arguments to redis.register_function")
    end
    local err = pyregister(name, desc or false, concat(flags or {}, ","))
    if err then raise(err) end
    registering[name] = cb
end

------------------------------------------------------------------ bit (Lua BitOp API)
local bit = {}
for _, op in ipairs({"tobit", "bnot", "band", "bor", "bxor", "lshift", "rshift", "arshift",
                     "rol", "ror", "bswap", "tohex"}) do
    bit[op] = function(...)
        local c, v = pybit(op, ...)
        if c then error(v, 2) end
        return v
    end
end

------------------------------------------------------------------ struct
local struct = {}
struct.pack = function(fmt, ...)
    local c, v = pystruct("pack", fmt, ...)
    if c then error(v, 2) end
    return v
end
struct.unpack = function(fmt, s, pos)
    local r = {pystruct("unpack", fmt, s, pos or 1)}
    if r[1] then error(r[2], 2) end
    return select(2, unpack(r, 1, table.maxn(r)))
end
struct.size = function(fmt)
    local c, v = pystruct("size", fmt)
    if c then error(v, 2) end
    return v
end

------------------------------------------------------------------ cjson, cmsgpack
-- (compiled on first use: lua_cjson.lua, lua_cmsgpack.lua)
local function lazy(name, helper)
    local lib = {}
    setmetatable_(lib, {__index = function(t, k)
        setmetatable_(t, nil)
        local f = loadstring_(pysource(name), "=prelude")
        for kk, vv in next, f(helper) do rawset_(t, kk, vv) end
        return rawget(t, k)
    end})
    return lib
end
local cjson = lazy("cjson", pyjnum)
local cmsgpack = lazy("cmsgpack", pymsgnum)

------------------------------------------------------------------ install, protect
for _, name in ipairs(ALLOWED) do V[name] = real[name] end
real = V
real.redis = readonly(redis)
real.bit = readonly(bit)
real.struct = readonly(struct)
real.cjson = readonly(cjson)
real.cmsgpack = readonly(cmsgpack)
for _, lib in ipairs({"string", "math", "table", "coroutine"}) do
    real[lib] = readonly(real[lib])
end
redis.REDIS_VERSION = "7.0.0"
redis.REDIS_VERSION_NUM = 0x00070000

-- Scripts see G: an empty table whose reads fall through to the real globals (a missing
-- one is an error) and whose writes are refused.
G = {}
setmetatable_(real, {__index = function(_, k)
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 0)
end})
setmetatable_(G, {__index = real, __newindex = ro_error, __metatable = ro_meta_view})
protected[G] = true
real._G = G

------------------------------------------------------------------ running
local function handler(err)
    local lvl, i = 2, nil
    while true do
        i = getinfo(lvl, "nSl")
        if not i then break end
        if i.what ~= "C" and i.what ~= "tail" and i.source ~= "=prelude" then break end
        lvl = lvl + 1
    end
    if type(err) ~= "table" then err = {err = "ERR " .. tostring(err)} end
    if i then
        err.source = i.source
        err.line = i.currentline
    end
    return err
end

local killed = false
local function killhook()
    local i = getinfo(2, "S")
    if i and i.source == "=prelude" then return end -- (not in the error handler)
    error({err = "ERR Script killed by user with SCRIPT KILL..."})
end
local function hook()
    if pyhook() then
        killed = true
        sethook(killhook, "l")
        error({err = "ERR Script killed by user with SCRIPT KILL..."})
    end
end

local resp = 2
local function set_resp(r) resp = r end

-- Lua value -> tagged encoding (decoded by lua_env.decode_reply)
local MAXDEPTH = 300
local function enc(v, depth, out)
    local t = type(v)
    if t == "string" then
        out[#out + 1] = "$" .. #v .. ":"
        out[#out + 1] = v
    elseif t == "number" then
        out[#out + 1] = ":" .. sfmt("%.17g", v) .. ";"
    elseif t == "boolean" then
        if resp == 2 then out[#out + 1] = v and ":1;" or "_"
        else out[#out + 1] = v and "#t" or "#f" end
    elseif t == "table" then
        if depth > MAXDEPTH then
            out[#out + 1] = "-27:ERR reached lua stack limit"
            return
        end
        local x = rawget(v, "err")
        if type(x) == "string" then out[#out + 1] = "-" .. #x .. ":" .. x return end
        x = rawget(v, "ok")
        if type(x) == "string" then out[#out + 1] = "+" .. #x .. ":" .. x return end
        x = rawget(v, "double")
        if type(x) == "number" then out[#out + 1] = "," .. sfmt("%.17g", x) .. ";" return end
        x = rawget(v, "big_number")
        if type(x) == "string" then out[#out + 1] = "(" .. #x .. ":" .. x return end
        x = rawget(v, "verbatim_string")
        if type(x) == "table" then
            local f, s = rawget(x, "format"), rawget(x, "string")
            if type(f) == "string" and type(s) == "string" then
                out[#out + 1] = "=" .. #s .. ":" .. ssub(f .. "   ", 1, 3) .. s
                return
            end
        end
        x = rawget(v, "map")
        if type(x) == "table" then
            local mark, n = #out + 1, 0
            out[mark] = ""
            for k, val in next, x do
                enc(k, depth + 1, out)
                enc(val, depth + 1, out)
                n = n + 1
            end
            out[mark] = "%" .. n .. ";"
            return
        end
        x = rawget(v, "set")
        if type(x) == "table" then
            local mark, n = #out + 1, 0
            out[mark] = ""
            for k in next, x do
                enc(k, depth + 1, out)
                n = n + 1
            end
            out[mark] = "~" .. n .. ";"
            return
        end
        local mark, n = #out + 1, 0
        out[mark] = ""
        while true do
            local e = rawget(v, n + 1)
            if e == nil then break end
            n = n + 1
            enc(e, depth + 1, out)
        end
        out[mark] = "*" .. n .. ";"
    else
        out[#out + 1] = "_"
    end
end

-- Run ``fn`` (a compiled script, or a function's callback with (KEYS, ARGV)) and return
-- (kind, payload...): "s"/"n" plain string/number, "x" encoded reply, "E" error
-- (message, source, line).
local function finish(ok, res)
    sethook()
    if killed then
        killed = false
        ok, res = false, {err = "ERR Script killed by user with SCRIPT KILL..."}
    end
    if not ok then
        if type(res) ~= "table" then res = {err = "ERR " .. tostring(res)} end
        local msg = rawget(res, "err")
        if type(msg) ~= "string" then msg = "ERR execution failure" end
        return "E", msg, rawget(res, "source") or false, rawget(res, "line") or false
    end
    local t = type(res)
    if t == "string" then return "s", res end
    if t == "number" then return "n", res end
    local out = {}
    enc(res, 0, out)
    return "x", concat(out)
end

local function split(nkeys, ...)
    local all = {...}
    local keys, argv = {}, {}
    for i = 1, nkeys do keys[i] = all[i] end
    for i = nkeys + 1, select("#", ...) do argv[i - nkeys] = all[i] end
    return keys, argv
end

local HOOK_EVERY = 100000
local internal = {}
internal.compile = function(body, name)
    local f, e = loadstring_(body, name)
    if not f then return false, e end
    setfenv_(f, G)
    return f
end
internal.run_eval = function(fn, hooked, nkeys, ...)
    resp = 2
    local keys, argv = split(nkeys, ...)
    rawset_(real, "KEYS", keys)
    rawset_(real, "ARGV", argv)
    if hooked then sethook(hook, "", HOOK_EVERY) end
    return finish(xpcall(fn, handler))
end
internal.run_function = function(fn, hooked, nkeys, ...)
    resp = 2
    local keys, argv = split(nkeys, ...)
    if hooked then sethook(hook, "", HOOK_EVERY) end
    return finish(xpcall(function() return fn(keys, argv) end, handler))
end
-- Load a library: run its code with register_function enabled; returns the table of
-- name -> callback, or (false, message).
internal.load_library = function(body, budget)
    local f, e = loadstring_(body, "@user_function")
    if not f then return false, "Error compiling function: " .. tostring(e) end
    setfenv_(f, G)
    local lib = {}
    registering = lib
    local count = 0
    sethook(function()
        count = count + 1
        if count > budget then error({err = "ERR FUNCTION LOAD timeout"}) end
    end, "", 100000)
    local ok, res = xpcall(f, handler)
    sethook()
    registering = nil
    if not ok then
        local msg = type(res) == "table" and rawget(res, "err") or tostring(res)
        return false, "Error registering functions: " .. tostring(msg)
    end
    return lib
end
internal.reset = function() sethook() killed = false registering = nil end
internal.set_resp = set_resp
internal.get_resp = function() return resp end
internal.gc_step = function() collectgarbage("step", 50) end
internal.collect = function() collectgarbage("collect") return collectgarbage("count") end
internal.memory = function() return collectgarbage("count") end

return internal
