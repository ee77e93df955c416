-- enforcer.lua: HAProxy (>= 2.5, built with Lua; tested on Debian 12's 2.6.12) client of
-- enforcer's ASE sideband calls.
--
--   http-request  lua.enforcer_request   POST /ase/request and wait for the verdict; sets
--                                        txn.enforcer_verdict to allow | block | ratelimit |
--                                        bad_request | unavailable | failopen | pass
--                                        (+ txn.enforcer_retry_after, txn.enforcer_api)
--   http-response lua.enforcer_response  POST /ase/response from a detached task (the client
--                                        never waits for it), for requests enforcer allowed
--
-- haproxy.cfg decides what each verdict does (http-request deny / return / set-header).
-- Settings come from the environment, set with `setenv` in the global section BEFORE lua-load:
--   ENFORCER_ADDR        host:port of enforcer's sideband listener   (default 127.0.0.1:8000)
--   ENFORCER_TIMEOUT_MS  decision timeout in ms                       (default 1000)
--   ENFORCER_FAIL_OPEN   true | false                                 (default true)
--   ENFORCER_TOKEN       ASE-Token, "-" for none (HAProxy 2.6 rejects `setenv NAME ""`)
--   ENFORCER_TRANSPORT   socket (default) | httpclient
--       socket:     core.tcp(), one TCP connection per call (Connection: close); the timeout is
--                   exact and a refused connection fails at once. No keep-alive: a Lua socket
--                   cannot outlive its transaction.
--       httpclient: core.httpclient(), keeps connections alive, BUT in HAProxy 2.6 its internal
--                   proxy retries 3 times: a timeout costs 4 x ENFORCER_TIMEOUT_MS and sends the
--                   same call 4 times; a refused connection costs ~3 s.

local ADDR = os.getenv("ENFORCER_ADDR") or "127.0.0.1:8000"
local TIMEOUT = tonumber(os.getenv("ENFORCER_TIMEOUT_MS") or "1000")
local FAIL_OPEN = (os.getenv("ENFORCER_FAIL_OPEN") or "true") ~= "false"
local TOKEN = os.getenv("ENFORCER_TOKEN")
if TOKEN == "" or TOKEN == "-" then TOKEN = nil end
local BASE = "http://" .. ADDR
local HOST, PORT = ADDR:match("^%[?([^%]]+)%]?:(%d+)$")
PORT = tonumber(PORT)
local TRANSPORT = os.getenv("ENFORCER_TRANSPORT") or "socket"

------------------------------------------------------------------------------- JSON (encode only)
local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
local function jstr(s)
    s = tostring(s)
    return '"' .. s:gsub('[%c"\\]', function(c)
        return escapes[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
end

-- txn.http:req_get_headers() / res_get_headers(): { name = { [0] = v1, [1] = v2 } } (0-based!)
local function jheaders(t, first)
    local names = {}
    for k in pairs(t) do names[#names + 1] = k end
    table.sort(names, function(a, b)
        if a == first then return b ~= first end
        if b == first then return false end
        return a < b
    end)
    local out = {}
    for _, k in ipairs(names) do
        local vals = t[k]
        local i = 0
        while vals[i] ~= nil do
            out[#out + 1] = "{" .. jstr(k) .. ":" .. jstr(vals[i]) .. "}"
            i = i + 1
        end
    end
    return "[" .. table.concat(out, ",") .. "]"
end

local function http_version(txn)
    local v = txn.f:req_ver() or "1.1"
    if v == "2.0" then return "2" end
    return v
end

-- core.httpclient(): keep-alive, but retried by HAProxy (see above)
local function post_httpclient(path, body, cid)
    local hdrs = {
        ["content-type"] = { "application/json" },
        ["content-length"] = { tostring(#body) },   -- otherwise the body goes out chunked
        ["x-correlationid"] = { cid },
    }
    if TOKEN then hdrs["ase-token"] = { TOKEN } end
    local hc = core.httpclient()
    -- pcall: a failing call must never abort the transaction
    local ok, res = pcall(hc.post, hc, { url = BASE .. path, headers = hdrs, body = body, timeout = TIMEOUT })
    if not ok then return nil, tostring(res) end
    if not res or not res.status or res.status == 0 then
        return nil, "no response (refused, reset or timeout)"
    end
    return res
end

-- core.tcp(): plain HTTP/1.1, exact timeout, no retry, one connection per call
local function read_body(sock, h)
    local te = h["transfer-encoding"]
    if te and te[0]:lower():find("chunked", 1, true) then
        local parts = {}
        while true do
            local line, err = sock:receive("*l")
            if not line then return nil, err end
            local size = tonumber(line:match("^%s*(%x+)"), 16)
            if not size then return nil, "bad chunk size" end
            if size == 0 then return table.concat(parts) end
            local data, err2 = sock:receive(size)
            if not data then return nil, err2 end
            parts[#parts + 1] = data
            sock:receive("*l")
        end
    end
    local len = h["content-length"] and tonumber(h["content-length"][0])
    if len then
        if len == 0 then return "" end
        return sock:receive(len)
    end
    return sock:receive("*a")
end

local function post_socket(path, body, cid)
    local sock = core.tcp()
    sock:settimeout(TIMEOUT / 1000)
    local ok, err = sock:connect(HOST, PORT)
    if not ok then sock:close(); return nil, "connect: " .. tostring(err) end
    local req = "POST " .. path .. " HTTP/1.1\r\n" ..
        "Host: " .. ADDR .. "\r\n" ..
        "Content-Type: application/json\r\n" ..
        "Content-Length: " .. #body .. "\r\n" ..
        "X-CorrelationID: " .. cid .. "\r\n" ..
        (TOKEN and ("ASE-Token: " .. TOKEN .. "\r\n") or "") ..
        "Connection: close\r\n\r\n" .. body
    local line
    ok, err = sock:send(req)
    if ok then line, err = sock:receive("*l") end
    if not line then sock:close(); return nil, "send/receive: " .. tostring(err) end
    local status = tonumber(line:match("^HTTP/%d[%.%d]* (%d%d%d)"))
    if not status then sock:close(); return nil, "bad status line" end
    local h = {}                       -- same shape as httpclient: name -> { [0] = value, ... }
    while true do
        local l, e = sock:receive("*l")
        if not l then sock:close(); return nil, "headers: " .. tostring(e) end
        if l == "" then break end
        local n, v = l:match("^([^:]+):%s*(.-)%s*$")
        if n then
            n = n:lower()
            local t = h[n]
            if t then t[#t + 1] = v else h[n] = { [0] = v } end
        end
    end
    local rbody = read_body(sock, h)
    sock:close()
    return { status = status, headers = h, body = rbody or "" }
end

local post = (TRANSPORT == "httpclient") and post_httpclient or post_socket

local function first(h, name)
    local v = h and h[name]
    if type(v) == "table" then return v[0] or v[1] end
    return v
end

------------------------------------------------------------------------------- request
core.register_action("enforcer_request", { "http-req" }, function(txn)
    local cid = "Id-" .. (txn.f:unique_id() or tostring(math.random(1, 1e9)))
    local body = "{" ..
        '"source_ip":' .. jstr(txn.f:src()) ..
        ',"source_port":' .. (tonumber(txn.f:src_port()) or 0) ..
        ',"method":' .. jstr(txn.f:method()) ..
        ',"url":' .. jstr(txn.f:url()) ..
        ',"http_version":' .. jstr(http_version(txn)) ..
        ',"headers":' .. jheaders(txn.http:req_get_headers(), "host") .. "}"

    local res, err = post("/ase/request", body, cid)
    local verdict
    if not res then
        txn:Warning("enforcer: /ase/request failed: " .. err)
        verdict = FAIL_OPEN and "failopen" or "unavailable"
    elseif res.status >= 200 and res.status < 300 then
        verdict = "allow"
        local api = (res.body or ""):match('"api"%s*:%s*"([^"]*)"')
        if api then txn:set_var("txn.enforcer_api", api) end
        txn:set_var("txn.enforcer_cid", cid)
    elseif res.status == 403 then
        verdict = "block"
    elseif res.status == 429 then
        verdict = "ratelimit"
        txn:set_var("txn.enforcer_retry_after", first(res.headers, "retry-after") or "1")
    elseif res.status == 400 then
        verdict = "bad_request"         -- the request is malformed (e.g. an identifier twice)
    elseif res.status == 503 and (res.body or ""):find('"unknown_api"', 1, true) then
        verdict = "pass"                -- no API of enforcer's: nothing waits for a response call
    else
        txn:Warning("enforcer: /ase/request answered " .. res.status)
        verdict = FAIL_OPEN and "failopen" or "unavailable"
    end
    txn:set_var("txn.enforcer_verdict", verdict)
end, 0)

------------------------------------------------------------------------------- response
local reasons = {
    [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
    [206] = "Partial Content", [301] = "Moved Permanently", [302] = "Found", [303] = "See Other",
    [304] = "Not Modified", [307] = "Temporary Redirect", [308] = "Permanent Redirect",
    [400] = "Bad Request", [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
    [405] = "Method Not Allowed", [409] = "Conflict", [410] = "Gone", [413] = "Payload Too Large",
    [415] = "Unsupported Media Type", [422] = "Unprocessable Entity", [429] = "Too Many Requests",
    [500] = "Internal Server Error", [501] = "Not Implemented", [502] = "Bad Gateway",
    [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

core.register_action("enforcer_response", { "http-res" }, function(txn)
    local cid = txn:get_var("txn.enforcer_cid")
    if not cid then return end              -- not allowed by enforcer: nothing pending there
    local code = tonumber(txn.f:status()) or 0
    local body = '{"response_code":' .. jstr(tostring(code)) ..
        ',"response_status":' .. jstr(reasons[code] or "") ..
        ',"http_version":' .. jstr(txn.f:res_ver() or "1.1") ..
        ',"headers":' .. jheaders(txn.http:res_get_headers(), "content-type") .. "}"
    -- fire and forget: a task outlives the action, so the response is not held back
    core.register_task(function()
        local res, err = post("/ase/response", body, cid)
        if not res then core.Warning("enforcer: /ase/response failed: " .. err) end
    end)
end, 0)
