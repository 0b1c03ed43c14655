"""`instance.fs`: files into and out of a running pod. Paths are the pod's own, absolute,
resolved inside it: `..` is refused and a symlink in the pod never leads outside it."""

import os
import tempfile
import urllib.parse
from typing import Any, Dict, List, Optional

from .client import Client
from .errors import InvalidArgument

CHUNK = 64 * 1024


class FileInfo:
    """One entry of `fs.list()`: `kind` is "file", "directory", "symlink" or "other"."""

    def __init__(self, entry: Dict[str, Any]):
        self.name: str = entry["name"]
        self.kind: str = entry["kind"]
        self.size: int = entry["size"]
        self.mode: int = int(entry["mode"], 8)
        self.modified: int = entry["modified"]

    @property
    def is_dir(self) -> bool:
        return self.kind == "directory"

    def __repr__(self) -> str:
        return "FileInfo(name=%r, kind=%r, size=%r, mode=%s)" % (
            self.name, self.kind, self.size, oct(self.mode))


def _checked(path: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidArgument("a path in the pod must be absolute, like /tmp/data.csv; got %r" % (path,))
    return path


class PodFiles:
    """The files of one running pod."""

    def __init__(self, client: Client, container_id: str):
        self._client = client
        self._base = "/v1/containers/%s/files" % container_id

    def _query(self, path: str, mode: Optional[int] = None) -> str:
        params = {"path": _checked(path)}
        if mode is not None:
            params["mode"] = "%o" % mode
        return "?" + urllib.parse.urlencode(params)

    def write(self, path: str, data: bytes, mode: int = 0o644) -> int:
        """Writes `data` (bytes or str) to `path` in the pod, replacing a file there; returns
        its size. The directory must exist."""
        if isinstance(data, str):
            data = data.encode()
        written = self._client.upload(self._base + self._query(path, mode), data,
                                      "application/octet-stream")
        return written["size"]

    def make_dir(self, path: str, mode: int = 0o755) -> bool:
        """Makes the directory `path` in the pod (its parent must exist), owned by the pod's
        user; False if a directory was already there."""
        made = self._client.call("POST", self._base + "/mkdir" + self._query(path, mode))
        return made["created"]

    def upload(self, local_path: str, path: str, mode: Optional[int] = None) -> int:
        """Copies a local file or directory to `path` in the pod (a `path` ending in `/`
        keeps the local name), with permission bits kept unless `mode` is given for a file;
        returns the bytes copied. In a directory, symlinks and special files are skipped."""
        if path.endswith("/"):
            path += os.path.basename(os.path.normpath(local_path))
        if os.path.isdir(local_path):
            return self._upload_dir(local_path, path)
        if mode is None:
            mode = os.stat(local_path).st_mode & 0o7777
        with open(local_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            written = self._client.upload_file(self._base + self._query(path, mode), f, size)
        return written["size"]

    def _upload_dir(self, local_dir: str, path: str) -> int:
        total = 0
        self.make_dir(path, os.stat(local_dir).st_mode & 0o7777)
        for entry in sorted(os.scandir(local_dir), key=lambda e: e.name):
            target = path.rstrip("/") + "/" + entry.name
            if entry.is_dir(follow_symlinks=False):
                total += self._upload_dir(entry.path, target)
            elif entry.is_file(follow_symlinks=False):
                total += self.upload(entry.path, target)
        return total

    def read(self, path: str) -> bytes:
        """The bytes of the file at `path` in the pod."""
        return self._client.read_bytes("GET", self._base + self._query(path))

    def download(self, path: str, local_path: str) -> int:
        """Copies the file or directory at `path` in the pod to `local_path` (into it, if a
        directory), a file written whole or not at all; returns the bytes copied. In a
        directory, the pod's symlinks and special files are skipped, never followed."""
        if os.path.isdir(local_path):
            local_path = os.path.join(local_path, path.rstrip("/").rsplit("/", 1)[-1])
        if self._is_dir(path):
            return self._download_dir(path, local_path)
        return self._download_file(path, local_path)

    def _download_file(self, path: str, local_path: str) -> int:
        directory = os.path.dirname(os.path.abspath(local_path))
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".berth-download-")
        try:
            with os.fdopen(fd, "wb") as out:
                size, mode = self._client.stream_to("GET", self._base + self._query(path), out)
            os.chmod(temp, mode)
            os.replace(temp, local_path)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
        return size

    def _is_dir(self, path: str) -> bool:
        try:
            self.list(path)
            return True
        except Exception:
            return False

    def _download_dir(self, path: str, local_dir: str) -> int:
        os.mkdir(local_dir)
        total = 0
        for entry in self.list(path):
            if entry.name in ("", ".", "..") or "/" in entry.name:
                continue  # names come from the pod: only plain ones make local paths
            remote = path.rstrip("/") + "/" + entry.name
            if entry.is_dir:
                total += self._download_dir(remote, os.path.join(local_dir, entry.name))
            elif entry.kind == "file":
                total += self._download_file(remote, os.path.join(local_dir, entry.name))
        return total

    def list(self, path: str = "/") -> List[FileInfo]:
        """The entries of the directory at `path` in the pod, by name; symlinks are listed
        as themselves."""
        listing = self._client.call("GET", self._base + "/list" + self._query(path))
        return [FileInfo(e) for e in listing["entries"]]
