"""Message heads shared by the parser benchmarks (Python and C).

REQUEST_HEAD: a typical browser GET for a script, 12 header fields, ~600 bytes.
RESPONSE_HEAD: a typical origin answer to it, 8 header fields, ~300 bytes.
Both end with the empty line and carry no body.
"""

REQUEST_HEAD = (
    b"GET /static/js/app.8f3a2c1e.js?v=20240115 HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"Connection: keep-alive\r\n"
    b'sec-ch-ua: "Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"\r\n'
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
    b"(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n"
    b'sec-ch-ua-platform: "Linux"\r\n'
    b"Accept: */*\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: no-cors\r\n"
    b"Referer: https://www.example.com/products/widgets?page=2\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: session=3f9a8b7c6d5e4f30a1b2c3d4e5f60718; _ga=GA1.2.1234567890.1715678901; "
    b"theme=dark\r\n"
    b"\r\n"
)
REQUEST_HEADERS = 12

RESPONSE_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Date: Tue, 14 May 2024 09:21:07 GMT\r\n"
    b"Server: nginx/1.24.0 (Ubuntu)\r\n"
    b"Content-Type: application/javascript; charset=utf-8\r\n"
    b"Content-Length: 48213\r\n"
    b"Connection: keep-alive\r\n"
    b"Cache-Control: public, max-age=31536000, immutable\r\n"
    b'ETag: W/"bc55-65f2a1c3d4e5f6071829"\r\n'
    b"Vary: Accept-Encoding\r\n"
    b"\r\n"
)
RESPONSE_HEADERS = 8
