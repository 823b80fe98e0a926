#!/usr/bin/env python3
"""The dashboard at /admin/ in a real browser (Debian's headless chromium driven through
chromedriver's W3C WebDriver protocol, tests/browser/webdriver.py): sign in with the token, see
the counters move while reservations are made, pause with the button (confirm dialog) and see
reservations refused, restock and see the bar grow. Screenshots go to tests/artifacts/.

Without chromium/chromedriver the browser test is skipped, unless FS_REQUIRE_BROWSER=1 (set by
tests/run.sh, which installs them), where it fails."""

import os
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "browser"))
import fsserver  # noqa: E402
import webdriver  # noqa: E402
from fsserver import ServerTestCase, sku  # noqa: E402

ARTIFACTS = os.path.join(fsserver.REPO, "tests", "artifacts")


class DashboardPageTest(ServerTestCase):
    """The page itself, without a browser."""

    def test_static_files(self):
        r = self.srv.request("GET", "/admin/", auth=None)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/html"))
        self.assertIn('<script src="/admin/dashboard.js"', r.body)
        csp = r.headers["content-security-policy"]
        self.assertIn("default-src 'none'", csp)
        self.assertIn("script-src 'self'", csp)
        self.assertEqual(r.headers["x-frame-options"], "DENY")
        js = self.srv.request("GET", "/admin/dashboard.js", auth=None)
        self.assertEqual(js.status, 200)
        self.assertTrue(js.headers["content-type"].startswith("text/javascript"))
        self.assertIn("sessionStorage", js.body)
        self.assertNotIn("localStorage", js.body)
        css = self.srv.request("GET", "/admin/dashboard.css", auth=None)
        self.assertTrue(css.headers["content-type"].startswith("text/css"))
        # nothing from elsewhere: no URL with a scheme in the page, its script or its styles
        for text in (r.body, js.body, css.body):
            self.assertNotRegex(text, r"(?i)(https?:)?//[a-z0-9]")
        self.assertEqual(self.srv.request("GET", "/admin/other.js", auth=None).status, 404)


@unittest.skipIf(webdriver.available() and os.environ.get("FS_REQUIRE_BROWSER") != "1",
                 "no browser: %s" % webdriver.available())
class DashboardBrowserTest(ServerTestCase):

    def shot(self, name):
        return self.browser.screenshot(os.path.join(ARTIFACTS, "dashboard-%s.png" % name))

    def text(self, css):
        return self.browser.js("var e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)

    def cell(self, sku_id, col):
        return self.browser.js(
            "var r = document.querySelector('#skus tr[data-sku=\"' + arguments[0] + '\"]');"
            "return r ? r.querySelector('td.' + arguments[1]).textContent : null;", sku_id, col)

    def bar(self, sku_id):
        """Width in pixels of the available part of the SKU's stock bar."""
        return self.browser.js(
            "var r = document.querySelector('#skus tr[data-sku=\"' + arguments[0] + '\"] .bar .available');"
            "return r ? r.getBoundingClientRect().width : null;", sku_id)

    def test_operator_session(self):
        self.assertIsNone(webdriver.available(), "chromium and chromium-driver are required")
        lid = self.new_launch([sku("phone-black", 40, 5), sku("phone-blue", 20, 5)])
        self.browser = fsserver.track(webdriver.Browser())
        self.addCleanup(self.browser.close)
        b = self.browser
        b.get("http://127.0.0.1:%d/admin/" % self.srv.port)
        b.find("#token").send_keys(fsserver.DEFAULT_ADMIN_TOKEN)
        b.find("#launch-input").send_keys(lid)
        b.find("#login").click()
        b.wait(lambda: self.text("#state") == "open", 10, what="state open")
        self.assertEqual(self.text("#who"), "admin (operator)")
        self.assertEqual(self.cell("phone-black", "available"), "40")
        # the token is in sessionStorage only, and not in the page
        self.assertEqual(b.js("return sessionStorage.getItem('fs_token')"), fsserver.DEFAULT_ADMIN_TOKEN)
        self.assertEqual(b.js("return localStorage.length"), 0)
        self.assertNotIn(fsserver.DEFAULT_ADMIN_TOKEN, b.js("return document.documentElement.outerHTML"))
        self.shot("1-signed-in")
        width_before = self.bar("phone-black")

        # counters move while shoppers reserve
        stop = threading.Event()
        made = []

        def shop():
            s = self.srv.clone()
            i = 0
            while not stop.is_set() and i < 30:
                r = s.reserve(lid, "phone-black", "shopper-%d" % i)
                made.append(r.status)
                i += 1
                time.sleep(0.05)
        t = threading.Thread(target=shop)
        t.start()
        try:
            b.wait(lambda: self.cell("phone-black", "held") not in (None, "0"), 10, what="held > 0")
            b.wait(lambda: float(self.text("#total-10m") or 0) > 0, 10, what="requests counted in stats")
            b.wait(lambda: self.text("#p99") not in (None, "-"), 10, what="a p99 latency")
        finally:
            stop.set()
            t.join(10)
        self.assertIn(201, made)
        held = sum(1 for s in made if s == 201)
        b.wait(lambda: self.cell("phone-black", "held") == str(held), 5, what="held == %d" % held)
        self.assertEqual(self.cell("phone-black", "available"), str(40 - held))
        self.assertLess(self.bar("phone-black"), width_before)
        self.shot("2-reservations")

        # pause with the button: a confirmation first; dismissing it changes nothing
        b.find("#btn-pause").click()
        self.assertIn("Pause launch", b.wait(b.alert_text, 5, what="confirm dialog"))
        b.dismiss_alert()
        time.sleep(1.2)
        self.assertEqual(self.srv.admin_get(lid).body["state"], "open")
        b.find("#btn-pause").click()
        b.wait(b.alert_text, 5, what="confirm dialog")
        b.accept_alert()
        b.wait(lambda: self.text("#state") == "paused", 10, what="state paused")
        self.assertEqual(self.srv.admin_get(lid).body["state"], "paused")
        self.assertError(self.srv.reserve(lid, "phone-black", "late-shopper"), 409, "launch_not_open")
        b.wait(lambda: "admin" in (self.text("#audit tbody") or "") and "open → paused" in self.text("#audit tbody"),
               5, what="the pause in the audit table")
        self.shot("3-paused")

        # restock phone-black by 100: the bar grows
        width_paused = self.bar("phone-black")
        b.js("document.getElementById('restock-sku').value = 'phone-black';")
        delta = b.find("#restock-delta")
        delta.clear()
        delta.send_keys("100")
        b.find("#restock-btn").click()
        b.wait(lambda: self.cell("phone-black", "total") == "140", 10, what="total 140")
        self.assertEqual(self.cell("phone-black", "available"), str(140 - held))
        b.wait(lambda: self.bar("phone-black") > width_paused, 5, what="the available bar to grow")
        self.assertEqual(self.srv.sku_counters(lid)["phone-black"]["total"], 140)
        self.assertIn("Restocked phone-black", self.text("#msg"))
        self.shot("4-restocked")
        entries = self.srv.request("GET", "/admin/v1/launches/%s/audit" % lid).body["entries"]
        self.assertEqual([e["action"] for e in entries[:2]], ["restock", "pause"])


if __name__ == "__main__":
    fsserver.main(timeout=150)
