"""Errors the SDK raises: one line each, with the server's own message where there is one."""

from typing import Optional


class BerthError(Exception):
    """Base of every error the SDK raises.

    Errors from the server also carry its HTTP `status` and error `code` (like
    "invalid_argument"), so callers can branch without parsing the message.
    """

    def __init__(self, message: str = "", status: Optional[int] = None, code: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.code = code


class ConfigError(BerthError):
    """No server configured: no BERTH_GATEWAY/BERTH_TOKEN and no client profile."""


class ServerUnreachable(BerthError):
    """The server did not answer at all."""


class AuthError(BerthError):
    """The server refused the token (401)."""


class InvalidArgument(BerthError):
    """A bad parameter, refused by the SDK or by the server (400, 413)."""


class NotFound(BerthError):
    """The server has no such thing (404)."""


class Conflict(BerthError):
    """The request conflicts with the current state (409)."""


class ServerError(BerthError):
    """The server failed (5xx)."""


class BuildError(BerthError):
    """The image build failed."""


class ContainerFailed(BerthError):
    """A container ended before it ran."""


class DeployError(BerthError):
    """A deployment's new version did not start serving."""


class ExecError(BerthError):
    """A command run in a pod could not run to its end (not its non-zero exit: that is in
    the result)."""


class SyncError(BerthError):
    """The working directory could not be packed for upload."""


class AppLoadError(BerthError):
    """`app.py:pod` does not name a Pod."""
