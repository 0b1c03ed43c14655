"""`Image`: a registry image, or an image built on the server from a base and cached steps."""

from typing import Any, Dict, List, Optional, Sequence, Union

from ._args import refuse_unknown, str_dict, str_list
from .errors import InvalidArgument

_PARAMS = ("python_version", "python_packages", "commands", "base_image", "env_vars")


def read_requirements(path: str) -> List[str]:
    """The packages of a requirements file; pip options in it are refused."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InvalidArgument("python_packages: cannot read %s: %s" % (path, e.strerror)) from None
    packages = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            raise InvalidArgument(
                "python_packages: %s has the pip option %r; list packages only" % (path, line)
            )
        packages.append(line)
    return packages


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
        **unknown: Any,
    ):
        refuse_unknown("Image", unknown, _PARAMS)
        if python_version is not None and not isinstance(python_version, str):
            raise InvalidArgument("python_version must be a string like 'python3.11'")
        if base_image is not None and not isinstance(base_image, str):
            raise InvalidArgument("base_image must be a registry reference (a string)")
        self.python_version = python_version
        self.python_packages = _packages(python_packages)
        self.commands = str_list(commands, "commands")
        self.base_image = base_image
        self.env_vars = _envs(env_vars)
        self.steps: List[Dict[str, Any]] = []

    def add_python_packages(self, packages: Union[str, Sequence[str]]) -> "Image":
        self.steps.append({"type": "python_packages", "packages": _packages(packages)})
        return self

    def add_commands(self, commands: Sequence[str]) -> "Image":
        self.steps.append({"type": "commands", "commands": str_list(commands, "commands")})
        return self

    def with_envs(self, env_vars: Union[Dict[str, str], Sequence[str]]) -> "Image":
        self.steps.append({"type": "env_vars", "env": _envs(env_vars)})
        return self

    def from_registry(self, reference: str) -> "Image":
        if not isinstance(reference, str):
            raise InvalidArgument("from_registry() takes a registry reference (a string)")
        self.base_image = reference
        return self

    def add_python_version(self, version: str) -> "Image":
        if not isinstance(version, str):
            raise InvalidArgument("add_python_version() takes a string like 'python3.11'")
        self.python_version = version
        return self

    @property
    def is_custom(self) -> bool:
        """Whether it starts from an image of the user's rather than berth's default base."""
        return self.base_image is not None

    def to_api(self) -> Union[str, Dict[str, Any]]:
        """The API's `image`: a reference string, or an image spec object."""
        spec: Dict[str, Any] = {}
        if self.base_image is not None:
            spec["base_image"] = self.base_image
        if self.python_version is not None:
            spec["python_version"] = self.python_version
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
        return "Image(%r)" % (self.to_api(),)
