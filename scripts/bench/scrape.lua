-- wrk: a monitoring stampede, GET /metrics and GET /readyz in turn on every connection.
local n = 0
function request()
    n = n + 1
    if n % 2 == 0 then
        return wrk.format("GET", "/readyz")
    end
    return wrk.format("GET", "/metrics")
end
function done(summary, latency, requests)
    io.write(string.format("non2xx=%d\n", summary.errors.status))
end
