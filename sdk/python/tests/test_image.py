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

    def test_conda_packages_from_the_constructor_and_the_micromamba_builder(self):
        image = (Image(base_image="busybox", conda_packages=["hello"],
                       conda_channels=["file:///srv/chan"])
                 .add_micromamba_packages(["gdal>=3.8"])
                 .add_micromamba_packages(["r-base"], channels=["conda-forge", "bioconda"])
                 .add_micromamba_packages([]))
        self.assertEqual(image.to_api(), {
            "base_image": "busybox",
            "conda_packages": ["hello"],
            "conda_channels": ["file:///srv/chan"],
            "steps": [
                {"type": "conda_packages", "packages": ["gdal>=3.8"]},
                {"type": "conda_packages", "packages": ["r-base"],
                 "channels": ["conda-forge", "bioconda"]},
            ],
        })
        with self.assertRaisesRegex(InvalidArgument, "conda_channels needs conda_packages"):
            Image(conda_channels=["conda-forge"])
        with self.assertRaises(InvalidArgument):
            Image().add_micromamba_packages("numpy")

    def test_requirements_files_are_read_and_pip_options_refused(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "requirements.txt")
            with open(path, "w") as f:
                f.write("# deps\nsix==1.16.0\n\nattrs  # inline\n"
                        "pkg @ https://example.com/pkg.zip#sha256=ab\n")
            packages = ["six==1.16.0", "attrs", "pkg @ https://example.com/pkg.zip#sha256=ab"]
            self.assertEqual(Image(python_packages=path).python_packages, packages)
            self.assertEqual(Image().add_python_packages(path).to_api(),
                             {"steps": [{"type": "python_packages", "packages": packages}]})
            for option in ("-r base.txt", "--index-url http://mirror"):
                with open(path, "w") as f:
                    f.write("six\n%s\n" % option)
                with self.assertRaises(InvalidArgument) as caught:
                    Image(python_packages=path)
                self.assertEqual(str(caught.exception),
                                 "python_packages: line 2 of %s is the pip option %r; berth takes "
                                 "package lines only (list the packages themselves)" % (path, option))
        with self.assertRaisesRegex(InvalidArgument, "cannot read"):
            Image(python_packages="/no/such/requirements.txt")

    def test_empty_steps_are_left_out_and_bare_python_versions_completed(self):
        image = Image(python_version="3.11").add_commands([]).with_envs({}).add_python_packages([])
        self.assertEqual(image.to_api(), {"python_version": "python3.11"})
        self.assertEqual(Image().add_python_version("python3.12").to_api(), {"python_version": "python3.12"})
        # Chaining changes the Image itself.
        image = Image(base_image="busybox")
        self.assertIs(image.add_commands(["true"]), image)
        self.assertEqual(image.to_api(), {"base_image": "busybox",
                                          "steps": [{"type": "commands", "commands": ["true"]}]})

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
        with self.assertRaisesRegex(InvalidArgument, "^entrypoint must be a list of strings"):
            Pod(entrypoint="python app.py")
        with self.assertRaisesRegex(InvalidArgument, "^python_packages must be a list of strings"):
            Image(python_packages=[1])
        with self.assertRaisesRegex(InvalidArgument, "^env_vars: 'A' is not NAME=VALUE"):
            Image().with_envs(["A"])
        with self.assertRaisesRegex(InvalidArgument, "^env must be a dict of strings"):
            Pod(env={"A": 1})
        with self.assertRaisesRegex(InvalidArgument, r"^Volume\(\) has no parameter 'path'; did you mean 'mount_path'\?$"):
            Volume(name="data", path="/data")


class PodRequestTests(unittest.TestCase):
    def test_pod_with_no_arguments_idles_on_the_default_base_in_the_synced_code(self):
        req = Pod()._request("sha256:" + "a" * 64)
        self.assertEqual(req, {
            "image": {}, "cpu": 1.0, "memory": 128, "keep_warm_seconds": 600,
            "entrypoint": ["sleep", "infinity"], "code": "sha256:" + "a" * 64, "workdir": "/mnt/code"})
        self.assertEqual(Pod(entrypoint=["python", "app.py"])._request(None)["entrypoint"], ["python", "app.py"])
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


class DockerfileImageTests(unittest.TestCase):
    def test_from_dockerfile_sends_the_text_args_and_uploaded_context(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "Dockerfile")
            with open(path, "w") as f:
                f.write("FROM busybox\nCOPY . /app\n")
            image = Image.from_dockerfile(path, build_args={"V": "1"})
            self.assertEqual(image.context_dir, d)
            self.assertTrue(image.is_custom)
            self.assertEqual(image.to_api(), {"dockerfile": "FROM busybox\nCOPY . /app\n",
                                              "build_args": {"V": "1"}})

            class Client:
                sent = []

                def put_code(self, digest, archive):
                    self.sent.append(digest)
                    return True

            client = Client()
            self.assertIn("uploaded", image.upload_context(client))
            self.assertEqual(client.sent, [image.context])
            self.assertEqual(image.to_api()["context"], image.context)

    def test_a_missing_dockerfile_is_a_clear_error(self):
        with self.assertRaises(InvalidArgument) as caught:
            Image.from_dockerfile("/nonexistent/Dockerfile")
        self.assertIn("dockerfile: cannot read /nonexistent/Dockerfile", str(caught.exception))
