"""`python3 -m berth run|deploy app.py:pod`: loading the Pod, one-line errors, exit codes."""

import contextlib
import io
import os
import subprocess
import sys
import unittest

from berth.cli import main as cli_main
from tests.fake_server import ServerCase, container

SDK = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class CliTests(ServerCase):
    def setUp(self):
        super().setUp()
        # Loading an app puts its directory on sys.path; leave no trace for other tests.
        saved = list(sys.path)
        self.addCleanup(lambda: sys.path.__setitem__(slice(None), saved))
        self.addCleanup(sys.modules.pop, "__berth_app__", None)

    def write(self, name, source):
        with open(name, "w") as f:
            f.write(source)

    def cli(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def assert_one_line_error(self, argv, message):
        code, _, err = self.cli(*argv)
        self.assertEqual(code, 1)
        self.assertEqual(err, "error: %s\n" % message)

    def test_targets_that_name_no_pod_are_one_line_errors(self):
        self.write("app.py", "from berth import Pod\npod = Pod()\nweb = Pod()\n")
        self.assert_one_line_error(["deploy", "app.py:pd"], "app.py has no `pd`; Pods defined there: pod, web")
        self.write("strs.py", "pod = 'x'\n")
        self.assert_one_line_error(["run", "strs.py:pod"], "`pod` in strs.py is a str, not a berth.Pod")
        self.assert_one_line_error(["deploy", "strs.py"], "`pod` in strs.py is a str, not a berth.Pod")
        self.assert_one_line_error(["deploy", "nosuch.py:pod"],
                                   "nosuch.py: no such file (expected FILE.py:NAME, like app.py:pod)")
        self.write("broken.py", "pod = (\n")
        code, _, err = self.cli("run", "broken.py:pod")
        self.assertEqual(code, 1)
        self.assertRegex(err, r"^error: broken.py line \d+: .+\n$")
        self.write("typo.py", "from berth import Pod\npod = Pod(cpus=2)\n")
        self.assert_one_line_error(["deploy", "typo.py:pod"], "Pod() has no parameter 'cpus'; did you mean 'cpu'?")

    def test_the_apps_directory_comes_first_on_the_path(self):
        os.mkdir("proj")
        self.write("proj/helpers.py", "PORT = 8000\n")
        self.write("proj/app.py", "from berth import Pod\nimport helpers\npod = Pod(ports=[helpers.PORT])\n")
        self.server.on("POST", "/v1/containers", 202, container(status="RUNNING", started_at=1))
        code, out, err = self.cli("run", "proj/app.py")
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(self.server.bodies("POST", "/v1/containers")[0]["ports"], [8000])
        self.assertTrue(out.endswith("✨ Container hosted at: http://s-8000.localhost\n"))

    def test_run_exits_1_when_the_pod_fails_to_start(self):
        self.write("app.py", "from berth import Pod\npod = Pod()\n")
        self.server.on("POST", "/v1/containers", 202, container(status="FAILED", reason="no space left"))
        code, out, _ = self.cli("run", "app.py:pod")
        self.assertEqual(code, 1)
        self.assertIn("=> Container failed: no space left", out)
        self.assertNotIn("hosted at", out)

    def test_python_m_berth_prints_the_error_without_a_traceback(self):
        self.write("app.py", "x = 1\n")
        env = dict(os.environ, PYTHONPATH=SDK)
        proc = subprocess.run([sys.executable, "-m", "berth", "deploy", "app.py:pod"],
                              capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(proc.returncode, 1)
        self.assertEqual(proc.stderr, "error: app.py has no `pod`; it defines no Pod\n")
        help_text = subprocess.run([sys.executable, "-m", "berth", "run", "--help"],
                                   capture_output=True, text=True, env=env, timeout=60).stdout
        self.assertIn("FILE.py:NAME", help_text)


if __name__ == "__main__":
    unittest.main()
