"""`Pod`: a container launched from an image, reachable at one URL per port; `create()` runs
one, `deploy()` makes a named deployment with a stable URL."""

import os
import time
from typing import Any, Dict, List, Optional, Sequence, Union

from ._args import refuse_unknown, str_dict, str_list
from .client import Client
from .errors import BuildError, DeployError, InvalidArgument
from .image import Image
from .output import Output
from .sync import pack
from .volume import Volume

CODE_MOUNT = "/mnt/code"
TERMINAL = ("STOPPED", "EXITED", "OOM_KILLED", "FAILED")
POLL_SECONDS = 0.05
DEPLOY_LIMIT_SECONDS = 180

_PARAMS = (
    "app", "entrypoint", "ports", "name", "cpu", "memory", "gpu", "image", "env",
    "keep_warm_seconds", "authorized", "volumes", "secrets",
)


def _quantity(value: Any, what: str) -> Union[int, float, str]:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidArgument("%s must be a number or a string like %s, not %r" % (
            what, '"1500m"' if what == "cpu" else '"1Gi"', value))
    return value


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return str(n)


class PodInstance:
    """A created container: its URLs, and calls to follow or end it."""

    def __init__(self, client: Client, container: Dict[str, Any], ok: bool, error_msg: str = ""):
        self._client = client
        self.container_id: str = container["id"]
        self.ok = ok
        self.error_msg = error_msg
        self.urls: Dict[int, str] = dict(zip(container.get("ports", []), container.get("urls", [])))
        self.url: str = container["urls"][0] if container.get("urls") else ""

    def _get(self) -> Dict[str, Any]:
        return self._client.call("GET", "/v1/containers/%s" % self.container_id)

    def status(self) -> str:
        return self._get()["status"]

    def logs(self) -> str:
        """The container's output so far, without the time and stream of each line."""
        text = self._client.text("/v1/containers/%s/logs" % self.container_id)
        lines = []
        for line in text.splitlines():
            parts = line.split(" ", 2)
            if len(parts) >= 2 and parts[1] in ("stdout", "stderr"):
                lines.append(parts[2] if len(parts) == 3 else "")
            else:
                lines.append(line)
        return "\n".join(lines) + ("\n" if lines else "")

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Waits until the container ends; its exit code (None if it never ran a process)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            c = self._get()
            if c["status"] in TERMINAL:
                return c.get("exit_code")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("%s is still %s after %s s" % (self.container_id, c["status"], timeout))
            time.sleep(0.2)

    def terminate(self) -> bool:
        """Stops the container; True once it has stopped."""
        self._client.call("POST", "/v1/containers/%s/stop" % self.container_id, {})
        self.wait(timeout=120)
        return True

    def __repr__(self) -> str:
        return "PodInstance(container_id=%r, url=%r, ok=%r)" % (self.container_id, self.url, self.ok)


class DeploymentInstance:
    def __init__(self, name: str, version: int, container_id: str, urls: List[str], ports: List[int]):
        self.name = name
        self.version = version
        self.container_id = container_id
        self.ok = True
        self.urls: Dict[int, str] = dict(zip(ports, urls))
        self.url = urls[0] if urls else ""

    def __repr__(self) -> str:
        return "DeploymentInstance(name=%r, version=%r, url=%r)" % (self.name, self.version, self.url)


