"""A stand-in for the berth API on loopback: canned answers per route, every request recorded."""

import contextlib
import io
import json
import os
import tempfile
import threading
import unittest
from unittest import mock
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeServer:
    def __init__(self):
        self.requests = []  # (method, path, body bytes)
        self.routes = {}  # (method, path) -> callable(body) -> (status, payload or bytes)
        self.uploaded = set()  # code archive paths PUT so far
        self.headers = []  # request headers, in order
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
                fake.headers.append(dict(self.headers))
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


CONTAINER = {
    "id": "pod-s-1", "stub_id": "s", "deployment_id": None, "status": "PENDING",
    "image": "busybox", "ports": [8000], "urls": ["http://s-8000.localhost"],
    "exit_code": None, "reason": None, "progress": None, "cpu_millis": 1000,
    "memory_mib": 128, "keep_warm_seconds": 600, "scheduled_at": 1,
    "started_at": None, "finished_at": None,
}


def container(**changes):
    """A Container answer, CONTAINER with `changes`."""
    c = dict(CONTAINER)
    c.update(changes)
    return c


def in_turn(*answers):
    """A route answering each (status, payload) in turn, then the last one forever."""
    queue = list(answers)

    def route(body):
        return queue.pop(0) if len(queue) > 1 else queue[0]
    return route


class ServerCase(unittest.TestCase):
    """Each test talks to a fake server from an empty temporary working directory, with
    no proxy and no profile from the machine running the tests."""

    def setUp(self):
        self.server = FakeServer()
        self.addCleanup(self.server.close)
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        cwd = os.getcwd()
        os.chdir(self.dir.name)
        self.addCleanup(os.chdir, cwd)
        env = mock.patch.dict(os.environ, {
            "BERTH_GATEWAY": self.server.url, "BERTH_TOKEN": "t",
            "BERTH_PROFILE": os.path.join(self.dir.name, "none.json"),
        })
        env.start()
        self.addCleanup(env.stop)
        self.server.on("GET", "/v1/images", 200, {"images": []})
        self.server.on("POST", "/v1/images/build", 200,
                       b'{"log":"=> Using cached image"}\n{"done":{"image":"berth-build/k","cached":true}}\n')

    def run_quietly(self, fn):
        """fn's result and what it printed."""
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = fn()
        return result, out.getvalue()

    def paths(self):
        return [(m, p) for m, p, _ in self.server.requests]
