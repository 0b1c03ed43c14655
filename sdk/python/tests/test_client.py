"""Errors from the server (and from no server), configuration, and the proxy bypass."""

import json
import os
import tempfile
import unittest
from unittest import mock

from berth import (AuthError, BerthError, ConfigError, InvalidArgument, NotFound, Pod,
                   ServerError, ServerUnreachable)
from berth import config
from berth.client import Client
from tests.fake_server import ServerCase, container, in_turn


def error(code, message):
    return {"error": {"code": code, "message": message}}


class ErrorTests(ServerCase):
    def raised(self, kind, fn):
        with self.assertRaises(kind) as caught:
            self.run_quietly(fn)
        e = caught.exception
        # No urllib exception chained for a traceback to show.
        self.assertTrue(e.__suppress_context__)
        self.assertIsNone(e.__cause__)
        return e

    def test_a_400_is_the_servers_message(self):
        self.server.on("POST", "/v1/containers", 400, error("invalid_argument", "cpu: 100 cores is too many"))
        e = self.raised(InvalidArgument, Pod(cpu=100).create)
        self.assertEqual(str(e), "cpu: 100 cores is too many")
        self.assertEqual((e.status, e.code), (400, "invalid_argument"))

    def test_a_busy_server_is_asked_again(self):
        busy = error("too_many_requests", "64 pod starts are already queued on this server")
        self.server.on_call("POST", "/v1/containers", in_turn(
            (429, busy), (202, container(status="RUNNING", started_at=2))))
        with mock.patch("berth.client.time.sleep") as slept:
            self.run_quietly(Pod().create)
        self.assertEqual(len(self.server.bodies("POST", "/v1/containers")), 2)
        slept.assert_called_once_with(1.0)

    def test_a_server_busy_past_the_retry_limit_is_an_error(self):
        busy = error("too_many_requests", "64 pod starts are already queued on this server")
        self.server.on("POST", "/v1/containers", 429, busy)
        with mock.patch("berth.client.BUSY_RETRY_SECONDS", 0):
            e = self.raised(BerthError, Pod().create)
        self.assertEqual((e.status, e.code), (429, "too_many_requests"))
        self.assertIn("already queued", str(e))

    def test_a_401_names_the_token_and_the_profile(self):
        self.server.on("POST", "/v1/containers", 401, error("unauthenticated", "the bearer token is not valid"))
        e = self.raised(AuthError, Pod().create)
        self.assertEqual(str(e), "the berth server refused the token: the bearer token is not valid; "
                                 "check BERTH_TOKEN or the profile %s" % os.environ["BERTH_PROFILE"])

    def test_413_404_and_5xx(self):
        self.server.on_call("PUT", "/v1/code/x", lambda body: (413, error("too_large", "the archive is over 100 MiB")))
        e = self.raised(InvalidArgument, lambda: Client().upload("/v1/code/x", b"x", "application/gzip"))
        self.assertEqual(str(e), "the archive is over 100 MiB")
        e = self.raised(NotFound, lambda: Client().call("GET", "/v1/deployments/nope"))
        self.assertEqual(str(e), "no route /v1/deployments/nope")
        self.server.on("GET", "/v1/volumes", 500, error("internal", "the store is read-only"))
        e = self.raised(ServerError, lambda: Client().call("GET", "/v1/volumes"))
        self.assertEqual(str(e), "the store is read-only")
        self.server.on("GET", "/v1/secrets", 502, b"<html>bad gateway</html>")
        e = self.raised(ServerError, lambda: Client().call("GET", "/v1/secrets"))
        self.assertEqual(str(e), "<html>bad gateway</html>")

    def test_an_answer_that_is_not_the_api_is_a_berth_error(self):
        self.server.on("GET", "/v1/images", 200, b"<html>a web page</html>")
        e = self.raised(ServerError, lambda: Client().call("GET", "/v1/images"))
        self.assertIn("not berth's API", str(e))

    def test_an_unreachable_server_is_a_one_line_hint(self):
        with mock.patch.dict(os.environ, {"BERTH_GATEWAY": "http://127.0.0.1:1"}):
            e = self.raised(ServerUnreachable, Pod().create)
        self.assertEqual(str(e), "cannot reach the berth server at http://127.0.0.1:1 (Connection refused); "
                                 "is `berth server` running? (BERTH_GATEWAY or the profile sets the address)")
        self.assertIsInstance(e, BerthError)

    def test_a_loopback_gateway_ignores_the_proxy_from_the_environment(self):
        self.server.on("GET", "/v1/volumes", 200, {"volumes": []})
        with mock.patch.dict(os.environ, {"http_proxy": "http://127.0.0.1:1", "HTTP_PROXY": "http://127.0.0.1:1",
                                          "no_proxy": "", "NO_PROXY": ""}):
            self.assertEqual(Client().call("GET", "/v1/volumes"), {"volumes": []})


class ConfigTests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def profile(self, rel, content):
        path = os.path.join(self.dir.name, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        return path

    def test_env_wins_over_the_profile(self):
        path = self.profile("p.json", {"gateway": "http://127.0.0.1:7070/", "token": "from-profile"})
        with mock.patch.dict(os.environ, {"BERTH_PROFILE": path}, clear=True):
            self.assertEqual(config.load()[:3], ("http://127.0.0.1:7070", "from-profile", path))
            with mock.patch.dict(os.environ, {"BERTH_GATEWAY": "http://10.0.0.1:7070", "BERTH_TOKEN": "from-env"}):
                self.assertEqual(config.load()[:2], ("http://10.0.0.1:7070", "from-env"))
            with mock.patch.dict(os.environ, {"BERTH_TOKEN": "from-env"}):
                # Each field on its own, as the berth CLI does.
                self.assertEqual(config.load()[:2], ("http://127.0.0.1:7070", "from-env"))

    def test_the_profile_is_found_under_xdg_config_home_then_home(self):
        xdg = self.profile("xdg/berth/profile.json", {"gateway": "http://127.0.0.1:1", "token": "xdg"})
        self.profile("home/.config/berth/profile.json", {"gateway": "http://127.0.0.1:2", "token": "home"})
        home = os.path.join(self.dir.name, "home")
        with mock.patch.dict(os.environ, {"XDG_CONFIG_HOME": os.path.dirname(os.path.dirname(xdg)),
                                          "HOME": home}, clear=True):
            self.assertEqual(config.load().token, "xdg")
        with mock.patch.dict(os.environ, {"HOME": home}, clear=True):
            self.assertEqual(config.load().token, "home")

    def test_nothing_configured_and_a_broken_profile_are_clear_errors(self):
        missing = os.path.join(self.dir.name, "missing.json")
        with mock.patch.dict(os.environ, {"BERTH_PROFILE": missing}, clear=True):
            with self.assertRaises(ConfigError) as caught:
                config.load()
        self.assertEqual(str(caught.exception),
                         "no berth server configured: start one with `berth server` (it writes %s), "
                         "or set BERTH_GATEWAY and BERTH_TOKEN" % missing)
        broken = self.profile("broken.json", "{not json")
        with mock.patch.dict(os.environ, {"BERTH_PROFILE": broken}, clear=True):
            with self.assertRaisesRegex(ConfigError, "cannot read the berth profile .*broken.json"):
                config.load()
        # Both from the environment: the profile is not even read.
        with mock.patch.dict(os.environ, {"BERTH_PROFILE": broken, "BERTH_GATEWAY": "http://h:1",
                                          "BERTH_TOKEN": "t"}, clear=True):
            self.assertEqual(config.load().gateway, "http://h:1")


if __name__ == "__main__":
    unittest.main()
