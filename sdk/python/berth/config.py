"""Where the server is: BERTH_GATEWAY and BERTH_TOKEN, else the client profile the server
writes on start (the same file the berth CLI reads)."""

import json
import os
from typing import Any, Dict, NamedTuple

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


def _read_profile(path: str) -> Dict[str, Any]:
    """The profile's fields; a missing file is no profile, a broken one is an error."""
    try:
        with open(path, encoding="utf-8") as f:
            profile = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ConfigError("cannot read the berth profile %s: %s" % (path, e)) from None
    if not isinstance(profile, dict):
        raise ConfigError("the berth profile %s is not a JSON object" % path)
    return profile


def load() -> Config:
    """Each of gateway and token from its env var, else from the profile (as the CLI does)."""
    path = profile_path()
    gateway = os.environ.get("BERTH_GATEWAY")
    token = os.environ.get("BERTH_TOKEN")
    if not (gateway and token):
        profile = _read_profile(path)
        gateway = gateway or profile.get("gateway")
        token = token or profile.get("token")
    if not gateway or not token:
        raise ConfigError(
            "no berth server configured: start one with `berth server` (it writes %s), "
            "or set BERTH_GATEWAY and BERTH_TOKEN" % path
        )
    return Config(str(gateway).rstrip("/"), str(token), path)
