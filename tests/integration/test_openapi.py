#!/usr/bin/env python3
"""docs/openapi.yaml documents exactly the routes the server answers (`flashsale-server
--routes`), and the server answers every documented route with something other than 404/405."""

import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402

OPENAPI = os.path.join(fsserver.REPO, "docs", "openapi.yaml")
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def openapi_routes(text):
    """A small line-based reader: {(METHOD, path)} under the top-level `paths:` key."""
    routes = set()
    in_paths = False
    path_indent = method_indent = None
    current = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:
            in_paths = line.split("#")[0].strip() == "paths:"
            current = None
            continue
        if not in_paths:
            continue
        if path_indent is None:
            path_indent = indent
        if indent == path_indent:
            m = re.match(r"""^\s*(['"]?)(/[^'"]*)\1\s*:\s*(#.*)?$""", line)
            if not m:
                raise AssertionError("unexpected line under paths: %r" % line)
            current = m.group(2)
            method_indent = None
            continue
        if indent < path_indent or current is None:
            continue
        if method_indent is None:
            method_indent = indent
        if indent == method_indent:
            key = line.strip().split(":")[0].strip("'\"")
            if key.lower() in METHODS:
                routes.add((key.upper(), current))
    return routes


class OpenApiTest(unittest.TestCase):

    def server_routes(self):
        r = subprocess.run([fsserver.server_bin(), "--routes"], capture_output=True, timeout=10,
                           env={k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")})
        self.assertEqual(r.returncode, 0, r.stderr)
        routes = set()
        for line in r.stdout.decode().splitlines():
            m = re.match(r"^([A-Z]+) (/\S*)$", line)
            self.assertTrue(m, "bad --routes line %r" % line)
            routes.add((m.group(1), m.group(2)))
        return routes

    def test_reader(self):
        sample = ("openapi: 3.1.0\npaths:\n  /a/{x}:\n    parameters: []\n    get:\n      responses:\n"
                  "        '200':\n          description: ok\n    post:\n      summary: p\n"
                  "  '/b':\n    put: {}\ncomponents:\n  schemas:\n    get:\n      type: object\n")
        self.assertEqual(openapi_routes(sample), {("GET", "/a/{x}"), ("POST", "/a/{x}"), ("PUT", "/b")})

    def test_routes_match_openapi(self):
        self.assertTrue(os.path.exists(OPENAPI), "docs/openapi.yaml is missing")
        with open(OPENAPI, encoding="utf-8") as f:
            text = f.read()
        self.assertRegex(text, r"(?m)^openapi:\s*['\"]?3\.1")
        documented = openapi_routes(text)
        served = self.server_routes()
        self.assertTrue(served)
        self.assertEqual(sorted(served - documented), [], "routes the server answers but openapi.yaml lacks")
        self.assertEqual(sorted(documented - served), [], "routes in openapi.yaml the server does not answer")
        # the API of issue 2 is all there
        for route in [("PUT", "/admin/v1/launches/{launch}"), ("GET", "/admin/v1/launches/{launch}"),
                      ("POST", "/admin/v1/launches/{launch}/open"), ("POST", "/admin/v1/launches/{launch}/pause"),
                      ("POST", "/admin/v1/launches/{launch}/close"),
                      ("POST", "/admin/v1/launches/{launch}/skus/{sku}/restock"),
                      ("GET", "/v1/launches/{launch}"), ("POST", "/v1/launches/{launch}/reservations"),
                      ("POST", "/v1/reservations/{id}/confirm"), ("POST", "/v1/reservations/{id}/cancel"),
                      ("GET", "/v1/reservations/{id}"), ("GET", "/healthz"), ("GET", "/readyz"),
                      ("GET", "/metrics")]:
            self.assertIn(route, served)

    def test_server_answers_each_listed_route(self):
        import fsredis
        with fsredis.RedisServer() as rs:
            srv = fsserver.Server(rs.url)
            try:
                for method, path in sorted(self.server_routes()):
                    concrete = (path.replace("{launch}", "no-such-launch").replace("{sku}", "no-such-sku")
                                .replace("{id}", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
                    if "?" not in concrete and path.startswith("/v1/reservations/") and method == "GET":
                        concrete += "?user_id=u"
                    body = {} if method in ("POST", "PUT") else None
                    r = srv.request(method, concrete, body)
                    self.assertNotEqual(r.status, 405, (method, path, r))
                    self.assertLess(r.status, 500, (method, path, r))
            finally:
                srv.stop()


if __name__ == "__main__":
    fsserver.main(timeout=60)
