"""A minimal W3C WebDriver client (stdlib only) driving Debian's chromium through chromedriver.

CI reaches only Debian's package mirror, so there is no npm and no Playwright: chromedriver
(package chromium-driver) speaks the W3C WebDriver HTTP protocol, which urllib + json can drive.

    with Browser() as b:            # chromedriver on a free 127.0.0.1 port, headless chromium
        b.get("http://127.0.0.1:8080/admin/")
        b.find("#token").send_keys("...")
        b.find("#login").click()
        b.wait(lambda: b.js("return document.title"), 5)
        b.screenshot("tests/artifacts/x.png")

Every call is bounded in time; the browser gets a fresh profile directory, no sandbox (it runs as
root in CI), no GPU and no background traffic (updates, sync, first-run pages). Processes are
stopped by pid when the Browser is closed.
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element identifier
CHROMIUM = os.environ.get("FS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FS_CHROMEDRIVER", "/usr/bin/chromedriver")


def available():
    """None when chromium and chromedriver are installed, else what is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    return ", ".join(missing) if missing else None


class WebDriverError(AssertionError):
    pass


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Element:
    def __init__(self, browser, eid):
        self.b, self.id = browser, eid

    def click(self):
        self.b._cmd("POST", "/element/%s/click" % self.id, {})

    def clear(self):
        self.b._cmd("POST", "/element/%s/clear" % self.id, {})

    def send_keys(self, text):
        self.b._cmd("POST", "/element/%s/value" % self.id, {"text": text})

    @property
    def text(self):
        return self.b._cmd("GET", "/element/%s/text" % self.id)


class Browser:
    def __init__(self, width=1280, height=1400, timeout=20):
        self.tmp = tempfile.mkdtemp(prefix="fs-browser-")
        self.log = open(os.path.join(self.tmp, "chromedriver.log"), "wb")
        self.session = None
        deadline = time.monotonic() + timeout
        # The free port can be taken by another test between choosing and binding it (ctest -j):
        # chromedriver then exits at once, and a new port is tried.
        for attempt in range(3):
            self.port = _free_port()
            self.proc = subprocess.Popen([CHROMEDRIVER, "--port=%d" % self.port, "--allowed-ips=127.0.0.1"],
                                         stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
            self.base = "http://127.0.0.1:%d" % self.port
            ready = False
            while not ready:
                try:
                    ready = bool(self._http("GET", "/status", timeout=2).get("value", {}).get("ready"))
                except (OSError, ValueError, WebDriverError):
                    pass
                if ready or self.proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if ready:
                break
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if time.monotonic() > deadline or attempt == 2:
                self.log.flush()
                with open(os.path.join(self.tmp, "chromedriver.log"), "rb") as f:
                    tail = f.read()[-800:].decode("utf-8", "replace")
                self.close()
                raise WebDriverError("chromedriver did not start: " + tail)
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--user-data-dir=" + os.path.join(self.tmp, "profile"),
                "--window-size=%d,%d" % (width, height)]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "pageLoadStrategy": "normal",
            "unhandledPromptBehavior": "ignore",
            "timeouts": {"script": 10000, "pageLoad": 15000, "implicit": 0},
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}}
        try:
            v = self._http("POST", "/session", caps, timeout=60)["value"]
        except Exception:
            self.close()
            raise
        self.session = v["sessionId"]

    # -- protocol ------------------------------------------------------------------------------

    def _http(self, method, path, body=None, timeout=20):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read().decode())
        except urllib.error.HTTPError as e:
            try:
                v = json.loads(e.read().decode()).get("value", {})
            except ValueError:
                v = {}
            raise WebDriverError("%s %s -> %s %s: %s" % (method, path, e.code, v.get("error"),
                                                         str(v.get("message", ""))[:300]))

    def _cmd(self, method, path, body=None, timeout=20):
        return self._http(method, "/session/%s%s" % (self.session, path), body, timeout)["value"]

    # -- commands ------------------------------------------------------------------------------

    def get(self, url):
        self._cmd("POST", "/url", {"url": url}, timeout=30)

    def find(self, css):
        v = self._cmd("POST", "/element", {"using": "css selector", "value": css})
        return Element(self, v[ELEMENT])

    def js(self, script, *args):
        return self._cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def alert_text(self):
        try:
            return self._cmd("GET", "/alert/text")
        except WebDriverError:
            return None

    def accept_alert(self):
        self._cmd("POST", "/alert/accept", {})

    def dismiss_alert(self):
        self._cmd("POST", "/alert/dismiss", {})

    def screenshot(self, path):
        png = base64.b64decode(self._cmd("GET", "/screenshot", timeout=30))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(png)
        return path

    def wait(self, pred, timeout, interval=0.1, what="condition"):
        deadline = time.monotonic() + timeout
        last = None
        while True:
            last = pred()
            if last:
                return last
            if time.monotonic() > deadline:
                raise AssertionError("browser: timed out after %ss waiting for %s (last %r)"
                                     % (timeout, what, last))
            time.sleep(interval)

    def close(self):
        if self.session:
            try:
                self._http("DELETE", "/session/%s" % self.session, timeout=15)
            except Exception:
                pass
            self.session = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    kill = close  # for fsserver.track(): the watchdog stops chromedriver (and with it chromium)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
