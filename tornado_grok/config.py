"""Typed configuration: defaults, then conf/gateway.toml, then TG_* environment, then flags."""

import dataclasses
import os
import re
import tomllib
from typing import Any

from . import upstream_specs

XAI_BASE_URL = "https://api.x.ai/v1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if not os.path.isdir(os.path.join(ROOT, "conf")):  # installed with pip: the working directory's conf/,
    ROOT = os.getcwd()  # not one in site-packages (`keys add` writes keys.json into it)
DEFAULT_CONFIG_FILE = os.path.join(ROOT, "conf", "gateway.toml")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names it."""


@dataclasses.dataclass
class Config:
    """Every setting of the gateway; conf/gateway.toml documents each one."""

    # [server]
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_body_size: int = 20 * 1024 * 1024
    max_connections: int = 20000
    listen_backlog: int = 4096
    header_timeout: float = 60.0
    keepalive_timeout: float = 75.0
    body_timeout: float = 60.0
    max_header_size: int = 64 * 1024
    max_header_count: int = 100
    drain_seconds: float = 30.0
    keys_file: str = os.path.join(ROOT, "conf", "keys.json")
    id_secret_file: str = ""  # empty: id_secret beside keys_file (ownership.py)
    event_loop: str = "uvloop"
    admin_key: str = ""
    # [upstream]
    upstream_url: str = ""
    upstream_key: str = ""
    max_upstream: int = 10000
    max_upstream_body: int = 64 * 1024 * 1024
    forward_mock_headers: bool = False
    connect_timeout: float = 10.0
    first_event_timeout: float = 600.0
    idle_timeout: float = 300.0
    total_timeout: float = 3600.0
    # [grpc] xAI's gRPC API (xai-sdk), relayed on a port of its own (grpc_server.py)
    grpc_enabled: bool = True
    grpc_port: int = -1  # -1: the HTTP port + 1 (a free port when port = 0)
    grpc_upstream: str = "api.x.ai:443"
    grpc_upstream_tls: bool = True
    grpc_tls_cert: str = ""
    grpc_tls_key: str = ""
    # [[upstreams]] several named upstreams (upstreams.py); empty: upstream_url with XAI_API_KEY
    upstreams: tuple = ()
    upstream_attempts: int = 3
    failover_first_event_timeout: float = 10.0
    failover_whole_timeout: float = 0.0
    upstream_cooldown: float = 1.0
    circuit_failures: int = 5
    circuit_seconds: float = 30.0
    # [streaming]
    keepalive_interval: float = 15.0
    stream_fallback_format: str = "json"
    sse_error_format: str = "seed"
    high_water_mark: int = 64 * 1024
    max_event_size: int = 8 * 1024 * 1024
    # [resumable] streams that survive a dropped connection (X-Resumable: true)
    resumable_default: bool = False
    resume_window: float = 60.0
    resume_retention: float = 600.0
    resume_max_bytes: int = 4 * 1024 * 1024
    resume_max_events: int = 100000
    stream_store: str = "memory"
    resume_heartbeat: float = 1.0
    resume_key_bytes: int = 128 * 1024 * 1024
    resume_total_bytes: int = 512 * 1024 * 1024
    resume_requests_per_minute: int = 0  # 0: ten times the key's requests_per_minute
    resume_readers_per_stream: int = 8
    resume_readers_per_key: int = 32
    # [models]
    aliases_file: str = os.path.join(ROOT, "conf", "model_aliases.toml")
    vision_model: str = "grok-4.3"
    image_model: str = "grok-2-image-1212"
    max_image_bytes: int = 10 * 1024 * 1024
    # [limits] defaults for keys that set none of their own; 0 means unlimited
    requests_per_minute: int = 600
    concurrent_requests: int = 100
    tokens_per_minute: int = 0
    ratelimit_backend: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_failure_mode: str = "fail_open"
    redis_timeout: float = 0.05
    lease_seconds: float = 30.0
    # [cors] browsers; off while cors_origins is empty
    cors_origins: tuple = ()
    cors_allow_methods: tuple = ("GET", "POST", "DELETE", "OPTIONS")
    cors_allow_headers: tuple = ("*",)
    cors_max_age: int = 600
    # [logging]
    access_log: bool = True
    log_queue_bytes: int = 4 * 1024 * 1024
    debug_endpoints: bool = False
    # Filled at load time, not settable from the file.
    aliases: dict = dataclasses.field(default_factory=dict)
    mock: bool = False
    metrics_dir: str = ""  # set by the --workers supervisor: prometheus_client's multiprocess folder

    def validate(self) -> None:
        choices = {
            "stream_fallback_format": ("json", "sse"),
            "sse_error_format": ("seed", "openai"),
            "ratelimit_backend": ("memory", "redis"),
            "redis_failure_mode": ("fail_open", "fail_closed"),
            "event_loop": ("uvloop", "asyncio"),
            "stream_store": ("memory", "redis"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError("%s must be one of %s, not %r" % (name, ", ".join(allowed), getattr(self, name)))
        for name in ("connect_timeout", "first_event_timeout", "idle_timeout", "total_timeout",
                     "keepalive_interval", "drain_seconds", "lease_seconds", "header_timeout",
                     "keepalive_timeout", "body_timeout", "max_header_size", "max_header_count",
                     "max_connections", "listen_backlog", "redis_timeout", "resume_window", "resume_retention",
                     "resume_max_bytes", "resume_max_events", "resume_heartbeat", "resume_readers_per_stream",
                     "resume_readers_per_key", "resume_key_bytes", "resume_total_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError("%s must be greater than 0" % name)
        for origin in self.cors_origins:
            if origin != "*" and (not origin.startswith(("http://", "https://")) or origin.count("/") != 2):
                raise ConfigError("cors_origins: %r is not an origin (scheme://host[:port], or \"*\")" % origin)
        if self.cors_max_age < 0:
            raise ConfigError("cors_max_age must not be negative")
        if self.resume_requests_per_minute < 0:
            raise ConfigError("resume_requests_per_minute must not be negative")
        for name in ("log_queue_bytes", "max_upstream_body"):
            if getattr(self, name) <= 0:
                raise ConfigError("%s must be greater than 0" % name)
        if self.max_event_size < 65536:  # an upstream read (16 KiB) must fit in one event's bound
            raise ConfigError("max_event_size must be at least 65536 bytes")
        if not -1 <= self.grpc_port <= 65535:
            raise ConfigError("grpc_port must be a port number, 0 (any free port) or -1 (the HTTP port + 1)")
        if not re.fullmatch(r"[0-9]{1,5}", self.grpc_upstream.rpartition(":")[2]):  # ASCII digits only
            raise ConfigError("grpc_upstream must be host:port (api.x.ai:443), not %r" % self.grpc_upstream)
        if bool(self.grpc_tls_cert) != bool(self.grpc_tls_key):
            raise ConfigError("grpc_tls_cert and grpc_tls_key go together: set both, or neither")
        if self.upstream_attempts < 1 or self.circuit_failures < 1:
            raise ConfigError("upstream_attempts and circuit_failures must be at least 1")
        for name in ("failover_first_event_timeout", "failover_whole_timeout", "upstream_cooldown", "circuit_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError("%s must not be negative" % name)
        if not self.upstreams and not self.upstream_url.startswith(("http://", "https://")):
            raise ConfigError("upstream_url must be an http:// or https:// URL, not %r" % self.upstream_url)


_FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name not in ("aliases", "mock", "metrics_dir")}


def _coerce(name: str, value: Any) -> Any:
    default = _FIELDS[name].default
    try:
        if isinstance(default, tuple):
            # A TOML array, or a comma-separated string (TG_CORS_ORIGINS="https://a,https://b").
            items = value.split(",") if isinstance(value, str) else list(value)
            if not all(isinstance(item, str) for item in items):
                raise ValueError(value)
            return tuple(item.strip() for item in items if item.strip())
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError("%s: cannot use %r (expected %s)" % (name, value, type(default).__name__)) from None


def load_toml(path: str) -> dict:
    """Flattens the [section] tables of a gateway.toml into field values."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("%s: %s" % (path, e)) from None
    values = {}
    for section, table in doc.items():
        items = table.items() if isinstance(table, dict) else [(section, table)]
        for name, value in items:
            if name not in _FIELDS:
                raise ConfigError("%s: unknown setting %r in [%s]" % (path, name, section))
            values[name] = value if name == "upstreams" else _coerce(name, value)  # checked by load()
    return values


