import os
import tempfile
import unittest

from berth import Image, InvalidArgument, Pod, Volume


class ImageTests(unittest.TestCase):
    def test_a_base_image_alone_is_a_plain_reference(self):
        self.assertEqual(Image(base_image="jupyter/base-notebook:latest").to_api(),
                         "jupyter/base-notebook:latest")
        self.assertEqual(Image().to_api(), {})

    def test_constructor_fields_then_chained_steps_in_call_order(self):
        image = (Image(python_packages=["six"], commands=["echo a"], env_vars={"A": "1"})
                 .add_commands(["echo b"])
                 .with_envs(["B=2"])
                 .add_python_packages(["attrs"])
                 .from_registry("debian:bookworm")
                 .add_python_version("python3.11"))
        self.assertEqual(image.to_api(), {
            "base_image": "debian:bookworm",
            "python_version": "python3.11",
            "python_packages": ["six"],
            "commands": ["echo a"],
            "env_vars": {"A": "1"},
            "steps": [
                {"type": "commands", "commands": ["echo b"]},
                {"type": "env_vars", "env": {"B": "2"}},
                {"type": "python_packages", "packages": ["attrs"]},
            ],
        })

    def test_requirements_files_are_read_and_pip_options_refused(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "requirements.txt")
            with open(path, "w") as f:
                f.write("# deps\nsix==1.16.0\n\nattrs  # inline\n")
            self.assertEqual(Image(python_packages=path).python_packages, ["six==1.16.0", "attrs"])
            with open(path, "w") as f:
                f.write("--index-url http://evil\n")
            with self.assertRaisesRegex(InvalidArgument, "pip option"):
                Image(python_packages=path)
        with self.assertRaisesRegex(InvalidArgument, "cannot read"):
            Image(python_packages="/no/such/requirements.txt")

    def test_bad_types_and_unknown_parameters_are_one_line_errors(self):
        with self.assertRaisesRegex(InvalidArgument, "commands must be a list"):
            Image(commands="echo hi")
        with self.assertRaisesRegex(InvalidArgument, r"Image\(\) has no parameter 'base'; did you mean 'base_image'\?"):
            Image(base="x")
        with self.assertRaisesRegex(InvalidArgument, r"Pod\(\) has no parameter 'cpus'; did you mean 'cpu'\?"):
            Pod(cpus=2)
        with self.assertRaisesRegex(InvalidArgument, "ports must be a list"):
            Pod(ports=8000)
        with self.assertRaisesRegex(InvalidArgument, "memory must be"):
            Pod(memory=[1])
        with self.assertRaisesRegex(InvalidArgument, "berth.Volume"):
            Pod(volumes=["data"])


class PodRequestTests(unittest.TestCase):
    def test_pod_with_no_arguments_idles_on_the_default_base_in_the_synced_code(self):
        req = Pod()._request("sha256:" + "a" * 64)
        self.assertEqual(req["image"], {})
        self.assertEqual(req["entrypoint"], ["sleep", "infinity"])
        self.assertEqual(req["workdir"], "/mnt/code")
        self.assertEqual(req["keep_warm_seconds"], 600)

    def test_a_custom_image_keeps_its_own_command_and_workdir(self):
        pod = Pod(image=Image(base_image="jupyter/base-notebook:latest"), memory="1Gi", cpu="1500m",
                  volumes=[Volume(name="data", mount_path="/data")], secrets=["TOKEN"], gpu="A10G")
        req = pod._request("sha256:" + "b" * 64)
        self.assertNotIn("entrypoint", req)
        self.assertNotIn("workdir", req)
        self.assertEqual((req["memory"], req["cpu"]), ("1Gi", "1500m"))
        self.assertEqual(req["volumes"], [{"name": "data", "mount_path": "/data"}])
        self.assertEqual(req["secrets"], ["TOKEN"])
        self.assertEqual(req["gpu"], "A10G")


if __name__ == "__main__":
    unittest.main()
