-- Machine-readable wrk summary, appended to every scenario script by
-- bench/vs_nginx.py (fastproxy/tune.py embeds an identical copy).
--
-- done() runs once after the test and prints ONE line:
--   WRK_JSON {"requests":N,"duration_us":N,...,"p50_us":N,"p99_us":N,"p999_us":N}
-- Latencies are microseconds. status_errors counts responses with status > 399
-- (what wrk itself counts as "Non-2xx or 3xx"); connect/read/write/timeouts are
-- wrk's socket errors.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
    '"status_errors":%d,"timeouts":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
