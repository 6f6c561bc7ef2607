-- wrk: every request reports status 1 of one void case: duplicates contending for one row.
local body = '{"cid":"BENCH","type":"order.void","status":-1,"data":{"orderNo":"SAME",'
    .. '"voidCode":"V1","voidStatus":1}}'
function request()
    return wrk.format("POST", "/webhooks/atlas", {["Content-Type"] = "application/json"}, body)
end
function done(summary, latency, requests)
    io.write(string.format("non2xx=%d\n", summary.errors.status))
end
