-- Loaded on first use of the library by lua_prelude.lua (so that a VM that never needs it
-- does not carry it).  Receives the prelude's helpers; returns the library table.
local pynum = ...
local rawget, type, error, next, select, tostring, tonumber =
      rawget, type, error, next, select, tostring, tonumber
local sfmt, sbyte, schar, ssub, sfind, concat, floor =
      string.format, string.byte, string.char, string.sub, string.find, table.concat, math.floor
local huge = math.huge
------------------------------------------------------------------ cjson
local cjson = {}
local null = newproxy(false)
cjson.null = null
local enc_max_depth, dec_max_depth, enc_invalid = 1000, 1000, false
local ESC = {['"'] = '\\"', ['\\'] = '\\\\', ['/'] = '\\/', ['\b'] = '\\b', ['\f'] = '\\f',
             ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}
local function jstr(s)
    return '"' .. s:gsub('[%c"\\/]', function(c)
        return ESC[c] or sfmt("\\u%04x", sbyte(c))
    end) .. '"'
end
local function jnum(x)
    if x ~= x or x == huge or x == -huge then
        if not enc_invalid then error("Cannot serialise number: must not be NaN or Inf", 0) end
        if x ~= x then return "nan" end
        return x > 0 and "inf" or "-inf"
    end
    return pynum(x)
