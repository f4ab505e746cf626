# Included by _protocols.pyx: a client request's access-log line (when
# [log] access is on), in nginx's "combined" format or as JSON.


cdef capture_log_info(ClientProtocol c, const char *p):
    """Keep what the line needs from the request head while it is in the
    receive buffer: the request line, Referer and User-Agent."""
    cdef uint32_t i
    ua = ref = b"-"
    for i in range(c.head.num_headers):
        f = c.head.headers[i]
        if f.id == FP_H_USER_AGENT:
            ua = p[f.value.off:f.value.off + f.value.len]
        elif f.id == FP_H_REFERER:
            ref = p[f.value.off:f.value.off + f.value.len]
    line = p[c.head.method.off:c.head.target.off + c.head.target.len]
    c.log_info = (line + (b" HTTP/1.1" if c.head.minor else b" HTTP/1.0"), ref, ua)


cdef write_access_line(ClientProtocol c):
    line, ref, ua = c.log_info
    c.log_info = None
    now = time.time()
    dur = monotonic() - c.t_start
    if c.rt.access_format == "json":
        rec = {"time": now, "client": c.peer, "request": line.decode("latin-1"),
               "status": c.status, "bytes": c.bytes_out,
               "request_time": round(dur, 6),
               "route": c.route.label if c.route is not None else None,
               "upstream": c.server.address if c.server is not None else None,
               "upstream_time": round(monotonic() - c.t_upstream, 6)
               if c.server is not None else None,
               "referer": ref.decode("latin-1"), "user_agent": ua.decode("latin-1"),
               "worker": PID}
        c.rt.access_log(json.dumps(rec))
    else:
        ts = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(now))
        c.rt.access_log(
            f'{c.peer} - - [{ts}] "{line.decode("latin-1")}" {c.status} '
            f'{c.bytes_out} "{ref.decode("latin-1")}" "{ua.decode("latin-1")}"')
