"""Pod.deploy() against a fake server: to ACTIVE, to FAILED, and a container that never runs."""

import unittest

from berth import DeployError, InvalidArgument, Pod
from tests.fake_server import ServerCase, container, in_turn


def version(status, reason=None):
    return {"id": "web-v1", "name": "web", "version": 1, "status": status,
            "reason": reason, "container_id": "pod-s-1", "created_at": 1}


def deployment(status, reason=None):
    return {"name": "web", "status": "ACTIVE", "version": 1, "ports": [8000],
            "urls": ["http://web-8000.localhost"], "containers": ["pod-s-1"], "created_at": 1,
            "versions": [version(status, reason)]}


class DeployTests(ServerCase):
    def setUp(self):
        super().setUp()
        self.server.on("POST", "/v1/deployments", 202, {
            "deployment": deployment("DEPLOYING"), "version": version("DEPLOYING"),
            "container": container(deployment_id="web-v1")})
        self.server.on("GET", "/v1/containers/pod-s-1", 200, container(status="RUNNING", started_at=2))

    def test_deploy_waits_for_the_version_to_serve(self):
        self.server.on_call("GET", "/v1/deployments/web", in_turn(
            (200, deployment("DEPLOYING")), (200, deployment("ACTIVE"))))
        d, out = self.run_quietly(lambda: Pod(name="web", ports=[8000]).deploy())
        self.assertEqual((d.name, d.version, d.url, d.ok), ("web", 1, "http://web-8000.localhost", True))
        self.assertEqual((d.container_id, d.urls), ("pod-s-1", {8000: "http://web-8000.localhost"}))
        self.assertEqual([l for l in out.splitlines() if not l.startswith("   ")], [
            "=> Building image", "=> Using cached image", "=> Syncing files",
            "=> Deploying web v1",
            "=> Deployed web v1 ===> pod-s-1",
            "✨ Deployment hosted at: http://web-8000.localhost"])
        sent = self.server.bodies("POST", "/v1/deployments")[0]
        self.assertEqual(sent["name"], "web")
        self.assertEqual(sent["pod"]["ports"], [8000])
        self.assertRegex(sent["pod"]["code"], "^sha256:")
        self.assertEqual(len([p for m, p in self.paths() if p == "/v1/deployments/web"]), 2)

    def test_the_name_argument_wins_over_the_pods(self):
        self.server.on("GET", "/v1/deployments/web", 200, deployment("ACTIVE"))
        self.run_quietly(lambda: Pod(name="other").deploy("web"))
        self.assertEqual(self.server.bodies("POST", "/v1/deployments")[0]["name"], "web")

    def test_a_failed_version_raises_with_its_reason(self):
        self.server.on("GET", "/v1/deployments/web", 200, deployment("FAILED", "it did not answer on 8000"))
        with self.assertRaisesRegex(DeployError, "^web v1 failed: it did not answer on 8000$"):
            self.run_quietly(lambda: Pod(name="web").deploy())

    def test_a_container_that_ends_before_running_raises(self):
        self.server.on("GET", "/v1/containers/pod-s-1", 200,
                       container(status="FAILED", reason="image nope not found"))
        with self.assertRaisesRegex(DeployError, "web v1 did not start: image nope not found"):
            self.run_quietly(lambda: Pod(name="web").deploy())
        self.assertNotIn(("GET", "/v1/deployments/web"), self.paths())

    def test_a_deployment_needs_a_name(self):
        with self.assertRaisesRegex(InvalidArgument, r"^a deployment needs a name: Pod\(name=...\) or --name$"):
            Pod().deploy()
        self.assertEqual(self.server.requests, [])


if __name__ == "__main__":
    unittest.main()
