"""The gateway's own client keys: stored as SHA-256 hashes in a JSON file, looked up by hash.

Keys are 256-bit random tokens, so a plain SHA-256 is enough to keep the file useless to a reader;
a lookup goes by the digest of what the client sent, so its timing says nothing about any stored key,
and the final comparison is hmac.compare_digest.
"""

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import time

from .errors import GatewayError

KEY_PREFIX = "tg-"
DEV_KEY = "tg-dev-local-mock-key"  # accepted only while the gateway serves from the bundled mock


@dataclasses.dataclass(frozen=True)
class ClientKey:
    """A client key as the gateway knows it: a name, its hash, and its own limits (None = defaults)."""

    name: str
    digest: str
    limits: dict | None = None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _unauthorized(message: str) -> GatewayError:
    return GatewayError(401, message, code="invalid_api_key",
                        headers={"WWW-Authenticate": 'Bearer realm="tornado_grok"'})


class KeyStore:
    """Answers "which client is this?" for an Authorization header, or raises a 401 naming the problem."""

    def __init__(self, path: str, extra: list[ClientKey] | None = None):
        self.path = path
        self._extra = list(extra or [])
        self._by_digest: dict[str, ClientKey] = {}
        self._mtime = None
        self._checked = 0.0
        self.generation = 0  # bumped on every reload, so caches of per-key data can tell
        self.reload()

    def reload(self) -> None:
        keys = {k.digest: k for k in self._extra}
        try:
            self._mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            self._mtime = None
        else:
            for entry in read_file(self.path):
                keys[entry.digest] = entry
        self._by_digest = keys
        self.generation += 1

    def _maybe_reload(self) -> None:
        """Picks up keys added by `run.py keys add` while running, at most once a second."""
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            self.reload()

    def authenticate(self, header: str | None) -> ClientKey:
        if not header:
            raise _unauthorized("missing Authorization header; send 'Authorization: Bearer <key>'")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise _unauthorized("the Authorization header must use the Bearer scheme")
        token = token.strip()
        if not token:
            raise _unauthorized("the Authorization header has an empty API key")
        wanted = digest(token)
        found = self._by_digest.get(wanted)
        if found is None:
            self._maybe_reload()
            found = self._by_digest.get(wanted)
        if found is None or not hmac.compare_digest(found.digest, wanted):
            raise _unauthorized("Invalid authentication token")  # the seed's own words
        return found

    def __len__(self) -> int:
        return len(self._by_digest)


def read_file(path: str) -> list[ClientKey]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    return [ClientKey(e["name"], e["sha256"], e.get("limits")) for e in doc.get("keys", [])]


def add_key(path: str, name: str, limits: dict | None = None) -> str:
    """Creates a key named `name`, stores only its hash in `path`, and returns the key itself."""
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError("a key name uses letters, digits, '-', '_' and '.' only")
    doc = {"keys": []}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    if any(e["name"] == name for e in doc["keys"]):
        raise ValueError("a key named %r exists already" % name)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    entry = {"name": name, "sha256": digest(key), "created": int(time.time())}
    if limits:
        entry["limits"] = limits
    doc["keys"].append(entry)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return key


def dev_key() -> ClientKey:
    return ClientKey("dev", digest(DEV_KEY))
