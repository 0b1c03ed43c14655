"""What `Pod.create()` and `Pod.deploy()` return: handles on a container or a deployment."""

import time
from typing import Any, Dict, List, Optional

from .client import Client
from .errors import ExecError, InvalidArgument
from .files import PodFiles

TERMINAL = ("STOPPED", "EXITED", "OOM_KILLED", "FAILED", "LOST")
WAIT_POLL_SECONDS = 0.2
# Beyond the pod's stop grace: for SIGKILL to land and the teardown.
STOP_SLACK_SECONDS = 30


def _strip_log_prefix(text: str) -> str:
    """The output alone: the API prefixes each line with `<RFC 3339 time> <stream> `."""
    lines = []
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2 and parts[1] in ("stdout", "stderr"):
            lines.append(parts[2] if len(parts) == 3 else "")
        else:
            lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


class ExecResult:
    """What `PodInstance.exec` returns: the command's exit code and its output."""

    def __init__(self, exit_code: int, stdout: str, stderr: str):
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def __repr__(self) -> str:
        return "ExecResult(exit_code=%r, stdout=%r, stderr=%r)" % (self.exit_code, self.stdout, self.stderr)


class PodInstance:
    """A created container: its URLs, and calls to follow or end it.

    `ok` is False when it ended or failed before running; `error_msg` then says why.
    """

    def __init__(self, client: Client, container: Dict[str, Any], ok: bool, error_msg: str = ""):
        self._client = client
        self.container_id: str = container["id"]
        self.ok = ok
        self.error_msg = error_msg
        urls = list(container.get("urls") or [])
        self.urls: Dict[int, str] = dict(zip(container.get("ports") or [], urls))
        self.url: str = urls[0] if urls else ""

    def _get(self) -> Dict[str, Any]:
        return self._client.call("GET", "/v1/containers/%s" % self.container_id)

    def status(self) -> str:
        """The container's status now, like "RUNNING" or "EXITED"."""
        return self._get()["status"]

    def logs(self) -> str:
        """The container's output so far, without the time and stream of each line."""
        return _strip_log_prefix(self._client.text("/v1/containers/%s/logs" % self.container_id))

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Waits until the container ends; its exit code (None if no process ever exited).
        Raises TimeoutError past `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            c = self._get()
            if c["status"] in TERMINAL:
                return c.get("exit_code")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("%s is still %s after %s s" % (self.container_id, c["status"], timeout))
            time.sleep(WAIT_POLL_SECONDS)

    def token(self, port: Optional[int] = None, ttl_seconds: int = 3600) -> str:
        """A token that opens one port of this pod's URL (created with `authorized=True`) for
        `ttl_seconds`, to share without the API token: send it as `Authorization: Bearer`, or
        open the URL once with `?berth_token=<token>` in a browser."""
        if port is None:
            if not self.urls:
                raise InvalidArgument("%s exposes no ports" % self.container_id)
            port = next(iter(self.urls))
        minted = self._client.call(
            "POST", "/v1/containers/%s/tokens" % self.container_id,
            {"port": port, "ttl_seconds": ttl_seconds},
        )
        return minted["token"]

    def exec(self, *command: str, env: Optional[Dict[str, str]] = None,
             workdir: Optional[str] = None, timeout: Optional[int] = None) -> ExecResult:
        """Runs a command in the running pod (as its user, under its limits) and returns its
        exit code and output: `pod.exec("python3", "-c", "print(1)").stdout == "1\\n"`. Raises
        `ExecError` if it cannot run or outlives `timeout` seconds."""
        if len(command) == 1 and not isinstance(command[0], str):
            command = tuple(command[0])
        if not command or not all(isinstance(c, str) for c in command):
            raise InvalidArgument("exec needs the command as strings, like exec(\"ls\", \"-l\")")
        req: Dict[str, Any] = {"command": list(command)}
        if env:
            req["env"] = env
        if workdir:
            req["workdir"] = workdir
        if timeout is not None:
            req["timeout_seconds"] = timeout
        out: List[str] = []
        err: List[str] = []
        path = "/v1/containers/%s/exec" % self.container_id
        for event in self._client.stream_lines("POST", path, req):
            if "stdout" in event:
                out.append(event["stdout"])
            elif "stderr" in event:
                err.append(event["stderr"])
            elif "exit" in event:
                return ExecResult(event["exit"], "".join(out), "".join(err))
            elif "error" in event:
                raise ExecError(event["error"])
        raise ExecError("the output of %s ended without its exit code" % (list(command),))

    @property
    def fs(self) -> PodFiles:
        """The pod's files: `fs.upload(local, "/tmp/")`, `fs.download(path, local)`,
        `fs.list("/tmp")`, `fs.write(path, data)`, `fs.read(path)`."""
        return PodFiles(self._client, self.container_id)

    def terminate(self) -> bool:
        """Stops the container: its stop signal, its grace, then SIGKILL (stopping an ended
        one is a no-op); True once it has ended."""
        return self._wait_ended(self._ask_to_stop())

    def _ask_to_stop(self) -> float:
        """Asks the server to stop it; how long the stop may take."""
        c = self._client.call("POST", "/v1/containers/%s/stop" % self.container_id, {})
        return float(c.get("stop_grace_seconds") or 10) + STOP_SLACK_SECONDS

    def _wait_ended(self, limit: float) -> bool:
        try:
            self.wait(timeout=limit)
        except TimeoutError:
            return False
        return True

    def __repr__(self) -> str:
        return "PodInstance(container_id=%r, url=%r, ok=%r)" % (self.container_id, self.url, self.ok)


class DeploymentInstance:
    """A deployment's version that serves: its stable URLs and the container behind them."""

    def __init__(self, name: str, version: int, container_id: str, urls: List[str], ports: List[int]):
        self.name = name
        self.version = version
        self.container_id = container_id
        self.ok = True
        self.error_msg = ""
        self.urls: Dict[int, str] = dict(zip(ports, urls))
        self.url = urls[0] if urls else ""

    def __repr__(self) -> str:
        return "DeploymentInstance(name=%r, version=%r, url=%r)" % (self.name, self.version, self.url)
