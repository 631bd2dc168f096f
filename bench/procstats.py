"""What the bench scripts read off a running gateway: its RSS, and its /debug/state."""

import json
import urllib.request

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def rss_kib(pid: int) -> int:
    """VmRSS of one process, in KiB (0 once it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def debug_state(url: str) -> dict:
    """GET /debug/state (the gateway runs with debug_endpoints = true)."""
    with _NO_PROXY.open(url + "/debug/state", timeout=5) as r:
        return json.loads(r.read())
