"""`Pod`: a container launched from an image, reachable at one URL per port; `create()` runs
one, `deploy()` makes a named deployment with a stable URL."""

import os
import time
from typing import Any, Dict, List, Optional, Sequence, Union

from ._args import refuse_unknown, str_dict, str_list
from .client import Client
from .errors import BuildError, DeployError, InvalidArgument
from .image import Image
from .instance import TERMINAL, DeploymentInstance, PodInstance
from .output import Output
from .sync import pack
from .volume import Volume

CODE_MOUNT = "/mnt/code"
POLL_SECONDS = 0.05
DEPLOY_LIMIT_SECONDS = 180
# The default base has no long-running command of its own: idle until stopped or keep-warm.
IDLE_ENTRYPOINT = ["sleep", "infinity"]

_PARAMS = (
    "app", "entrypoint", "ports", "name", "cpu", "memory", "gpu", "image", "env",
    "keep_warm_seconds", "authorized", "volumes", "secrets", "runtime", "block_network",
    "allow_list", "read_only_rootfs", "disk", "privileged_user", "init", "stop_signal",
    "stop_grace_seconds",
)
RUNTIMES = ("runc", "gvisor")


def _quantity(value: Any, what: str) -> Union[int, float, str]:
    """cpu and memory go to the server as given (it names a bad value); only the type is
    checked here."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidArgument("%s must be a number or a string like %s, not %r" % (
            what, '"1500m"' if what == "cpu" else '"1Gi"', value))
    return value


def _optional_str(value: Any, what: str) -> Optional[str]:
    if value is not None and not isinstance(value, str):
        raise InvalidArgument("%s must be a string, not %r" % (what, value))
    return value


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return "%.1f GiB" % n


class Pod:
    """A container to run: image, command, ports, resources.

    `Pod()` alone is berth's default image (Debian with python3) idling until terminated or
    idle past `keep_warm_seconds`. The working directory is synced to /mnt/code in the pod
    (the entrypoint's working directory on the default base).
    """

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
        runtime: Optional[str] = None,
        block_network: bool = False,
        allow_list: Optional[Sequence[str]] = None,
        read_only_rootfs: bool = False,
        disk: Optional[Union[int, str]] = None,
        privileged_user: bool = False,
        init: bool = True,
        stop_signal: Optional[str] = None,
        stop_grace_seconds: Optional[int] = None,
        **unknown: Any,
    ):
        refuse_unknown("Pod", unknown, _PARAMS)
        if image is not None and not isinstance(image, Image):
            raise InvalidArgument("image must be a berth.Image, not %r" % (image,))
        if ports is None:
            ports = []
        if isinstance(ports, (int, str)) or not all(
            isinstance(p, int) and not isinstance(p, bool) for p in ports
        ):
            raise InvalidArgument("ports must be a list of port numbers, not %r" % (ports,))
        if not isinstance(keep_warm_seconds, int) or isinstance(keep_warm_seconds, bool):
            raise InvalidArgument("keep_warm_seconds must be a whole number of seconds (-1 for never)")
        if not isinstance(authorized, bool):
            raise InvalidArgument("authorized must be True or False, not %r" % (authorized,))
        if runtime is not None and runtime not in RUNTIMES:
            raise InvalidArgument("runtime must be one of %s, not %r" % (", ".join(RUNTIMES), runtime))
        if not isinstance(block_network, bool):
            raise InvalidArgument("block_network must be True or False, not %r" % (block_network,))
        allow_list = str_list(allow_list, "allow_list")
        if block_network and allow_list:
            raise InvalidArgument("block_network cuts all egress; give it or allow_list, not both")
        if not isinstance(read_only_rootfs, bool):
            raise InvalidArgument("read_only_rootfs must be True or False, not %r" % (read_only_rootfs,))
        if not isinstance(privileged_user, bool):
            raise InvalidArgument("privileged_user must be True or False, not %r" % (privileged_user,))
        if not isinstance(init, bool):
            raise InvalidArgument("init must be True or False, not %r" % (init,))
        if stop_grace_seconds is not None and (
            not isinstance(stop_grace_seconds, int) or isinstance(stop_grace_seconds, bool)
            or stop_grace_seconds < 0
        ):
            raise InvalidArgument("stop_grace_seconds must be a whole number of seconds, not %r"
                                  % (stop_grace_seconds,))
        if isinstance(volumes, Volume):
            volumes = [volumes]
        for v in volumes or []:
            if not isinstance(v, Volume):
                raise InvalidArgument("volumes must be a list of berth.Volume, not %r" % (v,))
        self.app = _optional_str(app, "app") or ""
        self.entrypoint = str_list(entrypoint, "entrypoint")
        self.ports = list(ports)
        self.name = _optional_str(name, "name")
        self.cpu = _quantity(cpu, "cpu")
        self.memory = _quantity(memory, "memory")
        self.gpu = _optional_str(gpu, "gpu")
        self.image = image if image is not None else Image()
        self.env = str_dict(env, "env")
        self.keep_warm_seconds = keep_warm_seconds
        self.authorized = authorized
        self.volumes = list(volumes or [])
        self.secrets = str_list(secrets, "secrets")
        self.runtime = runtime
        self.block_network = block_network
        self.allow_list = allow_list
        self.read_only_rootfs = read_only_rootfs
        self.privileged_user = privileged_user
        self.init = init
        self.stop_signal = _optional_str(stop_signal, "stop_signal")
        self.stop_grace_seconds = stop_grace_seconds
        self.disk = None if disk is None else _quantity(disk, "disk")
        self._client: Optional[Client] = None
        self._created: List[PodInstance] = []

    @property
    def client(self) -> Client:
        # Configured on first use, so defining a Pod in a module needs no server.
        if self._client is None:
            self._client = Client()
        return self._client

    def _request(self, code: Optional[str]) -> Dict[str, Any]:
        """The create request; empty fields are left out so older servers need not know them."""
        req: Dict[str, Any] = {
            "image": self.image.to_api(),
            "cpu": self.cpu,
            "memory": self.memory,
            "keep_warm_seconds": self.keep_warm_seconds,
        }
        if self.ports:
            req["ports"] = self.ports
        if self.env:
            req["env"] = self.env
        entrypoint = self.entrypoint
        if not entrypoint and not self.image.is_custom:
            entrypoint = IDLE_ENTRYPOINT
        if entrypoint:
            req["entrypoint"] = list(entrypoint)
        if self.volumes:
            req["volumes"] = [v.to_api() for v in self.volumes]
        if self.secrets:
            req["secrets"] = self.secrets
        if code:
            req["code"] = code
            # A custom image keeps its own working directory; berth's base has none worth it.
            if not self.image.is_custom:
                req["workdir"] = CODE_MOUNT
        if self.gpu is not None:
            req["gpu"] = self.gpu
        if self.authorized:
            req["authorized"] = True
        if self.runtime:
            req["runtime"] = self.runtime
        if self.block_network:
            req["block_network"] = True
        if self.allow_list:
            req["allow_list"] = self.allow_list
        if self.read_only_rootfs:
            req["read_only_rootfs"] = True
        if self.privileged_user:
            req["privileged_user"] = True
        if self.disk is not None:
            req["disk"] = self.disk
        if not self.init:
            req["init"] = False
        if self.stop_signal is not None:
            req["stop_signal"] = self.stop_signal
        if self.stop_grace_seconds is not None:
            req["stop_grace_seconds"] = self.stop_grace_seconds
        return req

    def _build(self, out: Output) -> None:
        """Step 1: build the image spec (its log as it comes), or check the reference."""
        # Printed at once, before the server answers; its own copy of the line is dropped.
        out.line("=> Building image")
        uploaded = self.image.upload_context(self.client)
        if uploaded:
            out.line(uploaded)
        image = self.image.to_api()
        if isinstance(image, dict):
            done = False
            for event in self.client.stream_lines("POST", "/v1/images/build", image):
                if "error" in event:
                    raise BuildError("the image build failed: %s" % event["error"])
                if "done" in event:
                    done = True
                elif "log" in event and event["log"] != "=> Building image":
                    out.line(event["log"])
            if not done:
                raise BuildError("the image build stream ended without a result")
        else:
            listed = self.client.call("GET", "/v1/images")["images"]
            if any(i.get("reference") == image for i in listed):
                out.line("=> Using cached image")
            else:
                out.line("=> Pulling image %s" % image)

    def _sync(self, out: Output) -> str:
        """Step 2: upload the working directory unless the server has it; its digest."""
        out.line("=> Syncing files")
        packed = pack(os.getcwd())
        for rel in packed.skipped_links:
            out.line("   skipped %s: a symlink out of the directory" % rel)
        sent = self.client.put_code(packed.digest, packed.archive)
        where = "uploaded" if sent else "already on the server"
        out.line("   %d files, %s (%s)" % (packed.files, _human(packed.bytes), where))
        return packed.digest

    def _follow(self, out: Output, container: Dict[str, Any]) -> Dict[str, Any]:
        """Polls the container until it runs or ends, showing each new progress line."""
        # Lines that only restate the step already printed.
        quiet = {"Building image", "Creating container", "Pulling image %s" % container.get("image")}
        while True:
            progress = container.get("progress")
            if progress and progress not in quiet:
                out.status(progress)
            if container["status"] == "RUNNING" or container["status"] in TERMINAL:
                out.end_status()
                return container
            time.sleep(POLL_SECONDS)
            container = self.client.call("GET", "/v1/containers/%s" % container["id"])

    def create(self) -> PodInstance:
        """Launches the pod and returns once it runs, printing each step. A pod that ends or
        fails before running comes back with ok=False and error_msg (no exception); a
        request the server refuses raises."""
        out = Output()
        self._build(out)
        code = self._sync(out)
        out.line("=> Creating container")
        container = self.client.call("POST", "/v1/containers", self._request(code))
        container = self._follow(out, container)
        # One that ran and already exited (a quick script) was still created.
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
        """Stops every container this Pod created that still runs, all at once (the server
        stops them side by side, so many take about one grace period); True if any was."""
        running = [i for i in self._created if i.status() not in TERMINAL]
        limits = [i._ask_to_stop() for i in running]
        ended = [i._wait_ended(limit) for i, limit in zip(running, limits)]
        return any(ended)

    def deploy(self, name: Optional[str] = None) -> DeploymentInstance:
        """Deploys a new version of the named deployment; returns once that version serves."""
        name = _optional_str(name, "name") or self.name
        if not name:
            raise InvalidArgument("a deployment needs a name: Pod(name=...) or --name")
        out = Output()
        self._build(out)
        code = self._sync(out)
        answer = self.client.call("POST", "/v1/deployments", {"name": name, "pod": self._request(code)})
        version = answer["version"]["version"]
        out.line("=> Deploying %s v%d" % (name, version))
        container = self._follow(out, answer["container"])
        if container["status"] != "RUNNING":
            raise DeployError("%s v%d did not start: %s" % (
                name, version, container.get("reason") or container["status"]))
        deployment = self._wait_active(name, version)
        out.line("=> Deployed %s v%d ===> %s" % (name, version, container["id"]))
        for url in deployment["urls"]:
            out.line("✨ Deployment hosted at: %s" % url)
        return DeploymentInstance(name, version, container["id"], deployment["urls"], deployment["ports"])

    def _wait_active(self, name: str, version: int) -> Dict[str, Any]:
        """Polls the deployment until `version` serves (ACTIVE, or REPLACED already by a
        newer deploy); FAILED or no answer within the limit raises DeployError."""
        deadline = time.monotonic() + DEPLOY_LIMIT_SECONDS
        while True:
            deployment = self.client.call("GET", "/v1/deployments/%s" % name)
            mine = [v for v in deployment.get("versions", []) if v.get("version") == version]
            if not mine:
                raise DeployError("%s v%d is no longer listed (was the deployment deleted?)" % (name, version))
            status = mine[0]["status"]
            if status in ("ACTIVE", "REPLACED"):
                return deployment
            if status == "FAILED":
                raise DeployError("%s v%d failed: %s" % (name, version, mine[0].get("reason") or "no reason given"))
            if time.monotonic() > deadline:
                raise DeployError("%s v%d is still %s after %d s" % (name, version, status, DEPLOY_LIMIT_SECONDS))
            time.sleep(POLL_SECONDS * 2)

    def __repr__(self) -> str:
        return "Pod(image=%r, entrypoint=%r, ports=%r)" % (self.image, self.entrypoint, self.ports)
