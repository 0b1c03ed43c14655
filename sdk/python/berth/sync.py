"""Packing the working directory for `/mnt/code`: a gzip'd tar that is the same bytes for
the same tree (sorted, no times, no owners), so its sha256 names it and an unchanged
directory is never uploaded twice."""

import gzip
import hashlib
import io
import os
import tarfile
from typing import List, NamedTuple, Tuple

from . import ignore
from .errors import SyncError

ALWAYS_SKIPPED_DIRS = {".git", "__pycache__", ".venv", ".hg", ".svn"}
DEFAULT_LIMIT_MIB = 100


class Packed(NamedTuple):
    digest: str  # "sha256:<hex>" of `archive`, the name the server stores it under
    bytes: int  # total size of the files packed
    files: int
    archive: bytes  # the gzip'd tar itself
    skipped_links: Tuple[str, ...] = ()  # symlinks left out: they point out of the tree


def limit_bytes() -> int:
    text = os.environ.get("BERTH_SYNC_LIMIT_MIB", str(DEFAULT_LIMIT_MIB))
    try:
        return int(float(text) * 1024 * 1024)
    except ValueError:
        raise SyncError("BERTH_SYNC_LIMIT_MIB=%r is not a number of MiB" % text) from None


def _is_virtualenv(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "pyvenv.cfg"))


def _link_stays_inside(root: str, full: str) -> bool:
    """Whether the link resolves (through any chain of links) to a path inside `root`;
    an absolute target is refused even when it points inside, since the tree moves to
    /mnt/code in the pod."""
    if os.readlink(full).startswith("/"):
        return False
    real_root = os.path.realpath(root)
    target = os.path.realpath(full)
    return target == real_root or target.startswith(real_root + os.sep)


def collect(root: str, dockerfile_context: bool = False) -> Tuple[List[Tuple[str, str]], List[str]]:
    """(kind, relative path) of everything to sync, sorted, where kind is dir, file or link;
    and the symlinks left out. A Dockerfile's context follows `.dockerignore` alone (no
    directory is skipped by default, as Docker sends them all)."""
    rules = []
    name = ".dockerignore" if dockerfile_context else ".berthignore"
    try:
        with open(os.path.join(root, name), encoding="utf-8") as f:
            rules = ignore.parse(f.read(), anchored=dockerfile_context)
    except OSError:
        pass
    always_skipped = set() if dockerfile_context else ALWAYS_SKIPPED_DIRS
    entries = []
    skipped = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        kept = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            rel = rel_dir + d
            if os.path.islink(full):
                filenames.append(d)  # packed as a link, never followed
                continue
            skipped_by_default = d in always_skipped or (not dockerfile_context and _is_virtualenv(full))
            if skipped_by_default or ignore.ignored(rules, rel, True):
                continue
            kept.append(d)
            entries.append(("dir", rel))
        dirnames[:] = kept
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = rel_dir + name
            if (name.endswith(".pyc") and not dockerfile_context) or ignore.ignored(rules, rel, False):
                continue
            if os.path.islink(full):
                if _link_stays_inside(root, full):
                    entries.append(("link", rel))
                else:
                    skipped.append(rel)
            elif os.path.isfile(full):  # sockets, fifos and devices are not files
                entries.append(("file", rel))
    return sorted(entries, key=lambda e: e[1]), sorted(skipped)


def pack(root: str = ".", dockerfile_context: bool = False) -> Packed:
    """The working directory (or, with `dockerfile_context`, a Dockerfile's build context)
    as a deterministic gzip'd tar, with its digest and sizes."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise SyncError("%s is not a directory" % root)
    try:
        return _pack(root, dockerfile_context)
    except OSError as e:  # a file vanished or is unreadable mid-walk
        raise SyncError("cannot pack %s: %s" % (root, e)) from None


def _pack(root: str, dockerfile_context: bool) -> Packed:
    entries, skipped = collect(root, dockerfile_context)
    if skipped and dockerfile_context:
        # A COPY of it would quietly miss: refused, as the server refuses it.
        raise SyncError("the build context %s has a symlink out of it: %s; copy what it points "
                        "to into the context instead" % (root, skipped[0]))
    limit = limit_bytes()
    total = sum(os.path.getsize(os.path.join(root, p)) for kind, p in entries if kind == "file")
    if total > limit:
        raise SyncError(
            "the working directory %s holds %.1f MiB to sync, over the %.0f MiB limit: "
            "add large paths to %s" % (root, total / 2**20, limit / 2**20,
                                       ".dockerignore" if dockerfile_context else ".berthignore")
        )
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=6) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for kind, rel in entries:
                full = os.path.join(root, rel)
                info = tarfile.TarInfo(rel)
                info.mtime = 0
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if kind == "dir":
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                elif kind == "link":
                    info.type, info.mode = tarfile.SYMTYPE, 0o777
                    info.linkname = os.readlink(full)
                    tar.addfile(info)
                else:
                    # The x bits alone decide (os.access would say yes to root for any).
                    st = os.stat(full)
                    info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                    info.size = st.st_size
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
    archive = buf.getvalue()
    files = sum(1 for kind, _ in entries if kind == "file")
    digest = "sha256:" + hashlib.sha256(archive).hexdigest()
    return Packed(digest, total, files, archive, tuple(skipped))
