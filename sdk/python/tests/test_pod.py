"""Pod.create() against a fake server: the printed steps, the requests sent, the handles."""

import gzip
import io
import json
import os
import tarfile
import tempfile
import unittest

from berth import BuildError, Image, InvalidArgument, NotFound, Pod, Volume
from berth.output import Output
from tests.fake_server import ServerCase, container, in_turn


def steps(out):
    return [line for line in out.splitlines() if line.startswith("=>")]


class CreateTests(ServerCase):
    def test_a_reference_image_prints_the_guide_steps_and_sends_the_synced_code(self):
        with open("app.py", "w") as f:
            f.write("print(1)\n")
        self.server.on("POST", "/v1/containers", 202, container())
        self.server.on("GET", "/v1/containers/pod-s-1", 200, container(status="RUNNING", started_at=2))
        pod = Pod(image=Image(base_image="busybox"), ports=[8000])
        nb, out = self.run_quietly(pod.create)
        self.assertEqual(steps(out), [
            "=> Building image", "=> Pulling image busybox", "=> Syncing files",
            "=> Creating container", "=> Container created successfully ===> pod-s-1"])
        self.assertIn("   1 files, 9 B (uploaded)", out)
        self.assertTrue(nb.ok)
        self.assertEqual((nb.url, nb.urls), ("http://s-8000.localhost", {8000: "http://s-8000.localhost"}))
        self.assertEqual(nb.container_id, "pod-s-1")
        sent = self.server.bodies("POST", "/v1/containers")[0]
        self.assertRegex(sent["code"], r"^sha256:[0-9a-f]{64}$")
        self.assertEqual(sent["image"], "busybox")
        self.assertNotIn("workdir", sent)  # a custom image keeps its own
        self.assertNotIn("entrypoint", sent)  # and its own command
        # The archive went up under its digest, and holds the working directory.
        put = [b for m, p, b in self.server.requests if m == "PUT"]
        self.assertIn(("PUT", "/v1/code/" + sent["code"]), self.paths())
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(put[0]))) as tar:
            self.assertEqual(tar.getnames(), ["app.py"])
        self.assertEqual(self.server.headers[0]["Authorization"], "Bearer t")

    def test_a_cached_reference_and_known_code_are_not_fetched_or_uploaded_again(self):
        self.server.on("GET", "/v1/images", 200, {"images": [
            {"reference": "busybox", "digest": "sha256:1", "layers": 1, "size_bytes": 1, "built": False}]})
        self.server.on("POST", "/v1/containers", 202, container(status="RUNNING", ports=[], urls=[]))
        pod = Pod(image=Image(base_image="busybox"))
        first, _ = self.run_quietly(pod.create)
        second, out = self.run_quietly(pod.create)
        self.assertEqual(steps(out)[:2], ["=> Building image", "=> Using cached image"])
        self.assertIn("(already on the server)", out)
        self.assertEqual([m for m, p in self.paths() if p.startswith("/v1/code/")],
                         ["HEAD", "PUT", "HEAD"])
        self.assertEqual((second.url, second.urls), ("", {}))

    def test_the_default_base_builds_idles_in_the_code_and_shows_progress(self):
        self.server.on("POST", "/v1/images/build", 200, b"".join([
            b'{"log":"=> Building image"}\n',
            b'{"log":"   step 1/1: pip install six"}\n',
            b'{"done":{"image":"berth-build/k","cached":false}}\n']))
        self.server.on("POST", "/v1/containers", 202, container(image="berth-build/k"))
        self.server.on_call("GET", "/v1/containers/pod-s-1", in_turn(
            (200, container(status="BUILDING", progress="Building image")),
            (200, container(status="PULLING", progress="Pulling image debian: 1/3 layers, 1.0 MiB")),
            (200, container(status="PULLING", progress="Pulling image debian: 1/3 layers, 1.0 MiB")),
            (200, container(status="PULLING", progress="Pulling image debian: 3/3 layers, 9.0 MiB")),
            (200, container(status="STARTING", progress="Creating container")),
            (200, container(status="RUNNING", started_at=3)),
        ))
        pod = Pod(image=Image(python_packages=["six"]), env={"A": "1"},
                  volumes=[Volume(name="data", mount_path="/data")])
        _, out = self.run_quietly(pod.create)
        self.assertEqual(out.splitlines(), [
            "=> Building image",
            "   step 1/1: pip install six",
            "=> Syncing files",
            "   0 files, 0 B (uploaded)",
            "=> Creating container",
            "   Pulling image debian: 1/3 layers, 1.0 MiB",
            "   Pulling image debian: 3/3 layers, 9.0 MiB",
            "=> Container created successfully ===> pod-s-1",
        ])
        self.assertEqual(self.server.bodies("POST", "/v1/images/build"), [{"python_packages": ["six"]}])
        sent = self.server.bodies("POST", "/v1/containers")[0]
        self.assertEqual(sent["image"], {"python_packages": ["six"]})
        self.assertEqual(sent["entrypoint"], ["sleep", "infinity"])
        self.assertEqual(sent["workdir"], "/mnt/code")
        self.assertEqual(sent["env"], {"A": "1"})
        self.assertEqual(sent["volumes"], [{"name": "data", "mount_path": "/data"}])
        self.assertNotIn("ports", sent)

    def test_a_container_that_fails_to_start_is_not_ok_and_says_why(self):
        self.server.on("POST", "/v1/containers", 202, container())
        self.server.on("GET", "/v1/containers/pod-s-1", 200,
                       container(status="FAILED", reason="image busybox not found"))
        nb, out = self.run_quietly(Pod(image=Image(base_image="busybox")).create)
        self.assertFalse(nb.ok)
        self.assertEqual(nb.error_msg, "image busybox not found")
        self.assertEqual(steps(out)[-1], "=> Container failed: image busybox not found")
        self.assertNotIn("=> Container created successfully", out)

    def test_a_failed_build_raises_with_the_servers_reason(self):
        self.server.on("POST", "/v1/images/build", 200,
                       b'{"log":"=> Building image"}\n{"error":"step 1 (RUN false) exited with code 1"}\n')
        with self.assertRaisesRegex(BuildError, "exited with code 1"):
            self.run_quietly(Pod(image=Image(commands=["false"])).create)
        self.assertEqual(self.server.bodies("POST", "/v1/containers"), [])