def load_aliases(path: str) -> dict:
    """Reads conf/model_aliases.toml: {"client name": "upstream name"}."""
    if not os.path.exists(path):
        return {}
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    aliases = doc.get("aliases", {})
    for k, v in aliases.items():
        if not isinstance(v, str) or not v:
            raise ConfigError("%s: alias %r must map to a model name" % (path, k))
    return dict(aliases)


def load(config_file: str | None = None, overrides: dict | None = None, environ=None) -> Config:
    """Builds the Config; with no XAI_API_KEY and no upstream URL it selects the bundled mock."""
    environ = os.environ if environ is None else environ
    values: dict = {}
    path = config_file or environ.get("TG_CONFIG") or DEFAULT_CONFIG_FILE
    if config_file or os.path.exists(path):
        values.update(load_toml(path))
    for name in _FIELDS:
        env = environ.get("TG_" + name.upper())
        if env is not None and name not in ("upstream_key", "upstreams"):
            values[name] = _coerce(name, env)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _coerce(name, value)
    values["upstream_key"] = environ.get("XAI_API_KEY", "")
    if "upstreams" in values:
        try:
            values["upstreams"] = upstream_specs.parse(values["upstreams"], environ)
        except ValueError as e:
            raise ConfigError("%s: %s" % (path, e)) from None
    config = Config(**values)
    if not config.upstream_url and not config.upstreams:
        if config.upstream_key:
            config.upstream_url = XAI_BASE_URL
        else:
            config.mock = True
            config.forward_mock_headers = True
            config.upstream_url = "http://127.0.0.1:0/v1"  # replaced once the mock listens
    config.upstream_url = config.upstream_url.rstrip("/")
    config.aliases = load_aliases(config.aliases_file)
    config.validate()
    return config
