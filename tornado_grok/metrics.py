"""Prometheus metrics of one Gateway, on a CollectorRegistry of its own (never the global one).

Everything is recorded once per request, when it ends (`observe`, called from the access-log hook in
app.py), or read on scrape (gauges with set_function); nothing is done per chunk. A stream's bytes,
events and keep-alives are added from the relay's own counters at its end.

With `--workers N` the supervisor turns on prometheus_client's multiprocess mode (use_multiprocess):
every worker writes its values to files in one folder, and a scrape, whichever worker answers it,
sums the files of every worker (MultiProcessCollector). Counters of workers that exited still count;
gauges count live workers only (mark_process_dead) and are refreshed once a second, not on scrape.
"""

import glob
import os
import shutil
import tempfile

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from tornado.ioloop import IOLoop, PeriodicCallback

from . import accesslog

# generate_latest() writes the classic text format, which every Prometheus version reads as 0.0.4.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
_TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
_DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_ENDPOINTS = frozenset((
    "/api/v1/chat/completions", "/api/v1/responses", "/api/v1/images/generate", "/api/v1/images/generations",
    "/api/v1/vision/analyze", "/api/v1/models", "/healthz", "/readyz", "/metrics", "/admin/usage",
    "/debug/state",
))


def endpoint_label(path: str) -> str:
    """A bounded label for a request path: the route it matched, or "other"."""
    if path in _ENDPOINTS:
        return path
    if path.startswith("/api/v1/models/"):
        return "/api/v1/models/{id}"
    if path.startswith("/api/v1/responses/"):
        return "/api/v1/responses/{id}"
    if path.startswith("/api/v1/streams/"):
        return "/api/v1/streams/{id}"
    return "other"


