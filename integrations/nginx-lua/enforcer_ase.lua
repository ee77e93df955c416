-- enforcer_ase.lua: nginx (lua-nginx-module) client of enforcer's ASE sideband calls.
--
--   access phase: POST /ase/request with the request's metadata, and wait for the verdict:
--                 2xx forward; 403 -> 403; 429 -> 429 + Retry-After; 400 -> 400 (the
--                 request is malformed); 503 "unknown_api" -> forward (not enforcer's API);
--                 anything else, a refused connection or a timeout -> fail open or closed.
--   log phase:    POST /ase/response with the response's status and headers, for the
--                 requests enforcer allowed. Cosockets are not allowed in log_by_lua*, so
--                 the call is queued and sent from a timer; the client never waits for it.
--
-- Needs only lua-nginx-module (Debian: libnginx-mod-http-lua): HTTP/1.1 over cosockets,
-- pooled with setkeepalive, and a small JSON encoder; no lua-resty-http, no cjson.
--
--   lua_package_path "/etc/nginx/enforcer/?.lua;;";
--   init_by_lua_block { require("enforcer_ase").configure({ enforcer = "127.0.0.1:8000" }) }
--   location / {
--       access_by_lua_block { require("enforcer_ase").access() }
--       log_by_lua_block    { require("enforcer_ase").log() }
--       proxy_pass http://api_backend;
--   }

local ngx = ngx
local concat, sort = table.concat, table.sort
local fmt, byte, lower = string.format, string.byte, string.lower
local tcp, timer_at = ngx.socket.tcp, ngx.timer.at
local log, ERR, WARN = ngx.log, ngx.ERR, ngx.WARN

local _M = { _VERSION = "1.0.0" }

local cfg = {
    host = "127.0.0.1",
    port = 8000,
    token = nil,                -- ASE-Token, with enable_sideband_authentication=true
    connect_timeout = 500,      -- ms
    send_timeout = 1000,        -- ms
    read_timeout = 1000,        -- ms: the decision timeout
    fail_open = true,           -- enforcer unavailable: forward (true) or answer 503 (false)
    keepalive_timeout = 60000,  -- ms an idle pooled connection is kept (enforcer: 75 s)
    keepalive_pool = 32,        -- idle connections kept per worker
    send_response = true,       -- report responses to /ase/response
    max_headers = 100,
    user_info = nil,            -- function() -> { username = ..., client_id = ... } or nil;
                                -- default: $remote_user when set (basic auth)
    queue_max = 10000,          -- /ase/response calls waiting per worker (newer ones dropped)
    response_workers = 4,       -- timers sending them, per worker
    deny_body = '{"error":"forbidden","message":"Blocked by enforcer"}\n',
    ratelimit_body = '{"error":"too_many_requests","message":"Rate limited by enforcer"}\n',
    bad_request_body = '{"error":"bad_request","message":"Malformed request"}\n',
    unavailable_body = '{"error":"unavailable","message":"Authorization service unavailable"}\n',
}

-- Headers only the external-authorization integrations set: never the client's own.
local VOUCHED = { "X-Enforcer-Client", "X-Enforcer-Api", "X-Enforcer-User" }

function _M.configure(opts)
    for k, v in pairs(opts or {}) do
        if k == "enforcer" then
            local h, p = tostring(v):match("^%[?([^%]]+)%]?:(%d+)$")
            if not h then error("enforcer_ase: enforcer must be host:port, got " .. tostring(v)) end
            cfg.host, cfg.port = h, tonumber(p)
        elseif k == "token" then
            cfg.token = (v ~= "" and v ~= "-" and v) or nil
        elseif k == "timeout" then
            cfg.read_timeout = v
        elseif k == "user_info" then
            cfg.user_info = v
        elseif cfg[k] == nil then
            error("enforcer_ase: unknown option " .. tostring(k))
        else
            cfg[k] = v
        end
    end
    return cfg
end

------------------------------------------------------------------------ JSON (encode only)
local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
local function jstr(s)
    return '"' .. tostring(s):gsub('[%c"\\]', function(c)
        return escapes[c] or fmt("\\u%04x", byte(c))
    end) .. '"'
end

-- A get_headers() table as ASE's [{"name":"value"}, ...], `first` first, the rest by name,
-- repeated headers as repeated objects.
local function jheaders(t, first)
    local names = {}
    for k in pairs(t) do names[#names + 1] = k end
    sort(names, function(a, b)
        if a == first then return b ~= first end
        if b == first then return false end
        return a < b
    end)
    local out = {}
    for _, k in ipairs(names) do
        local v = t[k]
        if type(v) == "table" then
            for _, vv in ipairs(v) do out[#out + 1] = "{" .. jstr(k) .. ":" .. jstr(vv) .. "}" end
        else
            out[#out + 1] = "{" .. jstr(k) .. ":" .. jstr(v) .. "}"
        end
    end
    return "[" .. concat(out, ",") .. "]"
end

local function http_version()
    local v = ngx.req.http_version()
    if v == 2 then return "2" elseif v == 3 then return "3" end
    return fmt("%.1f", v or 1.1)
end

------------------------------------------------------------------------ HTTP/1.1 client
local function read_body(sock, h)
    local te = h["transfer-encoding"]
    if te and lower(te):find("chunked", 1, true) then
        local parts = {}
        while true do
            local line, err = sock:receive("*l")
            if not line then return nil, err end
            local size = tonumber(line:match("^%s*(%x+)"), 16)
            if not size then return nil, "bad chunk size" end
            if size == 0 then
                repeat line = sock:receive("*l") until not line or line == ""
                return concat(parts)
            end
            local data, err2 = sock:receive(size)
            if not data then return nil, err2 end
            parts[#parts + 1] = data
            sock:receive("*l")
        end
    end
    local len = tonumber(h["content-length"])
    if len then
        if len == 0 then return "" end
        return sock:receive(len)
    end
    h.__close = true            -- no framing: the body runs to the end of the connection
    return sock:receive("*a")
end

-- One call on a pooled connection. A reused connection that the server closed meanwhile
-- is retried once on a new one; a timeout never is (the call may have been decided).
-- Returns status, headers, body; or nil and the error.
local function call(path, body, cid)
    local req = {
        "POST ", path, " HTTP/1.1\r\n",
        "Host: ", cfg.host, ":", cfg.port, "\r\n",
        "Content-Type: application/json\r\n",
        "Content-Length: ", #body, "\r\n",
        "X-CorrelationID: ", cid, "\r\n",
        cfg.token and ("ASE-Token: " .. cfg.token .. "\r\n") or "",
        "Connection: keep-alive\r\n\r\n",
        body,
    }
    for attempt = 1, 2 do
        local sock = tcp()
        sock:settimeouts(cfg.connect_timeout, cfg.send_timeout, cfg.read_timeout)
        local ok, err = sock:connect(cfg.host, cfg.port)
        if not ok then return nil, "connect: " .. tostring(err) end
        local reused = (sock:getreusedtimes() or 0) > 0
        local line
        ok, err = sock:send(req)
        if ok then line, err = sock:receive("*l") end
        if line then
            local status = tonumber(line:match("^HTTP/%d[%.%d]* (%d%d%d)"))
            if not status then sock:close(); return nil, "bad status line: " .. line end
            local h = {}
            while true do
                local l, e = sock:receive("*l")
                if not l then sock:close(); return nil, "headers: " .. tostring(e) end
                if l == "" then break end
                local n, v = l:match("^([^:]+):%s*(.-)%s*$")
                if n then h[lower(n)] = v end
            end
            local rbody, berr = read_body(sock, h)
            if not rbody then sock:close(); return nil, "body: " .. tostring(berr) end
            if h.__close or lower(h["connection"] or ""):find("close", 1, true) then
                sock:close()
            else
                sock:setkeepalive(cfg.keepalive_timeout, cfg.keepalive_pool)
            end
            return status, h, rbody
        end
        sock:close()
        if not (reused and attempt == 1 and err ~= "timeout") then
            return nil, "send/receive: " .. tostring(err)
        end
    end
end

------------------------------------------------------------------------ access phase
local function finish(status, body, headers)
    ngx.status = status
    ngx.header["Content-Type"] = "application/json"
    ngx.header["Content-Length"] = #body
    for k, v in pairs(headers or {}) do ngx.header[k] = v end
    ngx.print(body)
    return ngx.exit(status)
end

function _M.access()
    for _, name in ipairs(VOUCHED) do ngx.req.clear_header(name) end
    local hdrs, herr = ngx.req.get_headers(cfg.max_headers)
    if herr == "truncated" then
        log(WARN, "enforcer: more than ", cfg.max_headers, " request headers; the rest are not sent")
    end
    local parts = {
        '{"source_ip":', jstr(ngx.var.remote_addr),
        ',"source_port":', tonumber(ngx.var.remote_port) or 0,
        ',"method":', jstr(ngx.req.get_method()),
        ',"url":', jstr(ngx.var.request_uri),
        ',"http_version":', jstr(http_version()),
    }
    local ui = cfg.user_info and cfg.user_info()
    if not ui then
        local ru = ngx.var.remote_user
        if ru and ru ~= "" then ui = { username = ru } end
    end
    if ui and (ui.username or ui.client_id) then
        local f = {}
        if ui.username then f[#f + 1] = '"username":' .. jstr(ui.username) end
        if ui.client_id then f[#f + 1] = '"client_id":' .. jstr(ui.client_id) end
        parts[#parts + 1] = ',"user_info":[{' .. concat(f, ",") .. '}]'
    end
    parts[#parts + 1] = ',"headers":' .. jheaders(hdrs, "host") .. "}"

    local cid = "Id-" .. ngx.var.request_id
    local status, h, rbody = call("/ase/request", concat(parts), cid)
    if status and status >= 200 and status < 300 then
        ngx.ctx.enforcer_cid = cid
        return
    elseif status == 403 then
        return finish(403, cfg.deny_body)
    elseif status == 429 then
        return finish(429, cfg.ratelimit_body, { ["Retry-After"] = h["retry-after"] or "1" })
    elseif status == 400 then
        return finish(400, cfg.bad_request_body)
    elseif status == 503 and rbody:find('"unknown_api"', 1, true) then
        return                  -- no API of enforcer's: nothing waits for a response call
    end
    log(ERR, "enforcer: /ase/request ", status and ("answered " .. status) or ("failed: " .. tostring(h)),
        cfg.fail_open and " (failing open)" or " (failing closed)")
    if not cfg.fail_open then
        return finish(503, cfg.unavailable_body)
    end
end

------------------------------------------------------------------------ log phase
local reasons = {
    [100] = "Continue", [101] = "Switching Protocols", [200] = "OK", [201] = "Created",
    [202] = "Accepted", [204] = "No Content", [206] = "Partial Content",
    [301] = "Moved Permanently", [302] = "Found", [303] = "See Other", [304] = "Not Modified",
    [307] = "Temporary Redirect", [308] = "Permanent Redirect", [400] = "Bad Request",
    [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found",
    [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict", [410] = "Gone",
    [413] = "Payload Too Large", [415] = "Unsupported Media Type",
    [422] = "Unprocessable Entity", [429] = "Too Many Requests", [499] = "Client Closed Request",
    [500] = "Internal Server Error", [502] = "Bad Gateway", [503] = "Service Unavailable",
    [504] = "Gateway Timeout",
}

-- Per worker: queue[head .. tail] wait to be sent by up to cfg.response_workers timers.
local queue, head, tail, running = {}, 1, 0, 0

local function drain(premature)
    if not premature then
        while head <= tail do
            local item = queue[head]
            queue[head], head = nil, head + 1
            local status, err = call("/ase/response", item[2], item[1])
            if not status then log(WARN, "enforcer: /ase/response failed: ", err) end
        end
    end
    running = running - 1
end

function _M.log()
    local cid = ngx.ctx.enforcer_cid
    if not cid or not cfg.send_response then return end   -- not allowed by enforcer
    if tail - head + 1 >= cfg.queue_max then
        log(WARN, "enforcer: response queue full, dropping ", cid)
        return
    end
    local code = ngx.status
    local rh = ngx.resp.get_headers(cfg.max_headers)
    rh["connection"] = nil      -- made up by lua-nginx-module from the client connection
    tail = tail + 1
    queue[tail] = { cid, '{"response_code":' .. jstr(tostring(code))
        .. ',"response_status":' .. jstr(reasons[code] or "")
        .. ',"http_version":' .. jstr(http_version())
        .. ',"headers":' .. jheaders(rh, "content-type") .. "}" }
    if running < cfg.response_workers then
        local ok, err = timer_at(0, drain)
        if ok then
            running = running + 1
        else
            log(ERR, "enforcer: cannot start a timer for /ase/response: ", err)
        end
    end
end

_M.config = cfg
return _M
