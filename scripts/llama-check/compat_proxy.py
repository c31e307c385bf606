"""A pass-through HTTP proxy that makes llama-cpp-python's server accept OpenAI's
`json_schema` response format.

    python compat_proxy.py LISTEN_PORT UPSTREAM_BASE_URL

llama-cpp-python's server (llama_cpp.server, 0.3.x) only knows
`response_format: {"type": "json_object", "schema": ...}` and answers a request with
OpenAI's `{"type": "json_schema", "json_schema": {"schema": ...}}` with HTTP 500
("Input should be 'text' or 'json_object'"). llama.cpp's own `llama-server`, vLLM and
OpenAI take `json_schema`. This proxy rewrites

    {"type": "json_schema", "json_schema": {"name": ..., "schema": S, "strict": ...}}
 -> {"type": "json_object", "schema": S}

which llama-cpp-python turns into the same grammar, and passes everything else through
unchanged (bodies, status codes, headers that matter, streamed answers). Each rewrite
is logged on stderr as `rewrote json_schema -> json_object+schema`, so run.sh can
check that it happened. Standard library only.
"""

import http.server
import json
import sys
import urllib.error
import urllib.request

UPSTREAM = ""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection; the body ends at close

    def log_message(self, fmt, *args):  # noqa: D401 - keep stderr for our own lines
        sys.stderr.write("proxy: " + (fmt % args) + "\n")
        sys.stderr.flush()

    def _forward(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if body and method == "POST":
            try:
                request = json.loads(body)
            except ValueError:
                request = None
            fmt = request.get("response_format") if isinstance(request, dict) else None
            if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
                schema = (fmt.get("json_schema") or {}).get("schema")
                request["response_format"] = {"type": "json_object", "schema": schema}
                body = json.dumps(request).encode()
                sys.stderr.write("proxy: rewrote json_schema -> json_object+schema\n")
                sys.stderr.flush()
        headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
        if self.headers.get("Authorization"):
            headers["Authorization"] = self.headers["Authorization"]
        upstream = urllib.request.Request(UPSTREAM + self.path, data=body, headers=headers, method=method)
        try:
            response = urllib.request.urlopen(upstream, timeout=300)
        except urllib.error.HTTPError as e:
            response = e
        except OSError as e:
            self.send_response(502)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"error": {"message": f"proxy: upstream: {e}"}}).encode())
            return
        with response:
            self.send_response(response.status if hasattr(response, "status") else response.code)
            for name in ("Content-Type", "Retry-After"):
                if response.headers.get(name):
                    self.send_header(name, response.headers[name])
            self.end_headers()
            while True:
                chunk = response.read1(65536) if hasattr(response, "read1") else response.read(65536)
                if not chunk:
                    break
                self.wfile.write(chunk)
                self.wfile.flush()

    def do_GET(self):
        self._forward("GET")

    def do_POST(self):
        self._forward("POST")


def main() -> None:
    global UPSTREAM
    port, UPSTREAM = int(sys.argv[1]), sys.argv[2].rstrip("/")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    sys.stderr.write(f"proxy: 127.0.0.1:{port} -> {UPSTREAM}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
