#!/usr/bin/env python3
"""flashsale-cli against the real server: every command, --json, confirmations, exit codes, and
the token never shown (issue 7)."""

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import fsserver  # noqa: E402
from fsserver import ServerTestCase, sku  # noqa: E402

VIEWER = "tok-cli-viewer-51f0e2aa"


def cli_bin():
    return os.environ.get("FLASHSALE_CLI_BIN") or os.path.join(
        os.path.dirname(fsserver.server_bin()), "cli", "flashsale-cli")


def write(text, suffix):
    fd, path = tempfile.mkstemp(prefix="fs-cli-", suffix=suffix)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


class CliTest(ServerTestCase):
    server_kwargs = {"config_file": write("[tokens]\nvictor = viewer:%s\n" % VIEWER, ".ini")}
    outputs = []

    def cli(self, *args, token=fsserver.DEFAULT_ADMIN_TOKEN, url=None, expect=0, env=None):
        e = {k: v for k, v in os.environ.items() if not k.startswith("FLASHSALE_")}
        e["FLASHSALE_URL"] = url or "http://127.0.0.1:%d" % self.srv.port
        if token is not None:
            e["FLASHSALE_ADMIN_TOKEN"] = token
        e.update(env or {})
        p = subprocess.run([cli_bin()] + list(args), env=e, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30, text=True)
        CliTest.outputs.append(p.stdout + p.stderr)
        if expect is not None:
            self.assertEqual(p.returncode, expect, "flashsale-cli %s -> %d\nstdout: %s\nstderr: %s"
                             % (" ".join(args), p.returncode, p.stdout, p.stderr))
        return p

    def cli_json(self, *args, **kw):
        p = self.cli(*(args + ("--json",)), **kw)
        return json.loads(p.stdout)

    @classmethod
    def tearDownClass(cls):
        # the token appears in no output of any run
        for out in cls.outputs:
            assert fsserver.DEFAULT_ADMIN_TOKEN not in out and VIEWER not in out, out
        super().tearDownClass()

    def test_launch_lifecycle_json_doc(self):
        lid = fsserver.unique("cli")
        doc = write(json.dumps({"launch": lid, "name": "Phone", "hold_seconds": 120, "skus": [
            sku("black", 30, 2, 99900), sku("white", 20, 2, 99900)]}), ".json")
        p = self.cli("launch", "apply", doc)
        self.assertIn("state: scheduled", p.stdout)
        self.assertIn("black", p.stdout)
        st = self.cli_json("launch", "show", lid)
        self.assertEqual(st["state"], "scheduled")
        self.assertEqual([(s["sku"], s["total"]) for s in st["skus"]], [("black", 30), ("white", 20)])
        self.assertIn(lid, self.cli("launch", "list").stdout.split())
        self.assertEqual(self.cli_json("launch", "open", lid)["state"], "open")
        self.assertEqual(self.cli("launch", "pause", lid).stdout.strip(), "launch %s: paused" % lid)
        # close needs a confirmation: no terminal, no --yes -> refused, nothing changes
        p = self.cli("launch", "close", lid, expect=7)
        self.assertIn("--yes", p.stderr)
        self.assertEqual(self.srv.admin_get(lid).body["state"], "paused")
        self.assertEqual(self.cli_json("launch", "close", lid, "--yes")["state"], "closed")
        p = self.cli("launch", "open", lid, expect=6)
        self.assertIn("invalid_transition", p.stderr)
        # the audit, as the CLI shows it
        entries = self.cli_json("audit", lid)["entries"]
        self.assertEqual([e["action"] for e in entries], ["close", "pause", "open", "put"])
        self.assertEqual({e["who"] for e in entries}, {"admin"})
        p = self.cli("audit", lid, "--count", "2")
        self.assertIn("state paused -> closed", p.stdout)
        self.assertEqual(len(p.stdout.strip().splitlines()), 3)

    def test_ini_doc_restock_limits(self):
        lid = fsserver.unique("cli")
        doc = write("[launch]\nid = %s\nname = Console\nhold_seconds = 60\n"
                    "[sku red]\nstock = 10\nper_user_limit = 3\nprice_cents = 49900\n"
                    "[sku blue]\nstock = 5\nper_user_limit = 3\nprice_cents = 49900\n" % lid, ".ini")
        self.assertEqual(self.cli_json("launch", "apply", doc)["name"], "Console")
        self.assertEqual(self.srv.sku_counters(lid)["blue"]["total"], 5)
        # restock: adding is immediate, removing needs --yes
        self.assertEqual(self.cli_json("restock", lid, "red", "+5")["available"], 15)
        self.cli("restock", lid, "red", "-4", expect=7)
        self.assertEqual(self.cli_json("restock", lid, "red", "-4", "--yes")["available"], 11)
        p = self.cli("restock", lid, "red", "-100", "--yes", expect=6)
        self.assertIn("insufficient_available", p.stderr)
        # limits: raising is immediate, lowering asks
        self.assertEqual({s["sku"]: s["per_user_limit"] for s in self.cli_json("limits", lid, "blue=4")["skus"]},
                         {"red": 3, "blue": 4})
        self.cli("limits", lid, "ALL=1", expect=7)
        self.assertEqual(self.srv.sku_counters(lid)["blue"]["per_user_limit"], 4)
        self.cli("limits", lid, "blue=1", "--yes")
        self.assertEqual(self.srv.sku_counters(lid)["blue"]["per_user_limit"], 1)
        self.cli("limits", lid, "blue=0", "--yes", expect=2)
        self.cli("limits", lid, "green=2", expect=2)
        # a malformed document
        bad = write("[launch]\nid = %s\nhold_seconds = soon\n" % lid, ".ini")
        p = self.cli("launch", "apply", bad, expect=2)
        self.assertIn("line 3", p.stderr)

    def test_orders_watch_pause_all(self):
        lid = self.new_launch([sku("a", 10, 5), sku("b", 10, 5)])
        made = []
        for i, s in enumerate("aba"):
            r = self.srv.reserve(lid, s, "shopper-%d" % i)
            self.assertEqual(r.status, 201, r.body)
            made.append(self.srv.confirm(r.body["reservation_id"], "shopper-%d" % i).body["order_id"])
        self.assertEqual([o["order_id"] for o in self.cli_json("orders", lid)["orders"]], made[::-1])
        self.assertEqual([o["order_id"] for o in self.cli_json("orders", lid, "b")["orders"]], [made[1]])
        p = self.cli("orders", lid, "--count", "1")
        self.assertIn(made[2], p.stdout)
        self.assertNotIn(made[0], p.stdout)
        # watch: one JSON document per refresh
        p = self.cli("watch", lid, "--iterations", "2", "--interval", "100", "--json")
        frames = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertEqual(len(frames), 2)
        self.assertEqual(frames[0]["current"]["state"], "open")
        self.assertIn("p99_ms", frames[1]["window"])
        p = self.cli("watch", lid, "--iterations", "1")
        self.assertIn("reservations/s", p.stdout)
        self.assertIn("state: open", p.stdout)
        # the kill switch
        self.cli("pause-all", expect=7)
        self.assertEqual(self.srv.admin_get(lid).body["state"], "open")
        r = self.cli_json("pause-all", "--yes")
        self.assertIn(lid, r["paused"])
        self.assertEqual(self.srv.admin_get(lid).body["state"], "paused")

    def test_exit_codes(self):
        self.cli(expect=2)
        self.cli("frobnicate", expect=2)
        self.cli("launch", "show", expect=2)
        self.cli("restock", "x", "y", "zero", expect=2)
        self.cli("launch", "show", "no-such-launch", expect=5)
        p = self.cli("launch", "show", "x", token="wrong-token", expect=4)
        self.assertIn("unauthorized", p.stderr)
        self.cli("launch", "show", "x", token=None, expect=2)
        # a viewer reads but may not act
        lid = self.new_launch([sku("a", 1, 1)], open_it=False)
        self.assertEqual(self.cli_json("launch", "show", lid, token=VIEWER)["state"], "scheduled")
        self.assertEqual(self.cli_json("whoami", token=VIEWER), {"name": "victor", "role": "viewer"})
        p = self.cli("launch", "open", lid, token=VIEWER, expect=4)
        self.assertIn("forbidden", p.stderr)
        # nobody listening
        p = self.cli("launch", "show", lid, url="http://127.0.0.1:%d" % fsserver.free_port(), expect=3)
        self.assertIn("no answer", p.stderr)
        self.cli("launch", "show", lid, url="https://example.invalid", expect=2)
        self.cli("--help")
        self.assertIn("Exit codes", self.cli("--help").stdout)


if __name__ == "__main__":
    fsserver.main(timeout=100)
