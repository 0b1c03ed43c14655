"""Where the server is: BERTH_GATEWAY and BERTH_TOKEN, else the client profile the server
writes on start (the same file the berth CLI reads)."""

import json
import os
from typing import NamedTuple

from .errors import ConfigError


class Config(NamedTuple):
    gateway: str
    token: str
    profile_path: str


def profile_path() -> str:
    """$BERTH_PROFILE, else $XDG_CONFIG_HOME/berth/profile.json, else ~/.config/berth/profile.json."""
    explicit = os.environ.get("BERTH_PROFILE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "berth", "profile.json")


def load() -> Config:
    path = profile_path()
    profile = {}
    try:
        with open(path, encoding="utf-8") as f:
            profile = json.load(f)
    except (OSError, ValueError):
        pass
    gateway = os.environ.get("BERTH_GATEWAY") or profile.get("gateway")
    token = os.environ.get("BERTH_TOKEN") or profile.get("token")
    if not gateway or not token:
        raise ConfigError(
            "no berth server configured: start one with `berth server` (it writes %s), "
            "or set BERTH_GATEWAY and BERTH_TOKEN" % path
        )
    return Config(gateway.rstrip("/"), token, path)
