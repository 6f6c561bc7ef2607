-- wrk: every request reports a new void case (a unique orderNo per thread and request).
local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("tid", threads)
end
local n = 0
function request()
    n = n + 1
    local body = string.format(
        '{"cid":"BENCH","type":"order.void","status":-1,"data":{"orderNo":"B%d-%d-%d",'
        .. '"voidCode":"V1","voidStatus":0,"message":"bench"}}', run_id or 0, tid, n)
    return wrk.format("POST", "/webhooks/atlas", {["Content-Type"] = "application/json"}, body)
end
function init(args)
    run_id = tonumber(args[1]) or 0
end
function done(summary, latency, requests)
    io.write(string.format("non2xx=%d\n", summary.errors.status))
end
