import hashlib
import io
import os
import tarfile
import gzip
import tempfile
import unittest
from unittest import mock

from berth import SyncError
from berth.sync import pack


def names(packed):
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(packed.archive))) as tar:
        return sorted(m.name for m in tar.getmembers())


class PackTests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.root = self.dir.name
        self.write("app.py", "print(1)\n")
        self.write("sub/data.txt", "hello")

    def tearDown(self):
        self.dir.cleanup()

    def write(self, rel, text):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_the_same_tree_packs_to_the_same_digest_whatever_the_times(self):
        first = pack(self.root)
        os.utime(os.path.join(self.root, "app.py"), (1, 1))
        os.utime(os.path.join(self.root, "sub"), (2, 2))
        self.assertEqual(pack(self.root).digest, first.digest)
        self.assertEqual(first.digest, "sha256:" + hashlib.sha256(first.archive).hexdigest())
        self.assertEqual(gzip.decompress(first.archive)[:0], b"")  # a valid gzip stream
        self.assertEqual(first.archive[4:8], b"\0\0\0\0")  # no time in the gzip header
        # The same files made in another order, elsewhere: the same bytes.
        other = tempfile.TemporaryDirectory()
        self.addCleanup(other.cleanup)
        os.makedirs(os.path.join(other.name, "sub"))
        with open(os.path.join(other.name, "sub", "data.txt"), "w") as f:
            f.write("hello")
        with open(os.path.join(other.name, "app.py"), "w") as f:
            f.write("print(1)\n")
        self.assertEqual(pack(other.name).digest, first.digest)
        self.write("app.py", "print(2)\n")
        self.assertNotEqual(pack(self.root).digest, first.digest)
        self.assertEqual((first.files, first.bytes), (2, 14))

    def test_vcs_caches_virtualenvs_and_ignored_paths_stay_out(self):
        self.write(".git/config", "x")
        self.write("__pycache__/a.pyc", "x")
        self.write("venv/pyvenv.cfg", "home = /usr")
        self.write("big.bin", "x")
        self.write("logs/a.log", "x")
        self.write("logs/keep.log", "x")
        self.write(".venv/lib/x.py", "x")
        self.write("sub/mod.pyc", "x")
        self.write("build/out.o", "x")
        self.write("sub/build", "a file, kept: the pattern is for directories")
        self.write(".berthignore", "big.bin\n*.log\n!keep.log\n/build/\n")
        self.assertEqual(names(pack(self.root)),
                         [".berthignore", "app.py", "logs", "logs/keep.log", "sub", "sub/build", "sub/data.txt"])

    def test_symlinks_inside_are_kept_and_links_out_skipped(self):
        outside = tempfile.TemporaryDirectory()
        self.addCleanup(outside.cleanup)
        os.symlink("sub/data.txt", os.path.join(self.root, "inside"))
        os.symlink("sub", os.path.join(self.root, "subdir"))
        os.symlink("/etc/passwd", os.path.join(self.root, "absolute"))
        os.symlink("../../x", os.path.join(self.root, "sub", "up"))
        os.symlink(outside.name, os.path.join(self.root, "sub", "away"))
        # In the tree by its path, out of it once resolved.
        os.symlink("sub/away", os.path.join(self.root, "via"))
        packed = pack(self.root)
        self.assertEqual(names(packed), ["app.py", "inside", "sub", "sub/data.txt", "subdir"])
        self.assertEqual(packed.skipped_links, ("absolute", "sub/away", "sub/up", "via"))
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(packed.archive))) as tar:
            link = tar.getmember("inside")
            self.assertTrue(link.issym())
            self.assertEqual(link.linkname, "sub/data.txt")

    def test_fifos_are_left_out(self):
        os.mkfifo(os.path.join(self.root, "pipe"))
        self.assertNotIn("pipe", names(pack(self.root)))

    def test_members_carry_no_owner_time_or_umask(self):
        script = self.write("run.sh", "#!/bin/sh\n")
        os.chmod(script, 0o700)
        os.chmod(os.path.join(self.root, "app.py"), 0o600)
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(pack(self.root).archive))) as tar:
            members = {m.name: m for m in tar.getmembers()}
        self.assertEqual({n: oct(m.mode) for n, m in members.items()},
                         {"app.py": "0o644", "run.sh": "0o755", "sub": "0o755", "sub/data.txt": "0o644"})
        for m in members.values():
            self.assertEqual((m.mtime, m.uid, m.gid, m.uname, m.gname), (0, 0, 0, "", ""))

    def test_over_the_cap_is_a_clear_error(self):
        self.write("big.bin", "x" * (1024 * 1024 + 200 * 1024))
        with mock.patch.dict(os.environ, {"BERTH_SYNC_LIMIT_MIB": "1"}):
            with self.assertRaises(SyncError) as caught:
                pack(self.root)
            self.assertEqual(str(caught.exception),
                             "the working directory %s holds 1.2 MiB to sync, over the 1 MiB limit: "
                             "add large paths to .berthignore" % self.root)
            self.write(".berthignore", "*.bin\n")
            self.assertEqual(pack(self.root).files, 3)


if __name__ == "__main__":
    unittest.main()


class DockerfileContextTests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.root = self.dir.name

    def tearDown(self):
        self.dir.cleanup()

    def write(self, rel, text="x"):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def test_dockerignore_reads_patterns_from_the_root_and_nothing_is_skipped_by_default(self):
        for rel in ("node_modules/a", "sub/node_modules/b", "notes.md", "README.md", ".git/HEAD"):
            self.write(rel)
        self.write(".dockerignore", "node_modules\n*.md\n!README.md\n")
        got = names(pack(self.root, dockerfile_context=True))
        self.assertIn("sub/node_modules/b", got)  # only the root's node_modules
        self.assertIn("README.md", got)
        self.assertIn(".git/HEAD", got)  # Docker sends .git unless told not to
        self.assertNotIn("node_modules/a", got)
        self.assertNotIn("notes.md", got)

    def test_a_symlink_out_of_the_context_is_refused(self):
        self.write("Dockerfile", "FROM busybox\n")
        os.symlink("/etc/passwd", os.path.join(self.root, "passwd"))
        with self.assertRaises(SyncError) as caught:
            pack(self.root, dockerfile_context=True)
        self.assertIn("symlink out of it: passwd", str(caught.exception))
