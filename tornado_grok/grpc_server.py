"""The gRPC listener: grpcio's asyncio server on the loop Tornado runs on, relaying xAI's gRPC API
(grpc_relay.py) to the upstream channels: `grpc_upstream` (TLS unless `grpc_upstream_tls = false`),
or each `[[upstreams]]` entry's `grpc` address (grpc_upstreams.py).

Plaintext HTTP/2 unless `grpc_tls_cert` and `grpc_tls_key` name a certificate and its key. With
`--workers N` every worker listens on the same port (SO_REUSEPORT, `grpc.so_reuseport`), as the
HTTP side shares its socket; on SIGTERM the listener takes no new calls and gives those in flight
`drain_seconds` to finish, then cancels them (their upstream calls with them).
"""

import grpc

from .config import Config, ConfigError
from .grpc_relay import GrpcRelay
from .grpc_upstreams import GrpcUpstreams

MIB = 1 << 20
# As xai-sdk's own channel: messages up to 20 MiB (images), keep-alive pings.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 20 * MIB),
    ("grpc.max_receive_message_length", 20 * MIB),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.primary_user_agent", "tornado_grok"),
]
SERVER_OPTIONS = [
    ("grpc.max_send_message_length", 20 * MIB),
    ("grpc.max_receive_message_length", 20 * MIB),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10000),
    ("grpc.http2.max_ping_strikes", 0),
]


class GrpcListener:
    """The server, its relay and the upstream channels of one gateway process."""

    def __init__(self, server, relay: GrpcRelay, upstreams: GrpcUpstreams, port: int):
        self.server, self.relay, self.upstreams, self.port = server, relay, upstreams, port

    async def stop(self, grace: float) -> None:
        """No new calls; those in flight get `grace` seconds, then are cancelled."""
        await self.server.stop(grace)
        await self.upstreams.close()


def grpc_port(config: Config, http_port: int) -> int:
    """The port to listen on: grpc_port, or (-1, the default) the HTTP port + 1, any free port when
    the HTTP port was chosen by the system (0)."""
    if config.grpc_port >= 0:
        return config.grpc_port
    return http_port + 1 if config.port else 0


def upstream_channel(address: str, tls: bool):
    if tls:
        return grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(), options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def server_credentials(config: Config):
    if not config.grpc_tls_cert:
        return None
    try:
        with open(config.grpc_tls_cert, "rb") as f:
            cert = f.read()
        with open(config.grpc_tls_key, "rb") as f:
            key = f.read()
    except OSError as e:
        raise ConfigError("grpc_tls_cert / grpc_tls_key: %s" % e) from None
    return grpc.ssl_server_credentials([(key, cert)])


async def start(config: Config, gateway, http_port: int) -> GrpcListener:
    """Listens for gRPC on (host, port) in this process's running loop; ConfigError if it cannot."""
    upstreams = GrpcUpstreams(config, gateway.upstreams, upstream_channel)
    relay = GrpcRelay(gateway, upstreams)
    reuse = 1 if config.workers > 1 else 0
    server = grpc.aio.server(options=SERVER_OPTIONS + [("grpc.so_reuseport", reuse)])
    server.add_generic_rpc_handlers((relay.handler(),))
    host = "[%s]" % config.host if ":" in config.host else config.host
    address = "%s:%d" % (host, grpc_port(config, http_port))
    credentials = server_credentials(config)
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError:  # grpcio raises this when the port cannot be bound
        port = 0
    if not port:  # one line at start, as for a bad setting (a supervisor does not respawn it)
        await server.stop(None)
        await upstreams.close()
        raise ConfigError("cannot listen for gRPC on %s (in use?): set grpc_port (--grpc-port), or "
                          "grpc_enabled = false" % address)
    await server.start()
    return GrpcListener(server, relay, upstreams, port)
