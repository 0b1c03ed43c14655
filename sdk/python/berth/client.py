"""The HTTP API, through urllib: JSON in and out, errors turned into BerthError subclasses
carrying the server's message (never a urllib traceback)."""

import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, Optional, Tuple

from . import config as _config
from .errors import (
    AuthError,
    BerthError,
    Conflict,
    InvalidArgument,
    NotFound,
    ServerError,
    ServerUnreachable,
)

USER_AGENT = "berth-python/0.1.0"
LOOPBACK = ("127.0.0.1", "::1", "localhost")
# How long a busy server (429: its queues are full, nothing was recorded) is asked again.
BUSY_RETRY_SECONDS = 60


def _server_message(status: int, text: str, reason: str) -> Tuple[str, Optional[str]]:
    """The message and code of an error body `{"error": {"code", "message"}}`; a body that is
    not one (a proxy's page) is passed on as it is."""
    try:
        error = json.loads(text)["error"]
        return str(error["message"]), error.get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        return text.strip() or "HTTP %d %s" % (status, reason), None


class _Busy(Exception):
    """A 429: the error to raise if asking again does not help, and how long to wait."""

    def __init__(self, error: BerthError, retry_after: Optional[str]):
        super().__init__(str(error))
        self.error = error
        try:
            self.retry_after = min(max(float(retry_after or 1), 0.1), 10.0)
        except ValueError:
            self.retry_after = 1.0


def _error_for(status: int, message: str, code: Optional[str], cfg: _config.Config) -> BerthError:
    if status == 401:
        return AuthError(
            "the berth server refused the token: %s; check BERTH_TOKEN or the profile %s"
            % (message, cfg.profile_path), status, code,
        )
    # 413 is an upload past the server's cap: a bad argument, with the server's words.
    kind = {400: InvalidArgument, 413: InvalidArgument, 404: NotFound, 409: Conflict}.get(status)
    if kind is None:
        kind = ServerError if status >= 500 else BerthError
    return kind(message, status, code)


def _reason(e: BaseException) -> str:
    """The words of a connection failure, without errno noise: "Connection refused"."""
    reason = getattr(e, "reason", e)
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


class Client:
    def __init__(self, cfg: Optional[_config.Config] = None):
        self.config = cfg or _config.load()
        host = urllib.parse.urlsplit(self.config.gateway).hostname or ""
        handlers = []
        if host in LOOPBACK:
            # A proxy from the environment must never see loopback traffic.
            handlers.append(urllib.request.ProxyHandler({}))
        if self.config.ca_cert:
            # berth's local CA, trusted with no setup, as the CLI does.
            handlers.append(urllib.request.HTTPSHandler(context=_config.ssl_context(self.config)))
        self._opener = urllib.request.build_opener(*handlers)

    def _unreachable(self, e: BaseException) -> ServerUnreachable:
        return ServerUnreachable(
            "cannot reach the berth server at %s (%s); is `berth server` running? "
            "(BERTH_GATEWAY or the profile sets the address)" % (self.config.gateway, _reason(e))
        )

    def _open(self, method: str, path: str, body: Optional[bytes] = None,
              content_type: str = "application/json", timeout: float = 60):
        req = urllib.request.Request(
            self.config.gateway + path, data=body, method=method,
            headers={"Authorization": "Bearer " + self.config.token, "User-Agent": USER_AGENT},
        )
        if body is not None:
            req.add_header("Content-Type", content_type)
        return self._send(req, timeout)

    def _send(self, req: urllib.request.Request, timeout: float):
        deadline = time.monotonic() + BUSY_RETRY_SECONDS
        while True:
            try:
                return self._send_once(req, timeout)
            except _Busy as busy:
                # Only a body held in memory can be sent again.
                if time.monotonic() >= deadline or not isinstance(req.data, (bytes, type(None))):
                    raise busy.error from None
                time.sleep(busy.retry_after)

    def _send_once(self, req: urllib.request.Request, timeout: float):
        try:
            return self._opener.open(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            try:
                text = e.read().decode("utf-8", "replace")
            except (OSError, http.client.HTTPException):
                text = ""
            message, code = _server_message(e.code, text, str(e.reason))
            error = _error_for(e.code, message, code, self.config)
            if e.code == 429:
                raise _Busy(error, e.headers.get("Retry-After")) from None
            raise error from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise self._unreachable(e) from None

    def _read(self, resp) -> bytes:
        """The whole body; a connection cut midway is the server being unreachable."""
        try:
            with resp:
                return resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise self._unreachable(e) from None

    def _json(self, data: bytes) -> Any:
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            raise ServerError(
                "%s answered something that is not berth's API (is BERTH_GATEWAY right?)"
                % self.config.gateway
            ) from None

    def call(self, method: str, path: str, payload: Any = None, timeout: float = 60) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        return self._json(self._read(self._open(method, path, body, timeout=timeout)))

    def status(self, method: str, path: str) -> int:
        """The status of a call whose body does not matter (HEAD); 404 is an answer here."""
        try:
            resp = self._open(method, path)
        except NotFound:
            return 404
        self._read(resp)
        return resp.status

    def upload(self, path: str, data: bytes, content_type: str) -> Any:
        return self._json(self._read(self._open("PUT", path, data, content_type, timeout=600)))

    def put_code(self, digest: str, archive: bytes) -> bool:
        """Uploads a packed archive to /v1/code unless the server has it; whether it was sent."""
        path = "/v1/code/%s" % digest
        if self.status("HEAD", path) == 200:
            return False
        self.upload(path, archive, "application/gzip")
        return True

    def upload_file(self, path: str, f, size: int) -> Any:
        """PUTs an open binary file, streamed (urllib reads it in blocks)."""
        req = urllib.request.Request(
            self.config.gateway + path, data=f, method="PUT",
            headers={"Authorization": "Bearer " + self.config.token, "User-Agent": USER_AGENT,
                     "Content-Type": "application/octet-stream", "Content-Length": str(size)},
        )
        return self._json(self._read(self._send(req, timeout=3600)))

    def read_bytes(self, method: str, path: str) -> bytes:
        return self._read(self._open(method, path, timeout=3600))

    def stream_to(self, method: str, path: str, out) -> "tuple[int, int]":
        """Copies a response body into `out` in blocks; its size and the `X-Berth-Mode` bits."""
        resp = self._open(method, path, timeout=3600)
        size = 0
        with resp:
            mode = int(resp.headers.get("X-Berth-Mode") or "644", 8)
            while True:
                try:
                    block = resp.read(64 * 1024)
                except (OSError, http.client.HTTPException) as e:
                    raise self._unreachable(e) from None
                if not block:
                    return size, mode
                out.write(block)
                size += len(block)

    def text(self, path: str) -> str:
        return self._read(self._open("GET", path)).decode("utf-8", "replace")

    def stream_lines(self, method: str, path: str, payload: Any) -> Iterator[Dict[str, Any]]:
        """Newline-delimited JSON events, as they arrive (the build log)."""
        body = json.dumps(payload).encode()
        resp = self._open(method, path, body, timeout=3600)
        with resp:
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException) as e:
                    raise self._unreachable(e) from None
                if not line:
                    return
                line = line.strip()
                if line:
                    yield self._json(line)
