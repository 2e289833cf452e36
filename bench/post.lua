-- wrk script: POST a small, realistic chat completion request (the same bytes to nginx and to
-- FareGate), then print the exact latency percentiles as one JSON line for bench/report.py.

wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-bench-not-a-real-key"
wrk.headers["X-FareGate-Feature"] = "support-chat"
wrk.headers["X-FareGate-Team"] = "customer-care"
wrk.body = '{"model":"gpt-4o-mini","messages":['
    .. '{"role":"system","content":"You are a concise support assistant for an online shop. '
    .. 'Answer in one or two sentences and never invent order details."},'
    .. '{"role":"user","content":"Hi, where is my order #4821? It was supposed to ship on Monday."}'
    .. '],"temperature":0.2,"max_tokens":200}'

function done(summary, latency, requests)
    local errors = summary.errors
    local socket_errors = errors.connect + errors.read + errors.write + errors.timeout
    io.write(string.format(
        'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non_2xx":%d,"socket_errors":%d,'
            .. '"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,'
            .. '"mean_us":%.2f,"stdev_us":%.2f}\n',
        summary.requests, summary.duration, summary.bytes, errors.status, socket_errors,
        errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max, latency.mean, latency.stdev))
end
