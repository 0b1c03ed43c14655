"""Where the server is: BERTH_GATEWAY and BERTH_TOKEN, else the client profile the server
writes on start (the same file the berth CLI reads)."""

import json
import os
import ssl
from typing import Any, Dict, NamedTuple, Optional

from .errors import ConfigError


class Config(NamedTuple):
    gateway: str
    token: str
    profile_path: str
    # berth's local CA certificate (PEM path) when the server's ingress uses it.
    ca_cert: Optional[str] = None


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
    ca_cert = os.environ.get("BERTH_CA_CERT")
    if not (gateway and token):
        profile = _read_profile(path)
        gateway = gateway or profile.get("gateway")
        token = token or profile.get("token")
        ca_cert = ca_cert or profile.get("ca_cert")
    elif not ca_cert:
        # Only the CA from the profile: a broken profile is no error when the env has the rest.
        try:
            ca_cert = _read_profile(path).get("ca_cert")
        except ConfigError:
            pass
    if not gateway or not token:
        raise ConfigError(
            "no berth server configured: start one with `berth server` (it writes %s), "
            "or set BERTH_GATEWAY and BERTH_TOKEN" % path
        )
    return Config(str(gateway).rstrip("/"), str(token), path, str(ca_cert) if ca_cert else None)


def ssl_context(cfg: Optional[Config] = None) -> ssl.SSLContext:
    """The system's trust store plus berth's local CA, for HTTPS to pod URLs and the API:
    `urllib.request.urlopen(pod.url, context=berth.ssl_context())`."""
    if cfg is None:
        try:
            cfg = load()
        except Exception:  # no server configured: the system store alone
            cfg = None
    ctx = ssl.create_default_context()
    if cfg is not None and cfg.ca_cert and os.path.isfile(cfg.ca_cert):
        ctx.load_verify_locations(cafile=cfg.ca_cert)
    return ctx
