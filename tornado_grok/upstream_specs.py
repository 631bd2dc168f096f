"""The `[[upstreams]]` list of gateway.toml: named upstreams, each with its URL, where its key comes
from (an environment variable or a file only the gateway's user can read, never the TOML itself), a
weight, a concurrency cap and optionally the models it serves. Checked whole at start: a bad list is
one ValueError naming the entry and the problem (config.py turns it into a configuration error)."""

import dataclasses
import os
import re
import stat

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
FIELDS = ("name", "url", "key_env", "key_file", "weight", "max_concurrent", "models", "grpc", "grpc_tls")
GRPC_ADDRESS = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):([0-9]{1,5})$")  # ASCII digits only


@dataclasses.dataclass(frozen=True)
class UpstreamSpec:
    """One configured upstream; its key is never part of its repr."""

    name: str
    url: str
    key: str = dataclasses.field(default="", repr=False)
    weight: float = 1.0
    max_concurrent: int = 0  # 0: no cap of its own
    models: tuple = ()  # empty: every model
    grpc: str = ""  # its gRPC address, host:port; "": not used for gRPC calls (grpc_upstreams.py)
    grpc_tls: bool = True


def parse(items, environ) -> tuple:
    """The UpstreamSpecs of a TOML array of tables; ValueError naming the first problem."""
    if not isinstance(items, list) or not items:
        raise ValueError("[[upstreams]] must be a non-empty array of tables")
    specs, names = [], set()
    for index, item in enumerate(items):
        where = "upstreams[%d]" % index
        if not isinstance(item, dict):
            raise ValueError("%s is not a table" % where)
        name = item.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ValueError("%s: name must be 1-64 letters, digits, '_', '-' or '.'" % where)
        where = "upstream %r" % name
        if name in names:
            raise ValueError("%s is listed twice" % where)
        names.add(name)
        specs.append(_spec(item, name, where, environ))
    return tuple(specs)


def _spec(item: dict, name: str, where: str, environ) -> UpstreamSpec:
    if "key" in item or "api_key" in item:
        raise ValueError("%s: a key never goes in the TOML file; name where it is with key_env or key_file" % where)
    unknown = sorted(set(item) - set(FIELDS))
    if unknown:
        raise ValueError("%s: unknown field %r" % (where, unknown[0]))
    url = item.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError("%s: url must be an http:// or https:// URL" % where)
    weight = item.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 1000:
        raise ValueError("%s: weight must be a number over 0 and at most 1000" % where)
    cap = item.get("max_concurrent", 0)
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
        raise ValueError("%s: max_concurrent must be a whole number, 0 for no cap" % where)
    models = item.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise ValueError("%s: models must be a list of model names" % where)
    grpc_address, grpc_tls = item.get("grpc", ""), item.get("grpc_tls", True)
    port = GRPC_ADDRESS.match(grpc_address) if isinstance(grpc_address, str) else None
    if grpc_address != "" and (port is None or not 0 < int(port.group(1)) < 65536):
        raise ValueError("%s: grpc must be host:port (api.x.ai:443)" % where)
    if not isinstance(grpc_tls, bool):
        raise ValueError("%s: grpc_tls must be true or false" % where)
    return UpstreamSpec(name, url.rstrip("/"), _key(item, where, environ), float(weight), cap, tuple(models),
                        grpc_address, grpc_tls)


def _key(item: dict, where: str, environ) -> str:
    env, path = item.get("key_env"), item.get("key_file")
    if (env is None) == (path is None):
        raise ValueError("%s: give exactly one of key_env (an environment variable's name) or key_file" % where)
    if env is not None:
        if not isinstance(env, str) or not env:
            raise ValueError("%s: key_env must name an environment variable" % where)
        key = environ.get(env, "")
        if not key:
            raise ValueError("%s: environment variable %s is not set (key_env)" % (where, env))
        return key
    if not isinstance(path, str) or not path:
        raise ValueError("%s: key_file must be a path" % where)
    try:
        info = os.stat(path)
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError("%s: key_file %s can be read by group or others (chmod 600 it)" % (where, path))
        if info.st_uid != os.getuid():
            raise ValueError("%s: key_file %s belongs to another user" % (where, path))
        with open(path, "r", encoding="utf-8") as f:
            key = f.read().strip()
    except OSError as e:
        raise ValueError("%s: key_file %s: %s" % (where, path, e.strerror)) from None
    except UnicodeDecodeError:
        raise ValueError("%s: key_file %s is not text" % (where, path)) from None
    if not key or "\n" in key or "\r" in key:
        raise ValueError("%s: key_file %s must hold one key on one line" % (where, path))
    return key
