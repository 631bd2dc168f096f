"""The gateway with one suspect of its tail latency or CPU taken away, for bench/suspects.py.

    python3 bench/suspect_gateway.py SUSPECT [run.py serve arguments]

SUSPECT is "none" (the gateway as shipped) or one of SUSPECTS below. Each is taken away in this
process only, by replacing the piece with the least that keeps requests answered, so that the
difference to "none" in the same run is what the piece costs. Nothing here is a gateway setting:
the ones that are (access_log, event_loop, grpc_enabled, listen_backlog) are set by suspects.py.
"""

import gc
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def no_screening() -> None:
    """The request-head screening keeps only the key check (the handlers need the key)."""
    from tornado_grok import app
    from tornado_grok.errors import GatewayError

    def screen(gateway, request):
        try:
            request.client_key = gateway.keys.authenticate(request.headers.get("Authorization"))
        except GatewayError as e:
            return e
        return None
    app.screen = screen


def no_keys_stat() -> None:
    """The keys file is never looked at again after it is read at start."""
    from tornado_grok import auth
    auth.KeyStore._maybe_reload = lambda self: None


def no_gc() -> None:
    """No cyclic garbage collection (reference counting still frees almost everything)."""
    gc.disable()


def no_gc_policy() -> None:
    """The collector as Python sets it (tornado_grok/gcpolicy.py not applied): nothing frozen, a young
    collection per 700 net new objects."""
    from tornado_grok import gcpolicy
    gcpolicy.settle = lambda: None


def no_connection_timers() -> None:
    """No header, keep-alive or body timer per connection or request."""
    from tornado_grok import connections
    real = connections.GatewayHTTPServer.initialize

    def initialize(self, *args, **kwargs):
        real(self, *args, **kwargs)
        self.conn_params.header_timeout = None
        self.keepalive_params.header_timeout = None
        self.body_watch.stop()
    connections.GatewayHTTPServer.initialize = initialize
    connections._Connection._read_body = connections.HTTP1Connection._read_body


def tornado_accept_loop() -> None:
    """tornado's own accept handler instead of the gateway's (which backs off at the fd limit)."""
    from tornado.tcpserver import TCPServer
    from tornado_grok import connections
    connections.GatewayHTTPServer.add_sockets = TCPServer.add_sockets


def no_metrics() -> None:
    """No Prometheus observation per request."""
    from tornado_grok import metrics
    metrics.Metrics.observe = lambda self, handler: None


SUSPECTS = {
    "screening": no_screening,
    "keys-stat": no_keys_stat,
    "gc": no_gc,
    "gc-policy": no_gc_policy,
    "timers": no_connection_timers,
    "accept-loop": tornado_accept_loop,
    "metrics": no_metrics,
}


def main() -> int:
    suspect, argv = sys.argv[1], sys.argv[2:]
    if suspect != "none":
        SUSPECTS[suspect]()
    from tornado_grok import cli
    return cli.serve_main(argv)


if __name__ == "__main__":
    sys.exit(main())
