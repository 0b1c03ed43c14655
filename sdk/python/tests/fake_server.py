"""A stand-in for the berth API on loopback: canned answers per route, every request recorded."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeServer:
    def __init__(self):
        self.requests = []  # (method, path, body bytes)
        self.routes = {}  # (method, path) -> callable(body) -> (status, payload or bytes)
        self.uploaded = set()  # code archive paths PUT so far
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.requests.append((self.command, self.path, body))
                route = fake.routes.get((self.command, self.path))
                if route is None and self.path.startswith("/v1/code/"):
                    route = fake.code_route(self.command, self.path)
                if route is None:
                    status, payload = 404, {"error": {"code": "not_found", "message": "no route %s" % self.path}}
                else:
                    status, payload = route(body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def code_route(self, method, path):
        """Code archives: missing until PUT, then present."""
        if method == "PUT":
            self.uploaded.add(path)
            return lambda body: (201, {"digest": path.rsplit("/", 1)[1], "files": 1, "bytes": len(body)})
        return lambda body: (200, b"") if path in self.uploaded else (404, b"")

    def on(self, method, path, status, payload):
        self.routes[(method, path)] = lambda body: (status, payload)

    def on_call(self, method, path, fn):
        self.routes[(method, path)] = fn

    def bodies(self, method, path):
        return [json.loads(b) for m, p, b in self.requests if m == method and p == path and b]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
