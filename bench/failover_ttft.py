"""What a failover adds to the time to first token: three upstreams, one of which refuses every
connection (a closed loopback port), in front of two bundled mocks at speed 0.

    python3 bench/failover_ttft.py              # 400 sequential streams per configuration
    python3 bench/failover_ttft.py -n 1000

Configurations, each a gateway of its own, all running at once and measured in turn, one stream
each, so that the machine's noise falls on all alike (the client's TTFT: request sent to the first
`data:` bytes, over one keep-alive connection per gateway):

- `two`: the two mocks only (the floor);
- `refused-first`: the refusing upstream with weight 1000 before the two mocks, circuit never
  opening: every request is refused once and fails over (the added TTFT of one failover);
- `one-in-three`: three equal weights, circuit never opening: a third of the requests fail over;
- `one-in-three-circuit`: the same with the default circuit (5 failures open it for 30 s): the
  refusing upstream is skipped after its first five failures.

Prints p50/p99 per configuration and the difference to `two`. Loopback only; bounded (n requests
per configuration); figures only, nothing asserted.
"""

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests import upstreams_helpers as uh  # noqa: E402
from tests.mock_helpers import start_mock  # noqa: E402

BODY = b'{"model":"grok-4.3","messages":[{"role":"user","content":"hi"}],"stream":true}'


class Client:
    """Sequential streams over one keep-alive connection to one gateway."""

    def __init__(self, gateway, key: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
        self.headers = {"Authorization": "Bearer " + key, "Content-Type": "application/json",
                        "Accept": "text/event-stream"}

    def ttft(self) -> float:
        started = time.perf_counter()
        self.conn.request("POST", "/api/v1/chat/completions", BODY, self.headers)
        response = self.conn.getresponse()
        first = response.read1(65536)
        took = time.perf_counter() - started
        assert response.status == 200 and first.startswith(b"data: "), (response.status, first[:200])
        response.read()
        return took


def pct(values: list, p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=400, help="streams per configuration (sequential)")
    args = p.parse_args()
    mocks = [start_mock("--speed", "0", "--require-key", uh.KEYS[name]) for name in ("b", "c")]
    refused = uh.closed_port_url()
    never = {"circuit_failures": 1000000, "requests_per_minute": 0}
    configs = [
        ("two", [uh.upstream("b", mocks[0]), uh.upstream("c", mocks[1])], never),
        ("refused-first", [uh.upstream("a", url=refused, weight=1000), uh.upstream("b", mocks[0]),
                           uh.upstream("c", mocks[1])], never),
        ("one-in-three", [uh.upstream("a", url=refused), uh.upstream("b", mocks[0]), uh.upstream("c", mocks[1])],
         never),
        ("one-in-three-circuit", [uh.upstream("a", url=refused), uh.upstream("b", mocks[0]),
                                  uh.upstream("c", mocks[1])], {"requests_per_minute": 0}),
    ]
    results = {name: [] for name, _, _ in configs}
    gateways = []
    tmp = tempfile.TemporaryDirectory()
    try:
        clients = {}
        for name, upstreams, settings in configs:
            g, key = uh.start_pool(os.path.join(tmp.name, name), upstreams, dict(settings, access_log=False))
            gateways.append(g)
            clients[name] = Client(g, key)
        for _ in range(20):  # warm-up: connections, first imports
            for client in clients.values():
                client.ttft()
        # Interleaved, one request per configuration in turn: the machine's noise falls on all alike.
        for _ in range(args.n):
            for name, client in clients.items():
                results[name].append(client.ttft())
    finally:
        for g in gateways:
            g.stop()
        for m in mocks:
            m.stop()
        tmp.cleanup()
    base = results["two"]
    print("TTFT over %d streams per configuration, interleaved (ms)" % args.n)
    print("%-22s %8s %8s %8s %12s %12s" % ("configuration", "p50", "p99", "mean", "added p50", "added p99"))
    for name, values in results.items():
        print("%-22s %8.2f %8.2f %8.2f %12.2f %12.2f" % (
            name, 1000 * pct(values, 50), 1000 * pct(values, 99), 1000 * statistics.mean(values),
            1000 * (pct(values, 50) - pct(base, 50)), 1000 * (pct(values, 99) - pct(base, 99))))
    print("machine: %d cores, load average %.2f" % (os.cpu_count(), os.getloadavg()[0]))


if __name__ == "__main__":
    main()
