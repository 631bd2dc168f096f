"""Starting and stopping the gateway: listen, serve from the bundled mock when there is no key, drain."""

import asyncio
import logging
import os
import signal
import sys

from tornado.netutil import bind_sockets

from . import accesslog, auth, gcpolicy, metrics, redact
from .app import make_app
from .config import Config, ConfigError
from .connections import ConnectionSlots, GatewayHTTPServer
from .gateway import Gateway
from .stores import make_accounting, make_limiter, make_stream_store

log = logging.getLogger("tornado_grok")
EXIT_CONFIG = 78  # sysexits.h EX_CONFIG: a worker that cannot start with this configuration


def say(line: str) -> None:
    print(line, flush=True)


async def start_mock(config: Config):
    """Starts mock_upstream on a free loopback port in this process and points the gateway at it;
    returns its gRPC server (None without gRPC), which the caller holds: grpcio stops a server it
    collects."""
    from mock_upstream.app import start
    _server, port = start(port=0, host="127.0.0.1")
    config.upstream_url = "http://127.0.0.1:%d/v1" % port
    config.upstream_key = "xai-bundled-mock-no-real-key"  # the mock, like xAI, wants a Bearer key
    if config.grpc_enabled:  # its gRPC services too, sharing its journal, scenarios and faults
        from mock_upstream import grpc_service
        grpc_mock, grpc_port = await grpc_service.start(_server.request_callback.settings["mock"])
        config.grpc_upstream, config.grpc_upstream_tls = "127.0.0.1:%d" % grpc_port, False
        return grpc_mock
    return None


def banner(config: Config, port: int) -> None:
    base = "http://%s:%d/api/v1" % (config.host, port)
    if config.mock:
        say("No XAI_API_KEY set: serving from the bundled mock upstream at %s" % config.upstream_url)
        say("Development client key (accepted only while serving from the mock): %s" % auth.DEV_KEY)
        say("Try it:")
        say("  curl -N %s/chat/completions -H 'Authorization: Bearer %s' "
            "-H 'Content-Type: application/json' -d '{\"model\": \"grok-4-1-fast-non-reasoning\", "
            "\"messages\": [{\"role\": \"user\", \"content\": \"Write a short story about a space "
            "adventure\"}], \"stream\": true}'" % (base, auth.DEV_KEY))
    elif config.upstreams:
        say("Upstreams: %s" % ", ".join("%s (%s)" % (u.name, u.url) for u in config.upstreams))
    else:
        say("Upstream: %s" % config.upstream_url)
    say("tornado_grok listening on http://%s:%d" % (config.host, port))


async def serve(config: Config, sockets=None) -> int:
    """Runs until SIGTERM or SIGINT, then drains; returns the exit code."""
    # From here on nothing this process logs can block its event loop (accesslog.py).
    accesslog.setup(config.log_queue_bytes)
    # Tornado's own messages may quote a request line or a header value (a client's key).
    redact.install_log_filter((config.upstream_key,) + tuple(u.key for u in config.upstreams))
    mock_grpc = await start_mock(config) if config.mock else None  # held while serving
    extra = [auth.dev_key()] if config.mock else []
    limiter = make_limiter(config)
    gateway = Gateway(config, keys=auth.KeyStore(config.keys_file, extra=extra), limiter=limiter,
                      accounting=make_accounting(config, limiter), stream_store=make_stream_store(config))
    gateway.connections = ConnectionSlots(config.max_connections)
    app = make_app(config, gateway)
    # Timeouts here bound reading a request and idle keep-alive only; a response (a long stream) is
    # bounded by the upstream timeouts of gateway.py, never by these.
    server = GatewayHTTPServer(app, config=config, slots=gateway.connections,
                               max_body_size=2 * config.max_body_size)
    if sockets is None:
        sockets = bind_sockets(config.port, config.host, backlog=config.listen_backlog)
    server.add_sockets(sockets)
    gateway.start()
    grpc_listener = None
    if config.grpc_enabled:
        from . import grpc_server
        try:
            grpc_listener = await grpc_server.start(config, gateway, sockets[0].getsockname()[1])
        except ConfigError:
            if mock_grpc is not None:  # stopped on this loop, not by grpcio after the loop is gone
                await mock_grpc.stop(None)
            raise
        say("gRPC listening on %s:%d (upstream %s)" % (config.host, grpc_listener.port,
                                                        grpc_listener.upstreams.addresses(config)))
    gcpolicy.settle()  # everything made at start is made: out of the collector's reach from here on
    banner(config, sockets[0].getsockname()[1])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.warning("signal received: draining (up to %ss)", config.drain_seconds)
    server.stop()  # no new connections
    if grpc_listener is not None:  # no new calls; those in flight drain with the HTTP requests
        await asyncio.gather(gateway.drain(), grpc_listener.stop(config.drain_seconds))
    else:
        await gateway.drain()
    await server.close_all_connections()
    await gateway.close()
    accesslog.shutdown()
    say("tornado_grok stopped")
    return 0


