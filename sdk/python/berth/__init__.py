"""berth: serverless containers on machines you own.

    from berth import Image, Pod

    nb = Pod(image=Image(base_image="jupyter/base-notebook:latest"), ports=[8888],
             entrypoint=["start-notebook.py"]).create()
    print(nb.url)
"""

from .config import ssl_context
from .errors import (
    AppLoadError,
    AuthError,
    BerthError,
    BuildError,
    ConfigError,
    Conflict,
    ContainerFailed,
    DeployError,
    ExecError,
    InvalidArgument,
    NotFound,
    ServerError,
    ServerUnreachable,
    SyncError,
)
from .files import FileInfo, PodFiles
from .image import Image
from .instance import DeploymentInstance, ExecResult, PodInstance
from .pod import Pod
from .volume import Volume

__version__ = "0.1.0"

__all__ = [
    "AppLoadError", "AuthError", "BerthError", "BuildError", "ConfigError", "Conflict",
    "ContainerFailed", "DeployError", "DeploymentInstance", "ExecError", "ExecResult", "FileInfo",
    "Image",
    "InvalidArgument",
    "NotFound", "Pod", "PodFiles", "PodInstance", "ServerError", "ServerUnreachable", "SyncError", "Volume",
    "ssl_context",
]
