"""`python3 -m berth deploy|run app.py:pod`: what `berth deploy` and `berth run app.py:pod`
run, since only Python can load the module that defines the Pod."""

import argparse
import importlib.util
import os
import sys
from types import ModuleType
from typing import List, Optional, Tuple

from .errors import AppLoadError, BerthError, InvalidArgument
from .image import Image
from .pod import Pod


def _split_target(target: str) -> Tuple[str, str]:
    """`app.py:pod` -> ("app.py", "pod"); the name defaults to `pod`."""
    path, sep, attr = target.rpartition(":")
    if sep and attr.isidentifier():
        return path, attr
    return target, "pod"


def _load_module(path: str) -> ModuleType:
    # The app's own directory first, so `import helpers` next to app.py works.
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location("__berth_app__", path)
    if spec is None or spec.loader is None:
        raise AppLoadError("%s is not a Python module" % path)
    module = importlib.util.module_from_spec(spec)
    # Registered like any import, so dataclasses and pickling in the app find it.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise AppLoadError("%s line %s: %s" % (path, e.lineno, e.msg)) from None
    return module


def load_pod(target: str) -> Pod:
    """The Pod named by `FILE.py:NAME` (NAME defaults to `pod`)."""
    path, attr = _split_target(target)
    if not os.path.isfile(path):
        raise AppLoadError("%s: no such file (expected FILE.py:NAME, like app.py:pod)" % path)
    module = _load_module(path)
    if not hasattr(module, attr):
        pods = sorted(k for k, v in vars(module).items() if isinstance(v, Pod))
        where = "; Pods defined there: %s" % ", ".join(pods) if pods else "; it defines no Pod"
        raise AppLoadError("%s has no `%s`%s" % (path, attr, where))
    value = getattr(module, attr)
    if not isinstance(value, Pod):
        raise AppLoadError("`%s` in %s is a %s, not a berth.Pod" % (attr, path, type(value).__name__))
    return value


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m berth", description="Run or deploy a Pod defined in a Python module.")
    verbs = parser.add_subparsers(dest="verb", required=True)
    deploy = verbs.add_parser(
        "deploy", help="deploy the Pod as a named deployment with a stable URL",
        description="Build the image, sync the working directory and make a new version of "
                    "the deployment; returns once it serves at <name>-<port>.<domain>.")
    deploy.add_argument("app", help="FILE.py:NAME (default NAME: pod)")
    deploy.add_argument("--name", help="deployment name (default: the Pod's name=)")
    deploy.add_argument("--dockerfile", help="run this Dockerfile's image instead of the Pod's own")
    deploy.add_argument("--context", help="the Dockerfile's build context (default: its directory)")
    deploy.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="a value for one of the Dockerfile's ARGs; repeatable")
    run = verbs.add_parser(
        "run", help="create the Pod once and print its URLs",
        description="Build the image, sync the working directory and create one container; "
                    "exits 1 if it fails to start.")
    run.add_argument("app", help="FILE.py:NAME (default NAME: pod)")
    args = parser.parse_args(argv)
    try:
        pod = load_pod(args.app)
        if args.verb == "deploy" and args.dockerfile:
            build_args = {}
            for pair in args.build_arg:
                name, sep, value = pair.partition("=")
                if not sep:
                    raise InvalidArgument("--build-arg %r is not NAME=VALUE" % pair)
                build_args[name] = value
            pod.image = Image.from_dockerfile(args.dockerfile, args.context, build_args)
        elif args.verb == "deploy" and (args.context or args.build_arg):
            raise InvalidArgument("--context and --build-arg need --dockerfile")
        if args.verb == "deploy":
            pod.deploy(args.name)
            return 0
        instance = pod.create()
        if not instance.ok:
            return 1
        for url in instance.urls.values():
            print("✨ Container hosted at: %s" % url)
        return 0
    except BerthError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
