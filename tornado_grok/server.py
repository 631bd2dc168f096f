"""Starting and stopping the gateway: listen, serve from the bundled mock when there is no key, drain."""

import asyncio
import logging
import signal
import sys

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from . import auth
from .app import make_app
from .config import Config
from .gateway import Gateway

log = logging.getLogger("tornado_grok")


def say(line: str) -> None:
    print(line, flush=True)


async def start_mock(config: Config) -> None:
    """Starts mock_upstream on a free loopback port in this process and points the gateway at it."""
    from mock_upstream.app import start
    _server, port = start(port=0, host="127.0.0.1")
    config.upstream_url = "http://127.0.0.1:%d/v1" % port


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
    else:
        say("Upstream: %s" % config.upstream_url)
    say("tornado_grok listening on http://%s:%d" % (config.host, port))


async def serve(config: Config, sockets=None) -> int:
    """Runs until SIGTERM or SIGINT, then drains; returns the exit code."""
    if config.mock:
        await start_mock(config)
    extra = [auth.dev_key()] if config.mock else []
    gateway = Gateway(config, keys=auth.KeyStore(config.keys_file, extra=extra))
    app = make_app(config, gateway)
    server = HTTPServer(app, max_body_size=config.max_body_size + 1024 * 1024,
                        idle_connection_timeout=max(config.total_timeout, 3600))
    if sockets is None:
        sockets = bind_sockets(config.port, config.host)
    server.add_sockets(sockets)
    gateway.start()
    banner(config, sockets[0].getsockname()[1])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.warning("signal received: draining (up to %ss)", config.drain_seconds)
    server.stop()  # no new connections
    await gateway.drain()
    await server.close_all_connections()
    await gateway.close()
    say("tornado_grok stopped")
    return 0


def run(config: Config) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    return asyncio.run(serve(config))
