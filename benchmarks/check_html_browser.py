"""Open a perfkit HTML report in headless Chromium and check that it works offline and reads at a glance.

Checks: every plotly chart drew its SVG, the page logged no console error and threw no exception,
it made no network request (the only request allowed is the report file itself), it needs no
horizontal scrolling in a 1400-px-wide window (the page, and no table's scroll box), and no two
visible text labels of a chart overlap.

It speaks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (null-terminated JSON on
file descriptors 3 and 4), so it needs no websocket library, only the browser (Debian: ``apt-get
install chromium``).

Usage::

    python benchmarks/check_html_browser.py reports/<run-id>.html [--json]

Exit status 0 when every check passes, 1 otherwise, 2 when no Chromium is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# The flags the machine notes give for headless Chromium as root, plus no background traffic.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--window-size=1400,1000",
)

# What the page reports once loaded: per plotly chart, its SVG layers and drawn traces.
_PROBE = """(() => [...document.querySelectorAll('.plotly-graph-div')].map(d => ({
  id: d.id,
  svgs: d.querySelectorAll('svg.main-svg').length,
  traces: d.querySelectorAll('g.trace').length,
  points: d.querySelectorAll('.point').length,
  title: (d.querySelector('.gtitle') || {}).textContent || null,
})))()"""


# The layout at 1400 px: horizontal overflow of the page and of every scroll box (.wide), and every
# pair of visible chart text labels (point labels, bar texts) whose boxes intersect.
_LAYOUT = """(() => {
  const doc = document.documentElement;
  const wide = [...document.querySelectorAll('.wide')].map(w => ({
    id: (w.querySelector('table') || w).id, scroll: w.scrollWidth, client: w.clientWidth}));
  const overlaps = [];
  for (const g of document.querySelectorAll('.plotly-graph-div')) {
    const boxes = [...g.querySelectorAll('g.textpoint text, text.bartext')]
      .filter(t => t.textContent && getComputedStyle(t).display !== 'none')
      .map(t => [t.textContent, t.getBoundingClientRect()]).filter(([, r]) => r.width > 0);
    boxes.forEach(([a, r], i) => boxes.slice(i + 1).forEach(([b, q]) => {
      if (r.left < q.right && q.left < r.right && r.top < q.bottom && q.top < r.bottom) overlaps.push([g.id, a, b]);
    }));
  }
  return {width: window.innerWidth, scroll_width: doc.scrollWidth, client_width: doc.clientWidth, wide, overlaps,
          labels: [...document.querySelectorAll('g.textpoint text')].filter(t => t.textContent).length};
})()"""


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class _Pipe:
    """Minimal CDP client over the two pipes Chromium opens with --remote-debugging-pipe."""

    def __init__(self, to_browser: int, from_browser: int):
        self._w, self._r = to_browser, from_browser
        self._buf = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply is None:
                raise TimeoutError(f"no reply to {method} within {timeout}s")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        seen = next((e for e in self.events if e.get("method") == method), None)
        while seen is None:
            msg = self._read(deadline)
            if msg is None:
                return None
            self.events.append(msg)
            if msg.get("method") == method:
                seen = msg
        return seen

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (msg := self._read(deadline)) is not None:
            self.events.append(msg)

    def _read(self, deadline: float) -> dict | None:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._r], [], [], left)[0]:
                return None
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise ConnectionError("the browser closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)


def check_html(path: str | Path, chromium: str | None = None, settle_s: float = 2.0, timeout_s: float = 60) -> dict:
    """Load ``path`` in headless Chromium; return charts, console errors, exceptions and requests.

    ``ok`` is true when at least one chart exists, every chart drew an SVG, nothing scrolls sideways,
    no two visible chart labels overlap, and there were no
    console errors, no exceptions and no request other than the file itself.
    """
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found (Debian: apt-get install chromium)")
    url = Path(path).resolve().as_uri()
    to_r, to_w = os.pipe()  # we write commands, the browser reads them on fd 3
    from_r, from_w = os.pipe()  # the browser writes replies on fd 4, we read them

    def _wire_fds():  # runs in the child before exec: put the pipe ends on fds 3 and 4
        os.dup2(to_r, 3)
        os.dup2(from_w, 4)

    with tempfile.TemporaryDirectory(prefix="perfkit-chromium-") as profile:
        proc = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=_wire_fds, pass_fds=(3, 4),
        )
        os.close(to_r)
        os.close(from_w)
        cdp = _Pipe(to_w, from_r)
        try:
            loaded, load_s, charts, layout = _load(cdp, url, settle_s, timeout_s)
            try:
                cdp.send("Browser.close", timeout=5)
            except (ConnectionError, TimeoutError):
                pass  # closing races with the pipe going away: the browser is exiting either way
        finally:
            os.close(to_w)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            os.close(from_r)

    requests, console, exceptions = _events(cdp.events)
    external = [u for u in requests if u != url]
    scrolls = _scrolls(layout)
    ok = (loaded and bool(charts) and all(c["svgs"] > 0 for c in charts) and not console and not exceptions
          and not external and not scrolls and not layout.get("overlaps"))
    return {"ok": ok, "url": url, "loaded": loaded, "load_seconds": round(load_s, 3), "charts": charts,
            "console_errors": console, "exceptions": exceptions, "requests": requests,
            "external_requests": external, "horizontal_scroll": scrolls, "overlapping_labels": layout.get("overlaps", []),
            "layout": layout, "chromium": chromium}


def _load(cdp: _Pipe, url: str, settle_s: float, timeout_s: float) -> tuple[bool, float, list, dict]:
    """Open ``url`` in a new tab; whether it loaded, in how long, its charts and its layout."""
    target = cdp.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout_s)["targetId"]
    session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        cdp.send(f"{domain}.enable", session=session)
    start = time.monotonic()
    cdp.send("Page.navigate", {"url": url}, session=session)
    loaded = cdp.wait_event("Page.loadEventFired", timeout_s) is not None
    load_s = time.monotonic() - start
    cdp.drain(settle_s)  # let plotly finish its async layout work and any late request show up

    def evaluate(expression: str):
        reply = cdp.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        return reply.get("result", {}).get("value")

    return loaded, load_s, evaluate(_PROBE) or [], evaluate(_LAYOUT) or {}


def _events(events: list[dict]) -> tuple[list[str], list[str], list[str]]:
    """The requests, console errors and exceptions among the DevTools events."""
    requests, console, exceptions = [], [], []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Network.requestWillBeSent":
            requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            console.append(params["entry"].get("text", ""))
        elif method == "Runtime.exceptionThrown":
            d = params["exceptionDetails"]
            exceptions.append((d.get("exception") or {}).get("description") or d.get("text", ""))
    return requests, console, exceptions


def _scrolls(layout: dict) -> list[str]:
    """What scrolls sideways at the window's width: the page, or a table's scroll box."""
    out = []
    if layout.get("scroll_width", 0) > layout.get("client_width", 0):
        out.append(f"page: {layout['scroll_width']} px wide in a {layout['client_width']} px window")
    out += [f"{w['id'] or 'a scroll box'}: {w['scroll']} px in {w['client']} px" for w in layout.get("wide", [])
            if w["scroll"] > w["client"]]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("html", type=Path, help="the report to open (perfkit report RUN --html FILE)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = parser.parse_args(argv)
    if find_chromium() is None:
        print("no Chromium found (Debian: apt-get install chromium)", file=sys.stderr)
        return 2
    if not args.html.is_file():
        parser.error(f"{args.html} does not exist")
    path = args.html
    result = check_html(path)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{path}: loaded={result['loaded']} in {result['load_seconds']}s")
        for c in result["charts"]:
            print(f"  chart {c['id']}: {c['svgs']} svg layers, {c['traces']} traces, {c['points']} points — {c['title']}")
        print(f"  console errors: {len(result['console_errors'])}  exceptions: {len(result['exceptions'])}  "
              f"requests: {len(result['requests'])} (external: {len(result['external_requests'])})  "
              f"horizontal scroll: {len(result['horizontal_scroll'])}  overlapping labels: "
              f"{len(result['overlapping_labels'])}")
        for line in result["console_errors"] + result["exceptions"] + result["external_requests"] + \
                result["horizontal_scroll"] + [" / ".join(o) for o in result["overlapping_labels"]]:
            print(f"    {line}")
        print("OK" if result["ok"] else "FAILED")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