def use_multiprocess() -> tuple[str, bool]:
    """Makes the metrics of this process, and of processes forked from it, go to files in one folder.

    Called by the --workers supervisor before it forks. The folder is $PROMETHEUS_MULTIPROC_DIR when
    the operator set it (its old files are removed: they hold a previous run's counts), else a new
    temporary folder. Returns (folder, whether it was made here, for remove_multiprocess_dir).
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    made = not path
    if made:
        path = tempfile.mkdtemp(prefix="tornado_grok-metrics-")
    else:
        os.makedirs(path, exist_ok=True)
        for f in glob.glob(os.path.join(path, "*.db")):
            os.remove(f)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    values.ValueClass = values.get_value_class()  # prometheus_client read the variable at import
    return path, made


def process_dead(pid: int, path: str) -> None:
    """A worker exited: its live gauges stop counting (its counters keep counting, as they should)."""
    multiprocess.mark_process_dead(pid, path)


def remove_multiprocess_dir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class Metrics:
    """The gateway's collectors; `render()` is the /metrics body.

    multiprocess_dir (the gateway config's metrics_dir, set by the --workers supervisor): the folder
    of prometheus_client's multiprocess mode; a scrape then reports the sum over every worker.
    """

    def __init__(self, gateway=None, multiprocess_dir: str | None = None):
        if multiprocess_dir is None and gateway is not None:
            multiprocess_dir = getattr(gateway.config, "metrics_dir", "") or None
        self.multiprocess_dir = multiprocess_dir
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("tornado_grok_requests", "Requests answered, by endpoint and status.",
                                ["endpoint", "status"], registry=r)
        self.errors = Counter("tornado_grok_errors", "Error answers (HTTP or in-band), by error code.",
                              ["code"], registry=r)
        self.upstream_errors = Counter("tornado_grok_upstream_errors",
                                       "Upstream failures (status, transport, timeout, bad stream), by kind.",
                                       ["kind"], registry=r)
        self.rate_limited_requests = Counter("tornado_grok_rate_limited", "Requests refused by a per-key "
                                             "limit, by reason (requests, concurrency, tokens, ...).",
                                             ["reason"], registry=r)
        self.overloaded = Counter("tornado_grok_overloaded", "Requests refused with 503 because a global "
                                  "cap was reached, by cap (max_connections, max_upstream).", ["cap"], registry=r)
        self.streams = Counter("tornado_grok_streams", "Streams ended, by how they ended.", ["ended"], registry=r)
        self.ttft = Histogram("tornado_grok_time_to_first_token_seconds", "From the request reaching the "
                              "relay to the first event written to the client.", buckets=_TTFT_BUCKETS, registry=r)
        self.stream_duration = Histogram("tornado_grok_stream_duration_seconds", "Whole duration of streamed "
                                         "responses.", buckets=_DURATION_BUCKETS, registry=r)
        self.keepalives = Counter("tornado_grok_keepalives", "Keep-alive comments sent to clients.", registry=r)
        self.bytes_relayed = Counter("tornado_grok_relayed_bytes", "Bytes of SSE written to streaming clients.",
                                     registry=r)
        self.events_relayed = Counter("tornado_grok_relayed_events", "SSE data events written to streaming "
                                      "clients.", registry=r)
        self._gauges: list = []  # (gauge, function) refreshed by refresh() in multiprocess mode
        if gateway is not None:
            self._gauge("tornado_grok_open_streams", "Streams open now.", lambda: len(gateway.streams))
            self._gauge("tornado_grok_open_requests", "Client requests being handled now.",
                        lambda: gateway.open_requests)
            self._gauge("tornado_grok_upstream_active", "Upstream transfers in flight now (max_upstream cap).",
                        lambda: len(gateway.upstream.active))
            self._gauge("tornado_grok_draining", "1 while the gateway drains after SIGTERM.",
                        lambda: 1 if gateway.draining else 0, mode="livemax")
            if self._gauges:  # the gateway is still being built: its first values come a loop turn later
                IOLoop.current().add_callback(self.refresh)
                self._refresher = PeriodicCallback(self.refresh, 1000)
                self._refresher.start()

        if self.multiprocess_dir is None:
            r.register(_LogLinesDropped())
        else:  # the writer thread's count, added to a counter every worker's file holds (refresh)
            self.log_lines_dropped = Counter("tornado_grok_log_lines_dropped", "Log lines (access log and "
                                             "others) dropped because stderr was not read fast enough.",
                                             registry=r)
            self._dropped_seen = 0
        self._children: dict = {}

    def _gauge(self, name: str, documentation: str, function, mode: str = "livesum") -> None:
        """A gauge read from `function`: on scrape, or (multiprocess) every second, summed over workers."""
        if self.multiprocess_dir is None:
            Gauge(name, documentation, registry=self.registry).set_function(function)
        else:  # another worker answers some scrapes: the value must be in this worker's file already
            g = Gauge(name, documentation, registry=self.registry, multiprocess_mode=mode)
            self._gauges.append((g, function))

    def refresh(self) -> None:
        for gauge, function in self._gauges:
            gauge.set(function())
        dropped = accesslog.dropped()
        if self.multiprocess_dir is not None and dropped > self._dropped_seen:
            self.log_lines_dropped.inc(dropped - self._dropped_seen)
            self._dropped_seen = dropped

    def _child(self, metric, *labels):
        """metric.labels(*labels), remembered: prometheus_client's lookup costs more than the increment."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def watch_upstreams(self, pool) -> None:
        """Per-upstream collectors (upstreams.py), labelled by the upstream's name, never its key."""
        r = self.registry
        self.upstream_requests = Counter("tornado_grok_upstream_requests", "Attempts sent to each upstream.",
                                         ["upstream"], registry=r)
        self.upstream_failures = Counter("tornado_grok_upstream_failures", "Failed attempts per upstream, by "
                                         "kind (connect, transport, timeout, first_event_timeout, status_NNN).",
                                         ["upstream", "kind"], registry=r)
        self.upstream_failovers = Counter("tornado_grok_upstream_failovers", "Requests that left an upstream "
                                          "for another before the first byte.", ["upstream"], registry=r)
        self.upstream_cooldowns = Counter("tornado_grok_upstream_cooldowns", "Times an upstream was put in "
                                          "cool-down (429, or 503 with Retry-After).", ["upstream"], registry=r)
        self.upstream_circuit_opens = Counter("tornado_grok_upstream_circuit_opens", "Times an upstream's "
                                              "circuit opened.", ["upstream"], registry=r)
        mode = "livesum"
        in_flight = Gauge("tornado_grok_upstream_in_flight", "Attempts in flight per upstream.", ["upstream"],
                          registry=r, **({} if self.multiprocess_dir is None else {"multiprocess_mode": mode}))
        circuit = Gauge("tornado_grok_upstream_circuit_open", "1 while an upstream's circuit is open (or "
                        "probing), else 0.", ["upstream"], registry=r,
                        **({} if self.multiprocess_dir is None else {"multiprocess_mode": "livemax"}))
        for u in pool.upstreams:
            for gauge, function in ((in_flight, lambda u=u: u.inflight),
                                    (circuit, lambda u=u: 0 if u.circuit_until is None else 1)):
                child = gauge.labels(u.name)
                if self.multiprocess_dir is None:
                    child.set_function(function)
                else:
                    self._gauges.append((child, function))
            self.upstream_requests.labels(u.name)  # every upstream shows, at 0, from the start

    def upstream_request(self, name: str) -> None:
        self._child(self.upstream_requests, name).inc()

    def upstream_failure(self, name: str, kind: str) -> None:
        self._child(self.upstream_failures, name, kind).inc()

    def upstream_failover(self, name: str) -> None:
        self._child(self.upstream_failovers, name).inc()

    def upstream_cooldown(self, name: str) -> None:
        self._child(self.upstream_cooldowns, name).inc()

    def upstream_circuit_opened(self, name: str) -> None:
        self._child(self.upstream_circuit_opens, name).inc()

    def rate_limited(self, reason: str) -> None:
        self._child(self.rate_limited_requests, reason or "unknown").inc()

    def overload(self, cap: str) -> None:
        self._child(self.overloaded, cap).inc()

    def observe(self, handler) -> None:
        """Records one finished request (called once per request from app.py's log hook)."""
        status = handler.get_status()
        endpoint = getattr(handler, "endpoint", None) or endpoint_label(handler.request.path)
        self._child(self.requests, endpoint, str(status)).inc()
        err = getattr(handler, "gateway_error", None)
        relay = getattr(handler, "relay", None)
        if relay is not None and relay.error is not None:
            err = relay.error
        if err is not None:
            code = err.code or "none"
            self._child(self.errors, code).inc()
            if code.startswith(("upstream", "timeout")):
                self._child(self.upstream_errors, code).inc()
        if relay is not None:
            self._child(self.streams, relay.outcome or "unknown").inc()
            if relay.first_event_at is not None:
                self.ttft.observe(relay.first_event_at - relay.started)
            self.stream_duration.observe(handler.request.request_time())
            if relay.keepalives:
                self.keepalives.inc(relay.keepalives)
            if relay.bytes_out:
                self.bytes_relayed.inc(relay.bytes_out)
            if relay.events:
                self.events_relayed.inc(relay.events)
        reader = getattr(handler, "reader", None)  # a resumable stream's reader sends its own keep-alives
        if reader is not None and reader.keepalives:
            self.keepalives.inc(reader.keepalives)

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        self.refresh()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, self.multiprocess_dir)
        return generate_latest(registry)


class _LogLinesDropped:
    """tornado_grok_log_lines_dropped_total, read from the process's log writer on scrape."""

    def collect(self):
        yield CounterMetricFamily("tornado_grok_log_lines_dropped", "Log lines (access log and others) "
                                  "dropped because stderr was not read fast enough.", value=accesslog.dropped())
