import io
import os
import tarfile
import gzip
import tempfile
import unittest
from unittest import mock

from berth import SyncError, ignore
from berth.sync import pack


def names(packed):
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(packed.archive))) as tar:
        return sorted(m.name for m in tar.getmembers())


class IgnoreTests(unittest.TestCase):
    def check(self, text, path, is_dir=False):
        return ignore.ignored(ignore.parse(text), path, is_dir)

    def test_gitignore_rules(self):
        self.assertTrue(self.check("*.log", "a/b/x.log"))
        self.assertFalse(self.check("*.log\n!keep.log", "a/keep.log"))
        self.assertTrue(self.check("/build", "build", True))
        self.assertFalse(self.check("/build", "src/build", True))
        self.assertTrue(self.check("data/", "x/data", True))
        self.assertFalse(self.check("data/", "x/data", False))
        self.assertTrue(self.check("docs/**/*.png", "docs/a/b/c.png"))
        self.assertTrue(self.check("docs/**/*.png", "docs/c.png"))
        self.assertFalse(self.check("docs/*.png", "docs/a/c.png"))
        self.assertTrue(self.check("file?.txt", "file1.txt"))
        self.assertTrue(self.check("# comment\n\nsecret[0-9]", "secret7"))
        self.assertFalse(self.check("# comment", "# comment"))


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
        self.assertEqual(pack(self.root).digest, first.digest)
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
        self.write(".berthignore", "big.bin\n*.log\n!keep.log\n")
        self.assertEqual(names(pack(self.root)),
                         [".berthignore", "app.py", "logs", "logs/keep.log", "sub", "sub/data.txt"])

    def test_symlinks_inside_are_kept_and_links_out_skipped(self):
        os.symlink("sub/data.txt", os.path.join(self.root, "inside"))
        os.symlink("/etc/passwd", os.path.join(self.root, "absolute"))
        os.symlink("../../x", os.path.join(self.root, "sub", "up"))
        packed = names(pack(self.root))
        self.assertIn("inside", packed)
        self.assertNotIn("absolute", packed)
        self.assertNotIn("sub/up", packed)

    def test_over_the_cap_is_a_clear_error(self):
        self.write("big.bin", "x" * 3000)
        with mock.patch.dict(os.environ, {"BERTH_SYNC_LIMIT_MIB": "0.001"}):
            with self.assertRaisesRegex(SyncError, "over the 0 MiB limit: add large paths to .berthignore"):
                pack(self.root)


if __name__ == "__main__":
    unittest.main()
