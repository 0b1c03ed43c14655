"""The HTTP API, through urllib: JSON in and out, errors turned into BerthError subclasses
carrying the server's message (never a urllib traceback)."""

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, Optional

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


def _error_for(status: int, message: str, cfg: _config.Config) -> BerthError:
    if status == 401:
        return AuthError(
            "the berth server refused the token: %s; check BERTH_TOKEN or the profile %s"
            % (message, cfg.profile_path)
        )
    if status in (400, 413):
        return InvalidArgument(message)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    return ServerError("the berth server answered %d: %s" % (status, message))


class Client:
    def __init__(self, cfg: Optional[_config.Config] = None):
        self.config = cfg or _config.load()
        host = urllib.parse.urlsplit(self.config.gateway).hostname or ""
        handlers = []
        if host in LOOPBACK:
            # A proxy from the environment must never see loopback traffic.
            handlers.append(urllib.request.ProxyHandler({}))
        self._opener = urllib.request.build_opener(*handlers)

    def _open(self, method: str, path: str, body: Optional[bytes] = None,
              content_type: str = "application/json", timeout: float = 60):
        req = urllib.request.Request(
            self.config.gateway + path, data=body, method=method,
            headers={"Authorization": "Bearer " + self.config.token, "User-Agent": USER_AGENT},
        )
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            return self._opener.open(req, timeout=timeout)
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            try:
                message = json.loads(text)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = text.strip() or e.reason
            raise _error_for(e.code, message, self.config) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ServerUnreachable(
                "cannot reach the berth server at %s (%s); is `berth server` running? "
                "(BERTH_GATEWAY or the profile sets the address)" % (self.config.gateway, reason)
            ) from None

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        with self._open(method, path, body) as resp:
            text = resp.read()
        return json.loads(text) if text else None

    def status(self, method: str, path: str) -> int:
        """The status of a call whose body does not matter (HEAD); 404 is an answer here."""
        try:
            with self._open(method, path) as resp:
                return resp.status
        except NotFound:
            return 404

    def upload(self, path: str, data: bytes, content_type: str) -> Any:
        with self._open("PUT", path, data, content_type, timeout=600) as resp:
            return json.loads(resp.read())

    def text(self, path: str) -> str:
        with self._open("GET", path) as resp:
            return resp.read().decode("utf-8", "replace")

    def stream_lines(self, method: str, path: str, payload: Any) -> Iterator[Dict[str, Any]]:
        """Newline-delimited JSON events, as they arrive (the build log)."""
        body = json.dumps(payload).encode()
        with self._open(method, path, body, timeout=3600) as resp:
            for line in resp:
                line = line.strip()
                if line:
                    yield json.loads(line)
