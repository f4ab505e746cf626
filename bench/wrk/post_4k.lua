-- POST a 4 KiB body on every request (wrk adds Content-Length itself).
-- Used by the post_4k scenario of bench/vs_nginx.py; standalone use:
--   wrk -t1 -c50 -d10s -s bench/wrk/post_4k.lua http://127.0.0.1:8080/post
wrk.method = "POST"
wrk.body = string.rep("a", 4096)
wrk.headers["Content-Type"] = "application/octet-stream"