def run(config: Config) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    redact.install_log_filter((config.upstream_key,))
    if config.workers > 1:
        return run_workers(config)
    return run_loop(serve(config), config)


def run_loop(main, config: Config) -> int:
    """Runs a coroutine on uvloop (a C event loop; it is what makes the gateway's per-request cost
    competitive, see bench/README.md) unless `event_loop = "asyncio"` or uvloop is not installed."""
    if config.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed: using the asyncio event loop")
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def run_workers(config: Config) -> int:
    """Binds the port once, forks config.workers processes that share it, and supervises them.

    SIGTERM/SIGINT are passed on to every worker (each drains, then exits); a worker that dies any
    other way is replaced, except one that cannot start with this configuration (EXIT_CONFIG): then
    every worker is stopped and the supervisor exits 2 (run.py checks the keys file before forking).
    Each worker has its own limiter state unless ratelimit_backend is "redis", and in mock mode its
    own bundled mock upstream.
    """
    if config.ratelimit_backend == "memory":
        say("NOTE: %d workers with the memory rate-limit backend: limits are PER PROCESS, so each key "
            "may get up to %d times its limits. Set ratelimit_backend = \"redis\" for one shared limit."
            % (config.workers, config.workers))
    if config.mock:
        say("NOTE: mock mode: each worker serves from its own bundled mock upstream.")
    sockets = bind_sockets(config.port, config.host, backlog=config.listen_backlog)
    if config.grpc_enabled and config.grpc_port < 0:  # every worker listens on this one gRPC port
        config.grpc_port = config.port + 1 if config.port else _free_port(config.host)
    config.port = sockets[0].getsockname()[1]
    config.metrics_dir, made_metrics_dir = metrics.use_multiprocess()  # /metrics sums every worker
    try:
        return _supervise(config, sockets)
    finally:
        if made_metrics_dir:
            metrics.remove_multiprocess_dir(config.metrics_dir)


def _free_port(host: str) -> int:
    """A port free now, for the workers' shared gRPC port when the HTTP port was 0."""
    sock = bind_sockets(0, host)[0]
    port = sock.getsockname()[1]
    sock.close()
    return port


def _supervise(config: Config, sockets) -> int:
    """Forks the workers and replaces those that die, until SIGTERM/SIGINT; returns the exit code."""
    children: dict[int, int] = {}
    stopping = False
    supervisor = os.getpid()

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            _die_with_parent(supervisor)
            code = 1
            try:
                code = run_loop(serve(config, sockets), config)
            except ConfigError as e:  # starting again would fail the same way: tell the supervisor
                log.error("run.py: configuration error: %s", e)
                code = EXIT_CONFIG
            except Exception:  # os._exit below would end the process without a word
                log.exception("worker %d (pid %d) failed", index, os.getpid())
            finally:
                logging.shutdown()
                sys.stdout.flush()
                os._exit(code)
        children[pid] = index

    def forward(sig, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    for index in range(config.workers):
        spawn(index)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = restarts = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, None)
        if index is None:
            continue
        metrics.process_dead(pid, config.metrics_dir)
        code = os.waitstatus_to_exitcode(status)
        if code == EXIT_CONFIG and not stopping:
            log.error("worker %d (pid %d) cannot start with this configuration; stopping, not restarting it",
                      index, pid)
            forward(signal.SIGTERM, None)
            worst = 2
        elif not stopping and restarts < 100:
            restarts += 1
            log.error("worker %d (pid %d) exited with %d; starting a new one", index, pid, code)
            spawn(index)
        elif not stopping:
            log.error("workers keep exiting (%d restarts); stopping", restarts)
            forward(signal.SIGTERM, None)
            worst = 1
        else:
            worst = max(worst, code if code > 0 else 0)
    return worst


def _die_with_parent(supervisor: int) -> None:
    """Linux: a worker is sent SIGTERM (and drains) if its supervisor dies, even by SIGKILL."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != supervisor:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
