"""`Image`: a registry image, or an image built on the server from a base and cached steps."""

import os
import re
from typing import Any, Dict, List, Optional, Sequence, Union

from ._args import refuse_unknown, str_dict, str_list
from .errors import InvalidArgument
from .sync import pack

_PARAMS = ("python_version", "python_packages", "commands", "base_image", "env_vars",
           "conda_packages", "conda_channels")


def read_requirements(path: str) -> List[str]:
    """The packages of a requirements file; pip options in it are refused."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InvalidArgument("python_packages: cannot read %s: %s" % (path, e.strerror)) from None
    packages = []
    for number, line in enumerate(lines, 1):
        # pip's comments start at a `#` after whitespace; `url#egg=x` keeps its fragment.
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if not line:
            continue
        if line.startswith("-"):
            # Options (-r, -e, --index-url) need pip's own file handling, which the
            # server's step does not have: say so rather than send them as packages.
            raise InvalidArgument(
                "python_packages: line %d of %s is the pip option %r; berth takes package "
                "lines only (list the packages themselves)" % (number, path, line)
            )
        packages.append(line)
    return packages


def _python(version: Any, what: str) -> Optional[str]:
    """Like "python3.11"; a bare "3.11" gets the prefix the server expects."""
    if version is None:
        return None
    if not isinstance(version, str):
        raise InvalidArgument("%s must be a string like 'python3.11', not %r" % (what, version))
    return "python" + version if re.match(r"^\d+(\.\d+)*$", version) else version


def _packages(value: Union[str, Sequence[str], None]) -> List[str]:
    if isinstance(value, str):
        return read_requirements(value)
    return str_list(value, "python_packages")


def _envs(value: Union[Dict[str, str], Sequence[str], None]) -> Dict[str, str]:
    if isinstance(value, (list, tuple)):
        env = {}
        for pair in value:
            if not isinstance(pair, str) or "=" not in pair:
                raise InvalidArgument("env_vars: %r is not NAME=VALUE" % (pair,))
            name, _, val = pair.partition("=")
            env[name] = val
        return env
    return str_dict(value, "env_vars")


class Image:
    """What a pod runs.

    `Image(base_image="jupyter/base-notebook:latest")` with nothing else is that registry
    image as it is. Any other field builds an image on the server (on berth's Debian base
    with python3 when `base_image` is not given), every step cached. The builder methods
    change this Image and return it, so calls chain; each adds a step after the
    constructor's, in call order.
    """

    def __init__(
        self,
        python_version: Optional[str] = None,
        python_packages: Union[str, Sequence[str], None] = None,
        commands: Optional[Sequence[str]] = None,
        base_image: Optional[str] = None,
        env_vars: Union[Dict[str, str], Sequence[str], None] = None,
        conda_packages: Optional[Sequence[str]] = None,
        conda_channels: Optional[Sequence[str]] = None,
        **unknown: Any,
    ):
        refuse_unknown("Image", unknown, _PARAMS)
        if base_image is not None and not isinstance(base_image, str):
            raise InvalidArgument("base_image must be a registry reference (a string)")
        self.python_version = _python(python_version, "python_version")
        self.python_packages = _packages(python_packages)
        self.commands = str_list(commands, "commands")
        self.base_image = base_image
        self.env_vars = _envs(env_vars)
        self.conda_packages = str_list(conda_packages, "conda_packages")
        self.conda_channels = str_list(conda_channels, "conda_channels")
        if self.conda_channels and not self.conda_packages:
            raise InvalidArgument("conda_channels needs conda_packages to take from them")
        self.steps: List[Dict[str, Any]] = []
        # Set by from_dockerfile(): the Dockerfile's text, its context directory and args.
        self.dockerfile: Optional[str] = None
        self.context_dir: Optional[str] = None
        self.build_args: Dict[str, str] = {}
        self.context: Optional[str] = None  # the context's digest once uploaded

    @classmethod
    def from_dockerfile(cls, path: str, context_dir: Optional[str] = None,
                        build_args: Optional[Dict[str, str]] = None) -> "Image":
        """The image a Dockerfile describes, built on the server (multi-stage, ARG,
        COPY --from, RUN --mount=type=cache, USER, EXPOSE, CMD). `context_dir` (default: the
        Dockerfile's directory) is what COPY and ADD see, with its .dockerignore honoured;
        it is uploaded when the pod is created, and only if the server lacks it."""
        if not isinstance(path, str):
            raise InvalidArgument("from_dockerfile() takes the Dockerfile's path (a string)")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise InvalidArgument("dockerfile: cannot read %s: %s" % (path, e.strerror)) from None
        image = cls()
        image.dockerfile = text
        image.context_dir = context_dir if context_dir is not None else (os.path.dirname(path) or ".")
        image.build_args = str_dict(build_args, "build_args")
        return image

    def upload_context(self, client: Any) -> Optional[str]:
        """Packs and uploads a Dockerfile's context unless the server has it; returns how
        it went (for the log), or None when there is nothing to upload."""
        if self.dockerfile is None or self.context_dir is None:
            return None
        packed = pack(self.context_dir, dockerfile_context=True)
        where = "uploaded" if client.put_code(packed.digest, packed.archive) else "already on the server"
        self.context = packed.digest
        return "   build context %s: %d files (%s)" % (self.context_dir, packed.files, where)

    def _step(self, kind: str, key: str, value: Any) -> "Image":
        if value:  # an empty step would only add a cache layer that does nothing
            self.steps.append({"type": kind, key: value})
        return self

    def add_python_packages(self, packages: Union[str, Sequence[str]]) -> "Image":
        """pip-installs a list, or the packages of a requirements file, as a later step."""
        return self._step("python_packages", "packages", _packages(packages))

    def add_micromamba_packages(self, packages: Sequence[str],
                                channels: Optional[Sequence[str]] = None) -> "Image":
        """Installs conda packages (match specs like "gdal>=3.8") from `channels`
        (conda-forge by default) into /opt/conda as a later step, its bin first on PATH.
        The server solves and installs them itself: the image needs no conda."""
        packages = str_list(packages, "add_micromamba_packages()")
        if not packages:
            return self
        step: Dict[str, Any] = {"type": "conda_packages", "packages": packages}
        channels = str_list(channels, "channels")
        if channels:
            step["channels"] = channels
        self.steps.append(step)
        return self

    def add_commands(self, commands: Sequence[str]) -> "Image":
        """Runs shell lines (each with `sh -c`) as a later step."""
        return self._step("commands", "commands", str_list(commands, "commands"))

    def with_envs(self, env_vars: Union[Dict[str, str], Sequence[str]]) -> "Image":
        """Sets variables for later steps and the pod: a dict, or ["NAME=VALUE", ...]."""
        return self._step("env_vars", "env", _envs(env_vars))

    def from_registry(self, reference: str) -> "Image":
        if not isinstance(reference, str):
            raise InvalidArgument("from_registry() takes a registry reference (a string)")
        self.base_image = reference
        return self

    def add_python_version(self, version: str) -> "Image":
        self.python_version = _python(version, "add_python_version()")
        return self

    @property
    def is_custom(self) -> bool:
        """Whether it starts from an image of the user's rather than berth's default base."""
        return self.base_image is not None or self.dockerfile is not None

    def to_api(self) -> Union[str, Dict[str, Any]]:
        """The API's `image`: a reference string, or an image spec object."""
        spec: Dict[str, Any] = {}
        if self.dockerfile is not None:
            spec["dockerfile"] = self.dockerfile
            if self.context:
                spec["context"] = self.context
            if self.build_args:
                spec["build_args"] = self.build_args
        if self.base_image is not None:
            spec["base_image"] = self.base_image
        if self.python_version is not None:
            spec["python_version"] = self.python_version
        if self.conda_packages:
            spec["conda_packages"] = self.conda_packages
        if self.conda_channels:
            spec["conda_channels"] = self.conda_channels
        if self.python_packages:
            spec["python_packages"] = self.python_packages
        if self.commands:
            spec["commands"] = self.commands
        if self.env_vars:
            spec["env_vars"] = self.env_vars
        if self.steps:
            spec["steps"] = self.steps
        if list(spec) == ["base_image"]:
            return self.base_image  # type: ignore[return-value]
        return spec

    def __repr__(self) -> str:
        if self.dockerfile is not None:
            return "Image.from_dockerfile(context_dir=%r)" % (self.context_dir,)
        return "Image(%r)" % (self.to_api(),)
