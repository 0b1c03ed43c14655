import contextlib
import io
import json
import os
import tempfile
import unittest
from unittest import mock

from berth import AuthError, DeployError, InvalidArgument, Pod, ServerUnreachable
from berth import config
from berth.cli import main as cli_main
from tests.fake_server import FakeServer

CONTAINER = {
    "id": "pod-s-1", "stub_id": "s", "deployment_id": None, "status": "PENDING",
    "image": "busybox", "ports": [8000], "urls": ["http://s-8000.localhost"],
    "exit_code": None, "reason": None, "progress": None, "cpu_millis": 1000,
    "memory_mib": 128, "keep_warm_seconds": 600, "scheduled_at": 1,
    "started_at": None, "finished_at": None,
}


def container(**changes):
    c = dict(CONTAINER)
    c.update(changes)
    return c


class ServerCase(unittest.TestCase):
    """Each test talks to a fake server from an empty working directory."""

    def setUp(self):
        self.server = FakeServer()
        self.addCleanup(self.server.close)
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        cwd = os.getcwd()
        os.chdir(self.dir.name)
        self.addCleanup(os.chdir, cwd)
        env = mock.patch.dict(os.environ, {"BERTH_GATEWAY": self.server.url, "BERTH_TOKEN": "t",
                                           "BERTH_PROFILE": os.path.join(self.dir.name, "none.json")})
        env.start()
        self.addCleanup(env.stop)
        self.server.on("GET", "/v1/images", 200, {"images": []})
        self.server.on("POST", "/v1/images/build", 200,
                       b'{"log":"=> Using cached image"}\n{"done":{"image":"berth-build/k","cached":true}}\n')

    def run_quietly(self, fn):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            result = fn()
        return result, out.getvalue()


class CreateTests(ServerCase):
    def test_create_prints_the_guide_lines_and_sends_the_synced_code(self):
        with open("app.py", "w") as f:
            f.write("print(1)\n")
        self.server.on("POST", "/v1/containers", 202, container())
        self.server.on("GET", "/v1/containers/pod-s-1", 200, container(status="RUNNING", started_at=2))
        pod = Pod(image=__import__("berth").Image(base_image="busybox"), ports=[8000])
        nb, out = self.run_quietly(pod.create)
        self.assertEqual([l for l in out.splitlines() if l.startswith("=>")], [
            "=> Building image", "=> Pulling image busybox", "=> Syncing files",
            "=> Creating container", "=> Container created successfully ===> pod-s-1"])
        self.assertTrue(nb.ok)
        self.assertEqual((nb.url, nb.urls), ("http://s-8000.localhost", {8000: "http://s-8000.localhost"}))
        sent = self.server.bodies("POST", "/v1/containers")[0]
        self.assertTrue(sent["code"].startswith("sha256:"))
        self.assertNotIn("workdir", sent)  # a custom image keeps its own
        self.assertIn(("PUT", "/v1/code/" + sent["code"]), [(m, p) for m, p, _ in self.server.requests])

    def test_a_container_that_fails_to_start_is_not_ok_and_says_why(self):
        self.server.on("POST", "/v1/containers", 202, container())
        self.server.on("GET", "/v1/containers/pod-s-1", 200,
                       container(status="FAILED", reason="image busybox not found"))
        nb, out = self.run_quietly(Pod(image=__import__("berth").Image(base_image="busybox")).create)
        self.assertFalse(nb.ok)
        self.assertEqual(nb.error_msg, "image busybox not found")
        self.assertIn("=> Container failed: image busybox not found", out)

    def test_server_errors_carry_the_servers_message_and_no_urllib_chain(self):
        self.server.on("POST", "/v1/containers", 400,
                       {"error": {"code": "invalid_argument", "message": "cpu: 100 cores is too many"}})
        with self.assertRaises(InvalidArgument) as caught:
            self.run_quietly(Pod(cpu=100).create)
        self.assertEqual(str(caught.exception), "cpu: 100 cores is too many")
        self.assertTrue(caught.exception.__suppress_context__)
        self.server.on("POST", "/v1/containers", 401,
                       {"error": {"code": "unauthenticated", "message": "the bearer token is not valid"}})
        with self.assertRaisesRegex(AuthError, "refused the token: the bearer token is not valid; check BERTH_TOKEN"):
            self.run_quietly(Pod().create)

    def test_a_failed_build_raises_with_the_servers_reason(self):
        self.server.on("POST", "/v1/images/build", 200,
                       b'{"log":"=> Building image"}\n{"error":"step 1 (RUN false) exited with code 1"}\n')
        from berth import BuildError, Image
        with self.assertRaisesRegex(BuildError, "exited with code 1"):
            self.run_quietly(Pod(image=Image(commands=["false"])).create)

    def test_an_unreachable_server_is_a_one_line_hint(self):
        with mock.patch.dict(os.environ, {"BERTH_GATEWAY": "http://127.0.0.1:1"}):
            with self.assertRaisesRegex(ServerUnreachable, r"cannot reach the berth server at http://127.0.0.1:1 .*berth server"):
                self.run_quietly(Pod().create)