class Pod:
    """A container to run: image, command, ports, resources. `Pod()` alone is berth's
    default image (Debian with python3) idling until terminated or past keep-warm."""

    def __init__(
        self,
        app: str = "",
        entrypoint: Optional[Sequence[str]] = None,
        ports: Optional[Sequence[int]] = None,
        name: Optional[str] = None,
        cpu: Union[int, float, str] = 1.0,
        memory: Union[int, str] = 128,
        gpu: Optional[str] = None,
        image: Optional[Image] = None,
        env: Optional[Dict[str, str]] = None,
        keep_warm_seconds: int = 600,
        authorized: bool = False,
        volumes: Optional[Sequence[Volume]] = None,
        secrets: Optional[Sequence[str]] = None,
        **unknown: Any,
    ):
        refuse_unknown("Pod", unknown, _PARAMS)
        if image is not None and not isinstance(image, Image):
            raise InvalidArgument("image must be a berth.Image, not %r" % (image,))
        if ports is None:
            ports = []
        if isinstance(ports, int) or not all(isinstance(p, int) and not isinstance(p, bool) for p in ports):
            raise InvalidArgument("ports must be a list of port numbers, not %r" % (ports,))
        if not isinstance(keep_warm_seconds, int) or isinstance(keep_warm_seconds, bool):
            raise InvalidArgument("keep_warm_seconds must be a whole number of seconds (-1 for never)")
        for v in volumes or []:
            if not isinstance(v, Volume):
                raise InvalidArgument("volumes must be a list of berth.Volume, not %r" % (v,))
        self.app = app
        self.entrypoint = str_list(entrypoint, "entrypoint")
        self.ports = list(ports)
        self.name = name
        self.cpu = _quantity(cpu, "cpu")
        self.memory = _quantity(memory, "memory")
        self.gpu = gpu
        self.image = image if image is not None else Image()
        self.env = str_dict(env, "env")
        self.keep_warm_seconds = keep_warm_seconds
        self.authorized = authorized
        self.volumes = list(volumes or [])
        self.secrets = str_list(secrets, "secrets")
        self._client: Optional[Client] = None
        self._created: List[PodInstance] = []

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client()
        return self._client

    def _request(self, code: Optional[str]) -> Dict[str, Any]:
        req: Dict[str, Any] = {
            "image": self.image.to_api(),
            "ports": self.ports,
            "cpu": self.cpu,
            "memory": self.memory,
            "env": self.env,
            "keep_warm_seconds": self.keep_warm_seconds,
        }
        entrypoint = self.entrypoint
        if not entrypoint and not self.image.is_custom:
            # The default base has no long-running command of its own.
            entrypoint = ["sleep", "infinity"]
        if entrypoint:
            req["entrypoint"] = entrypoint
        if self.volumes:
            req["volumes"] = [v.to_api() for v in self.volumes]
        if self.secrets:
            req["secrets"] = self.secrets
        if code:
            req["code"] = code
            if not self.image.is_custom:
                req["workdir"] = CODE_MOUNT
        if self.gpu:
            req["gpu"] = self.gpu
        if self.authorized:
            req["authorized"] = True
        return req

    def _prepare(self, out: Output) -> str:
        """Builds or checks the image and uploads the working directory; the code digest."""
        image = self.image.to_api()
        out.line("=> Building image")
        if isinstance(image, dict):
            for event in self.client.stream_lines("POST", "/v1/images/build", image):
                if "log" in event and event["log"] != "=> Building image":
                    out.line(event["log"])
                elif "error" in event:
                    raise BuildError("the image build failed: %s" % event["error"])
        else:
            listed = self.client.call("GET", "/v1/images")["images"]
            if any(i["reference"] == image for i in listed):
                out.line("=> Using cached image")
            else:
                out.line("=> Pulling image %s" % image)
        out.line("=> Syncing files")
        packed = pack(os.getcwd())
        path = "/v1/code/%s" % packed.digest
        if self.client.status("HEAD", path) == 200:
            where = "already on the server"
        else:
            self.client.upload(path, packed.archive, "application/gzip")
            where = "uploaded"
        out.line("   %d files, %s (%s)" % (packed.files, _human(packed.bytes), where))
        return packed.digest

    def _follow(self, out: Output, container: Dict[str, Any]) -> Dict[str, Any]:
        """Polls the container until it runs or ends, showing its progress."""
        while True:
            if container.get("progress") and "layers" in container["progress"]:
                out.status(container["progress"])
            if container["status"] == "RUNNING" or container["status"] in TERMINAL:
                return container
            time.sleep(POLL_SECONDS)
            container = self.client.call("GET", "/v1/containers/%s" % container["id"])

    def create(self) -> PodInstance:
        """Launches the pod; returns once it runs (or failed to), printing each step."""
        out = Output()
        code = self._prepare(out)
        out.line("=> Creating container")
        container = self.client.call("POST", "/v1/containers", self._request(code))
        container = self._follow(out, container)
        if container["status"] == "RUNNING" or container.get("started_at"):
            out.line("=> Container created successfully ===> %s" % container["id"])
            instance = PodInstance(self.client, container, ok=True)
        else:
            reason = container.get("reason") or container["status"]
            out.line("=> Container failed: %s" % reason)
            instance = PodInstance(self.client, container, ok=False, error_msg=reason)
        self._created.append(instance)
        return instance

    def terminate(self) -> bool:
        """Stops every container this Pod created; True if any was stopped."""
        stopped = False
        for instance in self._created:
            if instance.status() not in TERMINAL:
                stopped = instance.terminate() or stopped
        return stopped

    def deploy(self, name: Optional[str] = None) -> DeploymentInstance:
        """Deploys a new version of the named deployment; returns once it serves."""
        name = name or self.name
        if not name:
            raise InvalidArgument("a deployment needs a name: Pod(name=...) or --name")
        out = Output()
        code = self._prepare(out)
        out.line("=> Creating container")
        answer = self.client.call("POST", "/v1/deployments", {"name": name, "pod": self._request(code)})
        version = answer["version"]["version"]
        out.line("=> Deploying %s v%d" % (name, version))
        container = self._follow(out, answer["container"])
        if container["status"] != "RUNNING":
            raise DeployError("%s v%d did not start: %s" % (
                name, version, container.get("reason") or container["status"]))
        deadline = time.monotonic() + DEPLOY_LIMIT_SECONDS
        while True:
            deployment = self.client.call("GET", "/v1/deployments/%s" % name)
            mine = [v for v in deployment["versions"] if v["version"] == version]
            status = mine[0]["status"] if mine else "FAILED"
            if status in ("ACTIVE", "REPLACED"):
                break
            if status == "FAILED":
                reason = mine[0].get("reason") if mine else "it disappeared"
                raise DeployError("%s v%d failed: %s" % (name, version, reason))
            if time.monotonic() > deadline:
                raise DeployError("%s v%d did not answer within %d s" % (name, version, DEPLOY_LIMIT_SECONDS))
            time.sleep(0.1)
        out.line("=> Deployed %s v%d ===> %s" % (name, version, container["id"]))
        for url in deployment["urls"]:
            out.line("✨ Deployment hosted at: %s" % url)
        return DeploymentInstance(name, version, container["id"], deployment["urls"], deployment["ports"])

    def __repr__(self) -> str:
        return "Pod(image=%r, entrypoint=%r, ports=%r)" % (self.image, self.entrypoint, self.ports)