end
local function jenc(v, depth, out)
    local t = type(v)
    if t == "string" then out[#out + 1] = jstr(v)
    elseif t == "number" then out[#out + 1] = jnum(v)
    elseif t == "boolean" then out[#out + 1] = v and "true" or "false"
    elseif v == nil or v == null then out[#out + 1] = "null"
    elseif t == "table" then
        depth = depth + 1
        if depth > enc_max_depth then
            error("Cannot serialise, excessive nesting (" .. depth .. ")", 0)
        end
        local max, count, isarr = 0, 0, true
        for k in next, v do
            if type(k) == "number" and k > 0 and k == floor(k) then
                if k > max then max = k end
                count = count + 1
            else
                isarr = false
                break
            end
        end
        if isarr and max > count * 2 and max > 10 then
            error("Cannot serialise table: excessively sparse array", 0)
        end
        if isarr and count > 0 then
            out[#out + 1] = "["
            for i = 1, max do
                if i > 1 then out[#out + 1] = "," end
                jenc(rawget(v, i), depth, out)
            end
            out[#out + 1] = "]"
        else
            if isarr then out[#out + 1] = "{}" return end
            out[#out + 1] = "{"
            local first = true
            for k, x in next, v do
                local tk = type(k)
                if tk ~= "string" and tk ~= "number" then
                    error("Cannot serialise " .. tk .. ": table key must be a number or string", 0)
                end
                if not first then out[#out + 1] = "," end
                first = false
                out[#out + 1] = tk == "string" and jstr(k) or ('"' .. jnum(k) .. '"')
                out[#out + 1] = ":"
                jenc(x, depth, out)
            end
            out[#out + 1] = "}"
        end
    else
        error("Cannot serialise " .. t .. ": type not supported", 0)
    end
end
cjson.encode = function(v)
    local out = {}
    jenc(v, 0, out)
    return concat(out)
end
local function utf8(cp)
    if cp < 0x80 then return schar(cp) end
    if cp < 0x800 then return schar(0xC0 + floor(cp / 64), 0x80 + cp % 64) end
    if cp < 0x10000 then
        return schar(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
    end
    return schar(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64,
                 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
end
local function jerr(msg, pos) error("Expected " .. msg .. " at character " .. pos, 0) end
local jdec
local function skip(s, i) return (sfind(s, "[^ \t\r\n]", i)) or #s + 1 end
local UNESC = {b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/"}
local function jdecstr(s, i)
    local out, j = {}, i + 1
    while true do
        local a, b = sfind(s, '["\\]', j)
        if not a then jerr("string end", i) end
        out[#out + 1] = ssub(s, j, a - 1)
        if ssub(s, a, a) == '"' then return concat(out), a + 1 end
        local e = ssub(s, a + 1, a + 1)
        if e == "u" then
            local hex = ssub(s, a + 2, a + 5)
            local cp = tonumber(hex, 16)
            if not cp or #hex < 4 then jerr("valid unicode escape", a) end
            local nxt = a + 6
            if cp >= 0xD800 and cp <= 0xDBFF and ssub(s, nxt, nxt + 1) == "\\u" then
                local lo = tonumber(ssub(s, nxt + 2, nxt + 5), 16)
                if lo and lo >= 0xDC00 and lo <= 0xDFFF then
                    cp = 0x10000 + (cp - 0xD800) * 1024 + (lo - 0xDC00)
                    nxt = nxt + 6
                end
            end
            out[#out + 1] = utf8(cp)
            j = nxt
        elseif UNESC[e] then
            out[#out + 1] = UNESC[e]
            j = a + 2
        else
            jerr("valid escape", a)
        end
    end
end
jdec = function(s, i, depth)
    i = skip(s, i)
    local c = ssub(s, i, i)
    if c == "{" or c == "[" then
        depth = depth + 1
        if depth > dec_max_depth then
            error("Found too many nested data structures (" .. depth .. ") at character " .. i, 0)
        end
    end
    if c == "{" then
        local t = {}
        i = skip(s, i + 1)
        if ssub(s, i, i) == "}" then return t, i + 1 end
        while true do
            if ssub(s, i, i) ~= '"' then jerr("object key string", i) end
            local k
            k, i = jdecstr(s, i)
            i = skip(s, i)
            if ssub(s, i, i) ~= ":" then jerr("colon", i) end
            local v
            v, i = jdec(s, i + 1, depth)
            t[k] = v
            i = skip(s, i)
            local d = ssub(s, i, i)
            if d == "}" then return t, i + 1 end
            if d ~= "," then jerr("comma or object end", i) end
            i = skip(s, i + 1)
        end
    elseif c == "[" then
        local t, n = {}, 0
        i = skip(s, i + 1)
        if ssub(s, i, i) == "]" then return t, i + 1 end
        while true do
            local v
            v, i = jdec(s, i, depth)
            n = n + 1
            t[n] = v
            i = skip(s, i)
            local d = ssub(s, i, i)
            if d == "]" then return t, i + 1 end
            if d ~= "," then jerr("comma or array end", i) end
            i = i + 1
        end
    elseif c == '"' then
        return jdecstr(s, i)
    elseif ssub(s, i, i + 3) == "true" then return true, i + 4
    elseif ssub(s, i, i + 4) == "false" then return false, i + 5
    elseif ssub(s, i, i + 3) == "null" then return null, i + 4
    else
        local a, b = sfind(s, "^-?%d+%.?%d*[eE]?[-+]?%d*", i)
        if not a then jerr("value", i) end
        local x = tonumber(ssub(s, a, b))
        if not x then jerr("value", i) end
        return x, b + 1
    end
end
cjson.decode = function(s)
    if type(s) ~= "string" then error("bad argument #1 to 'decode' (string expected)", 2) end
    local v, i = jdec(s, 1, 0)
    i = skip(s, i)
    if i <= #s then jerr("the end", i) end
    return v
end
cjson.encode_max_depth = function(n) if n then enc_max_depth = n end return enc_max_depth end
cjson.decode_max_depth = function(n) if n then dec_max_depth = n end return dec_max_depth end
cjson.encode_invalid_numbers = function(b) if b ~= nil then enc_invalid = b and true end return enc_invalid end
cjson.decode_invalid_numbers = function() return true end
cjson.encode_keep_buffer = function() return true end
cjson.encode_number_precision = function() return 14 end
cjson.encode_sparse_array = function() return false, 2, 10 end
cjson.new = function() return cjson end

return cjson