class DeployTests(ServerCase):
    def deployment(self, status, reason=None):
        return {"name": "web", "status": "ACTIVE", "version": 1, "ports": [8000],
                "urls": ["http://web-8000.localhost"], "containers": ["pod-s-1"], "created_at": 1,
                "versions": [{"id": "web-v1", "name": "web", "version": 1, "status": status,
                              "reason": reason, "container_id": "pod-s-1", "created_at": 1}]}

    def test_deploy_waits_for_the_version_to_serve(self):
        self.server.on("POST", "/v1/deployments", 202, {
            "deployment": self.deployment("DEPLOYING"),
            "version": self.deployment("DEPLOYING")["versions"][0], "container": container()})
        self.server.on("GET", "/v1/containers/pod-s-1", 200, container(status="RUNNING"))
        self.server.on("GET", "/v1/deployments/web", 200, self.deployment("ACTIVE"))
        d, out = self.run_quietly(lambda: Pod(name="web", ports=[8000]).deploy())
        self.assertEqual((d.name, d.version, d.url), ("web", 1, "http://web-8000.localhost"))
        self.assertIn("=> Deployed web v1 ===> pod-s-1", out)
        self.assertIn("✨ Deployment hosted at: http://web-8000.localhost", out)
        self.assertEqual(self.server.bodies("POST", "/v1/deployments")[0]["name"], "web")

    def test_a_failed_version_raises_with_its_reason(self):
        self.server.on("POST", "/v1/deployments", 202, {
            "deployment": self.deployment("DEPLOYING"),
            "version": self.deployment("DEPLOYING")["versions"][0], "container": container()})
        self.server.on("GET", "/v1/containers/pod-s-1", 200, container(status="RUNNING"))
        self.server.on("GET", "/v1/deployments/web", 200, self.deployment("FAILED", "it did not answer"))
        with self.assertRaisesRegex(DeployError, "web v1 failed: it did not answer"):
            self.run_quietly(lambda: Pod(name="web").deploy())

    def test_a_deployment_needs_a_name(self):
        with self.assertRaisesRegex(InvalidArgument, "needs a name"):
            Pod().deploy()


class ConfigTests(unittest.TestCase):
    def test_env_wins_over_the_profile_and_nothing_is_a_clear_error(self):
        with tempfile.TemporaryDirectory() as d:
            profile = os.path.join(d, "profile.json")
            with open(profile, "w") as f:
                json.dump({"gateway": "http://127.0.0.1:7070/", "token": "from-profile"}, f)
            with mock.patch.dict(os.environ, {"BERTH_PROFILE": profile}, clear=True):
                self.assertEqual(config.load()[:2], ("http://127.0.0.1:7070", "from-profile"))
                with mock.patch.dict(os.environ, {"BERTH_TOKEN": "from-env"}):
                    self.assertEqual(config.load().token, "from-env")
            with mock.patch.dict(os.environ, {"BERTH_PROFILE": os.path.join(d, "missing.json")}, clear=True):
                with self.assertRaisesRegex(config.ConfigError, "no berth server configured"):
                    config.load()


class CliTests(unittest.TestCase):
    def run_cli(self, source, target):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "app.py")
            with open(path, "w") as f:
                f.write(source)
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = cli_main(["deploy", target.replace("app.py", path)])
            return code, err.getvalue()

    def test_a_target_that_is_not_a_pod_is_a_one_line_error(self):
        code, err = self.run_cli("from berth import Pod\npod = Pod()\n", "app.py:pd")
        self.assertEqual(code, 1)
        self.assertRegex(err, r"^error: .*app.py has no `pd`; Pods defined there: pod\n$")
        code, err = self.run_cli("pod = 'x'\n", "app.py:pod")
        self.assertRegex(err, r"`pod` in .*app.py is a str, not a berth.Pod")
        code, err = self.run_cli("", "nosuch.py:pod")
        self.assertIn("no such file", err)


if __name__ == "__main__":
    unittest.main()
