"""The HTML report in a real browser: headless Chromium loads it without a
console or script error, draws every plot (each with a size), fits the width without sideways
scrolling, and shows the headline cards and the legends naming each target. Skipped with a reason
where Chromium is absent (CI installs Debian's `chromium`)."""
import json
import os
import re
import shutil
import subprocess

import pytest

from tests.sse_target import SSETarget
from tornado_grok.loadtest import cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="no chromium on PATH (apt-get install -y chromium)")

PLOTS = ["Time to first token", "Gap between content chunks", "TTFT over time (p50, p99)",
         "TPOT over time (p50, p99)", "Failed requests per second", "Chunks per second",
         "Completed requests per second", "Open streams", "Load tester CPU (% of one core)"]
SWEEP_PLOTS = ["Rate sweep: completed and good requests per second", "Rate sweep: TTFT p50 and p99"]
CARDS = ["requests", "errors", "TTFT p50 / p99", "TPOT p50", "output tokens/s", "goodput"]

# Appended to a copy of the page: what the browser laid out, written where --dump-dom shows it.
PROBE = """<script>
window.addEventListener('load', function () {
  var svgs = Array.prototype.slice.call(document.querySelectorAll('svg'));
  var out = {
    scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth,
    plots: svgs.map(function (s) { var r = s.getBoundingClientRect();
      return {title: s.querySelector('text').textContent, w: r.width, h: r.height,
              marks: s.querySelectorAll('polyline, rect, circle').length}; }),
    cards: Array.prototype.slice.call(document.querySelectorAll('.card .l')).map(function (e) { return e.textContent; }),
    legends: Array.prototype.slice.call(document.querySelectorAll('svg text')).map(function (e) { return e.textContent; })
  };
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def browse(page, tmp_path):
    """(the probe's findings, chromium's log) for one report page."""
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"))
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,800", "--virtual-time-budget=5000",
         "--dump-dom", "file://" + str(probed)], capture_output=True, text=True, timeout=120)
    m = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, proc.stderr[-3000:]
    return json.loads(m.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")), proc.stderr


def console_errors(log):
    return [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def report(tmp_path, capsys, *argv, code=0):
    out = tmp_path / "report.html"
    assert cli.main(list(argv) + ["--html", str(out), "--no-progress"]) == code
    capsys.readouterr()
    return out.read_text()


def test_compare_report_in_chromium(tmp_path, capsys):
    a, b = SSETarget(), SSETarget()
    try:
        data = tmp_path / "d.jsonl"  # some errors, so the errors timeline has something to show
        data.write_text('{"prompt": "chunks=5 delay=20"}\n' * 3 + '{"prompt": "status=500"}\n')
        page = report(tmp_path, capsys, "--url", a.url, "--compare", b.url, "-c", "2", "-n", "12",
                      "--dataset", str(data), "--slo", "ttft_p99=10s", "--max-error-rate", "0.5")
    finally:
        a.close()
        b.close()
    found, log = browse(page, tmp_path)
    assert console_errors(log) == []
    assert [p["title"] for p in found["plots"]] == PLOTS
    for p in found["plots"]:
        assert p["w"] > 300 and p["h"] > 100 and p["marks"] >= 2, p
    assert found["scrollWidth"] <= found["clientWidth"]  # nothing scrolls sideways
    assert found["cards"] == CARDS * 2
    port_a, port_b = a.url.split(":")[2].split("/")[0], b.url.split(":")[2].split("/")[0]
    assert f"target 127.0.0.1:{port_a}" in found["legends"] and f"compare 127.0.0.1:{port_b}" in found["legends"]
    assert "PASSED" in page and "no data" not in page and "no samples" not in page


def test_sweep_report_in_chromium(tmp_path, capsys):
    t = SSETarget()
    try:
        page = report(tmp_path, capsys, "--url", t.url, "-n", "4", "--rate-sweep", "50,100", "--prompt", "chunks=3",
                      "--slo", "e2e_p99=60s")
    finally:
        t.close()
    found, log = browse(page, tmp_path)
    assert console_errors(log) == []
    assert [p["title"] for p in found["plots"]] == PLOTS + SWEEP_PLOTS
    assert all(p["h"] > 100 for p in found["plots"]) and found["scrollWidth"] <= found["clientWidth"]
    assert "knee 100 req/s" in page and "knee target: 100/s" in found["legends"]