class IsolationTests(ServerCase):
    def test_runtime_and_egress_policy_are_sent_and_checked_first(self):
        self.server.on("POST", "/v1/containers", 202, container())
        self.server.on("GET", "/v1/containers/pod-s-1", 200, container(status="RUNNING", started_at=2))
        pod = Pod(image=Image(base_image="busybox"), runtime="gvisor", allow_list=["10.1.0.0/16"],
                  read_only_rootfs=True)
        self.run_quietly(pod.create)
        sent = self.server.bodies("POST", "/v1/containers")[0]
        self.assertEqual((sent["runtime"], sent["allow_list"], sent["read_only_rootfs"]),
                         ("gvisor", ["10.1.0.0/16"], True))
        self.assertNotIn("block_network", sent)
        from berth import InvalidArgument
        with self.assertRaisesRegex(InvalidArgument, "runtime must be one of runc, gvisor"):
            Pod(runtime="kata")
        with self.assertRaisesRegex(InvalidArgument, "not both"):
            Pod(block_network=True, allow_list=["10.0.0.0/8"])


class ProcessTests(ServerCase):
    def test_init_and_stop_settings_are_sent_only_when_not_the_defaults(self):
        self.server.on("POST", "/v1/containers", 202, container(status="RUNNING", started_at=2))
        self.run_quietly(Pod().create)
        self.run_quietly(Pod(init=False, stop_signal="SIGINT", stop_grace_seconds=30).create)
        default, own = self.server.bodies("POST", "/v1/containers")
        for key in ("init", "stop_signal", "stop_grace_seconds"):
            self.assertNotIn(key, default)
        self.assertEqual((own["init"], own["stop_signal"], own["stop_grace_seconds"]),
                         (False, "SIGINT", 30))
        with self.assertRaisesRegex(InvalidArgument, "init must be True or False"):
            Pod(init="no")
        with self.assertRaisesRegex(InvalidArgument, "stop_grace_seconds must be a whole number"):
            Pod(stop_grace_seconds=-1)
        with self.assertRaisesRegex(InvalidArgument, "stop_signal must be a string"):
            Pod(stop_signal=15)

    def test_terminate_asks_every_container_to_stop_before_waiting_for_any(self):
        self.server.on("POST", "/v1/containers", 202, container(status="RUNNING", started_at=2))
        pod = Pod()
        self.run_quietly(pod.create)
        self.run_quietly(pod.create)
        self.server.on("POST", "/v1/containers/pod-s-1/stop", 200,
                       container(status="STOPPING", stop_grace_seconds=30))
        self.server.on_call("GET", "/v1/containers/pod-s-1", in_turn(
            (200, container(status="RUNNING")), (200, container(status="RUNNING")),
            (200, container(status="STOPPED"))))
        del self.server.requests[:]
        self.assertTrue(pod.terminate())
        calls = self.paths()
        stops = [i for i, call in enumerate(calls) if call == ("POST", "/v1/containers/pod-s-1/stop")]
        waits = [i for i, call in enumerate(calls) if call == ("GET", "/v1/containers/pod-s-1")]
        # Two status checks, two stops, then the waiting.
        self.assertEqual(len(stops), 2)
        self.assertLess(stops[-1], waits[2])


