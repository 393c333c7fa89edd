-- Loaded on first use of the library by lua_prelude.lua (so that a VM that never needs it
-- does not carry it).  Receives the prelude's helpers; returns the library table.
local pynum = ...
local rawget, type, error, next, select, tostring, tonumber =
      rawget, type, error, next, select, tostring, tonumber
local sfmt, sbyte, schar, ssub, sfind, concat, floor =
      string.format, string.byte, string.char, string.sub, string.find, table.concat, math.floor
local huge = math.huge
------------------------------------------------------------------ cmsgpack
local cmsgpack = {}
local MAXNEST = 16
local function mp_enc(v, depth, out)
    local t = type(v)
    if t == "string" then
        local n = #v
        if n < 32 then out[#out + 1] = schar(0xa0 + n)
        elseif n <= 0xff then out[#out + 1] = schar(0xd9, n)
        elseif n <= 0xffff then out[#out + 1] = schar(0xda, floor(n / 256), n % 256)
        else out[#out + 1] = schar(0xdb, floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256) end
        out[#out + 1] = v
    elseif t == "number" then out[#out + 1] = pynum(v)
    elseif t == "boolean" then out[#out + 1] = v and "\195" or "\194"
    elseif t == "table" and depth < MAXNEST then
        local max, count, isarr = 0, 0, true
        for k in next, v do
            count = count + 1
            if isarr and type(k) == "number" and k > 0 and k == floor(k) then
                if k > max then max = k end
            else
                isarr = false
            end
        end
        if isarr and max ~= count then isarr = false end
        local hdr = function(n, fix, b16, b32)
            if n < 16 then return schar(fix + n) end
            if n <= 0xffff then return schar(b16, floor(n / 256), n % 256) end
            return schar(b32, floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256)
        end
        if isarr then
            out[#out + 1] = hdr(count, 0x90, 0xdc, 0xdd)
            for i = 1, count do mp_enc(rawget(v, i), depth + 1, out) end
        else
            out[#out + 1] = hdr(count, 0x80, 0xde, 0xdf)
            for k, x in next, v do
                mp_enc(k, depth + 1, out)
                mp_enc(x, depth + 1, out)
            end
        end
    else
        out[#out + 1] = "\192"
    end
end
cmsgpack.pack = function(...)
    local n = select("#", ...)
    if n == 0 then error("MessagePack pack needs input.", 2) end
    local out = {}
    for i = 1, n do mp_enc((select(i, ...)), 0, out) end
    return concat(out)
end
local function be(s, i, n)
    local x = 0
    for k = i, i + n - 1 do x = x * 256 + sbyte(s, k) end
    return x
end
local function mp_dec(s, i)
    local c = sbyte(s, i)
    if not c then error("Missing bytes in input.", 0) end
    if c < 0x80 then return c, i + 1 end
    if c >= 0xe0 then return c - 256, i + 1 end
    if c >= 0xa0 and c <= 0xbf then
        local n = c - 0xa0
        if i + n > #s then error("Missing bytes in input.", 0) end
        return ssub(s, i + 1, i + n), i + 1 + n
    end
    local function seq(n, j, kv)
        local t = {}
        for k = 1, n do
            if kv then
                local key, val
                key, j = mp_dec(s, j)
                val, j = mp_dec(s, j)
                if key ~= nil then t[key] = val end
            else
                t[k], j = mp_dec(s, j)
            end
        end
        return t, j
    end
    if c >= 0x90 and c <= 0x9f then return seq(c - 0x90, i + 1, false) end
    if c >= 0x80 and c <= 0x8f then return seq(c - 0x80, i + 1, true) end
    if c == 0xc0 then return nil, i + 1 end
    if c == 0xc2 then return false, i + 1 end
    if c == 0xc3 then return true, i + 1 end
    local function need(n) if i + n > #s then error("Missing bytes in input.", 0) end end
    if c == 0xcc or c == 0xd0 or c == 0xcd or c == 0xd1 or c == 0xce or c == 0xd2
       or c == 0xcf or c == 0xd3 or c == 0xca or c == 0xcb then
        local n = (c == 0xcc or c == 0xd0) and 1 or (c == 0xcd or c == 0xd1) and 2
                  or (c == 0xce or c == 0xd2 or c == 0xca) and 4 or 8
        need(n)
        return pynum(c, ssub(s, i + 1, i + n)), i + 1 + n
    end
    if c == 0xd9 or c == 0xda or c == 0xdb or c == 0xc4 or c == 0xc5 or c == 0xc6 then
        local w = (c == 0xd9 or c == 0xc4) and 1 or (c == 0xda or c == 0xc5) and 2 or 4
        need(w)
        local n = be(s, i + 1, w)
        need(w + n)
        return ssub(s, i + 1 + w, i + w + n), i + 1 + w + n
    end
    if c == 0xdc or c == 0xdd then
        local w = c == 0xdc and 2 or 4
        need(w)
        return seq(be(s, i + 1, w), i + 1 + w, false)
    end
    if c == 0xde or c == 0xdf then
        local w = c == 0xde and 2 or 4
        need(w)
        return seq(be(s, i + 1, w), i + 1 + w, true)
    end
    error("Bad data format in input.", 0)
end
local function mp_unpack(s, limit, offset)
    if type(s) ~= "string" then error("bad argument #1 to 'unpack' (string expected)", 3) end
    local i, out, n = offset + 1, {}, 0
    while i <= #s and (limit == 0 or n < limit) do
        local v
        v, i = mp_dec(s, i)
        n = n + 1
        out[n] = v
    end
    return out, n, i
end
cmsgpack.unpack = function(s)
    local out, n = mp_unpack(s, 0, 0)
    return unpack(out, 1, n)
end
cmsgpack.unpack_limit = function(s, limit, offset)
    local out, n, i = mp_unpack(s, tonumber(limit) or 0, tonumber(offset) or 0)
    return (i > #s) and -1 or (i - 1), unpack(out, 1, n)
end
cmsgpack.unpack_one = function(s, offset)
    return cmsgpack.unpack_limit(s, 1, offset)
end

return cmsgpack
