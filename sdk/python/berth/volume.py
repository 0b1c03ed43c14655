"""`Volume`: a named directory on the server that outlives pods."""

from typing import Any, Dict, Optional

from ._args import refuse_unknown
from .errors import InvalidArgument


class Volume:
    """`Volume(name="data", mount_path="/data")`: the volume `data`, created on first use,
    mounted read-write at /data. The server checks the name and path."""

    # Both default to None only so a misspelt keyword is named before a missing one.
    def __init__(self, name: Optional[str] = None, mount_path: Optional[str] = None, **unknown: Any):
        refuse_unknown("Volume", unknown, ("name", "mount_path"))
        if not isinstance(name, str) or not isinstance(mount_path, str):
            raise InvalidArgument(
                "Volume(name=..., mount_path=...) takes two strings, like "
                "Volume(name=\"data\", mount_path=\"/data\")")
        self.name = name
        self.mount_path = mount_path

    def to_api(self) -> Dict[str, str]:
        return {"name": self.name, "mount_path": self.mount_path}

    def __repr__(self) -> str:
        return "Volume(name=%r, mount_path=%r)" % (self.name, self.mount_path)