class InstanceTests(ServerCase):
    def create(self, pod=None):
        self.server.on("POST", "/v1/containers", 202, container(status="RUNNING", started_at=2))
        pod = pod or Pod()
        return pod, self.run_quietly(pod.create)[0]

    def test_logs_wait_and_status(self):
        _, nb = self.create()
        self.server.on("GET", "/v1/containers/pod-s-1/logs", 200,
                       b"2026-01-01T00:00:00Z stdout hello world\n2026-01-01T00:00:01Z stderr oops\n")
        self.assertEqual(nb.logs(), "hello world\noops\n")
        self.server.on("GET", "/v1/containers/pod-s-1", 200, container(status="EXITED", exit_code=3))
        self.assertEqual(nb.status(), "EXITED")
        self.assertEqual(nb.wait(timeout=5), 3)
        self.server.on("GET", "/v1/containers/pod-s-1", 200, container(status="RUNNING"))
        with self.assertRaises(TimeoutError):
            nb.wait(timeout=0.1)

    def test_exec_collects_output_and_the_exit_code(self):
        _, nb = self.create()
        self.server.on("POST", "/v1/containers/pod-s-1/exec", 200,
                       b'{"stdout":"hel"}\n{"stderr":"warn\\n"}\n{"stdout":"lo\\n"}\n{"exit":3}\n')
        result = nb.exec("sh", "-c", "echo hello", env={"A": "b"}, timeout=5)
        self.assertEqual((result.exit_code, result.stdout, result.stderr, result.ok),
                         (3, "hello\n", "warn\n", False))
        sent = self.server.bodies("POST", "/v1/containers/pod-s-1/exec")[0]
        self.assertEqual(sent, {"command": ["sh", "-c", "echo hello"], "env": {"A": "b"},
                                "timeout_seconds": 5})
        self.server.on("POST", "/v1/containers/pod-s-1/exec", 200, b'{"error":"timed out"}\n')
        from berth import ExecError
        with self.assertRaisesRegex(ExecError, "timed out"):
            nb.exec(["sleep", "9"])

    def test_fs_moves_files_with_their_mode_and_lists_directories(self):
        _, nb = self.create()
        base = "/v1/containers/pod-s-1/files"
        self.server.on("PUT", base + "?path=%2Ftmp%2Fa.txt&mode=640", 201,
                       {"path": "/tmp/a.txt", "size": 5})
        self.assertEqual(nb.fs.write("/tmp/a.txt", "hello", mode=0o640), 5)
        sent = [b for m, p, b in self.server.requests if m == "PUT" and p.startswith(base)]
        self.assertEqual(sent, [b"hello"])

        with tempfile.TemporaryDirectory() as here:
            local = os.path.join(here, "data.csv")
            with open(local, "wb") as f:
                f.write(b"a,b\n")
            os.chmod(local, 0o600)
            self.server.on("PUT", base + "?path=%2Ftmp%2Fdata.csv&mode=600", 201,
                           {"path": "/tmp/data.csv", "size": 4})
            self.assertEqual(nb.fs.upload(local, "/tmp/"), 4)

            self.server.on("GET", base + "?path=%2Fetc%2Fhosts", 200, b"127.0.0.1 localhost\n")
            self.assertEqual(nb.fs.download("/etc/hosts", here), 20)
            with open(os.path.join(here, "hosts"), "rb") as f:
                self.assertEqual(f.read(), b"127.0.0.1 localhost\n")
            self.assertEqual(nb.fs.read("/etc/hosts"), b"127.0.0.1 localhost\n")
            # A failed download leaves no file behind.
            before = sorted(os.listdir(here))
            with self.assertRaises(NotFound):
                nb.fs.download("/nope", os.path.join(here, "nope"))
            self.assertEqual(sorted(os.listdir(here)), before)

        self.server.on("GET", base + "/list?path=%2Ftmp", 200, {"path": "/tmp", "truncated": False, "entries": [
            {"name": "a.txt", "kind": "file", "size": 5, "mode": "640", "modified": 7},
            {"name": "d", "kind": "directory", "size": 4096, "mode": "755", "modified": 7}]})
        entries = nb.fs.list("/tmp")
        self.assertEqual([(e.name, e.mode, e.is_dir) for e in entries],
                         [("a.txt", 0o640, False), ("d", 0o755, True)])
        with self.assertRaises(InvalidArgument):
            nb.fs.read("relative/path")

    def test_terminate_stops_what_the_pod_created(self):
        pod, nb = self.create()
        self.server.on("POST", "/v1/containers/pod-s-1/stop", 200, container(status="STOPPING"))
        self.server.on_call("GET", "/v1/containers/pod-s-1", in_turn(
            (200, container(status="RUNNING")),  # Pod.terminate's check
            (200, container(status="STOPPING")),
            (200, container(status="STOPPED"))))
        self.assertTrue(pod.terminate())
        self.assertEqual(self.server.bodies("POST", "/v1/containers/pod-s-1/stop"), [{}])
        # Everything it made has ended: nothing more to stop.
        self.assertFalse(pod.terminate())
        self.assertFalse(Pod().terminate())


class OutputTests(unittest.TestCase):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    def test_a_terminal_redraws_the_status_in_place_and_a_pipe_gets_lines(self):
        tty = self.Tty()
        out = Output(tty)
        out.status("1/3 layers")
        out.status("3/3 layers")
        out.end_status()
        out.line("=> done")
        self.assertEqual(tty.getvalue(),
                         "\r\033[K   1/3 layers\r\033[K   3/3 layers\r\033[K=> done\n")
        pipe = io.StringIO()
        out = Output(pipe)
        out.status("1/3 layers")
        out.status("1/3 layers")
        out.line("=> done")
        self.assertEqual(pipe.getvalue(), "   1/3 layers\n=> done\n")


if __name__ == "__main__":
    unittest.main()
