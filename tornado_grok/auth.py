"""The gateway's own client keys: stored as SHA-256 hashes in a JSON file, looked up by hash.

Keys are 256-bit random tokens, so a plain SHA-256 is enough to keep the file useless to a reader;
a lookup goes by the digest of what the client sent, so its timing says nothing about any stored key,
and the final comparison is hmac.compare_digest.
"""

import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import time

from .config import ConfigError
from .errors import GatewayError

log = logging.getLogger("tornado_grok")

KEY_PREFIX = "tg-"
DEV_KEY = "tg-dev-local-mock-key"  # accepted only while the gateway serves from the bundled mock


@dataclasses.dataclass(frozen=True)
class ClientKey:
    """A client key as the gateway knows it: a name, its hash, its own limits and its own default for
    resumable streams (None: the config's)."""

    name: str
    digest: str
    limits: dict | None = None
    resumable: bool | None = None


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
        self.generation = 0  # bumped on every reload, so caches of per-key data can tell
        self.reload()

    def reload(self) -> None:
        """Reads the file; a bad file raises KeysFileError (at start, the gateway must not run on it)."""
        keys = {k.digest: k for k in self._extra}
        self._mtime = _stamp(self.path)
        if self._mtime is not None:
            for entry in read_file(self.path):
                keys[entry.digest] = entry
        self._by_digest = keys
        self.generation += 1

    def _maybe_reload(self) -> None:
        """Picks up keys added by `run.py keys add` while running: called for a key not known, it
        reads the file again when the file changed (one stat, about a microsecond, otherwise). A key
        works from the first request after it was added, even right after an unknown key's 401.

        A file that went bad while running (a hand edit, a full disk) does not take the gateway down
        or turn requests into 500s: the last good keys stay in force, and the problem is logged once
        per change of the file.
        """
        try:
            stamp = _stamp(self.path)
        except KeysFileError as e:
            stamp = str(e)  # the folder cannot be read: reported once, like a bad file
        if stamp == self._mtime:
            return
        try:
            self.reload()
        except KeysFileError as e:
            self._mtime = stamp  # not again until the file changes again
            log.error("%s; still using the %d keys read before", e, len(self._by_digest))

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

    def by_digest(self, key_digest: str) -> ClientKey | None:
        """The key of this digest (a stream's owner, resumed with its token), or None."""
        return self._by_digest.get(key_digest)

    def __len__(self) -> int:
        return len(self._by_digest)


class KeysFileError(ConfigError):
    """The keys file cannot be used; the message names the file (and the line, for bad JSON)."""


_SHA256 = re.compile(r"[0-9a-f]{64}")
_LIMIT_NAMES = ("requests_per_minute", "concurrent_requests", "tokens_per_minute")


def _stamp(path: str):
    """What tells a changed file from an unchanged one, or None when there is no file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise KeysFileError("keys file %s: %s" % (path, e.strerror or e)) from None
    return st.st_mtime_ns, st.st_size, st.st_ino


def read_doc(path: str) -> dict:
    """The keys file as {"keys": [...]}, checked; {"keys": []} when it does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {"keys": []}
    except (OSError, UnicodeDecodeError) as e:
        raise KeysFileError("keys file %s: cannot read it: %s" % (path, getattr(e, "strerror", None) or e)) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise KeysFileError("keys file %s: line %d column %d: not valid JSON: %s"
                            % (path, e.lineno, e.colno, e.msg)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise KeysFileError('keys file %s: expected an object {"keys": [...]}' % path)
    names = set()
    for i, e in enumerate(doc["keys"]):
        where = "keys file %s: keys[%d]" % (path, i)
        if not isinstance(e, dict):
            raise KeysFileError("%s: expected an object, not %s" % (where, type(e).__name__))
        if not isinstance(e.get("name"), str) or not e["name"]:
            raise KeysFileError('%s: "name" must be a non-empty string' % where)
        if e["name"] in names:
            raise KeysFileError("%s: the name %r is used twice" % (where, e["name"]))
        names.add(e["name"])
        if not isinstance(e.get("sha256"), str) or not _SHA256.fullmatch(e["sha256"]):
            raise KeysFileError('%s (%s): "sha256" must be 64 lowercase hex digits' % (where, e["name"]))
        limits = e.get("limits")
        if limits is not None and not (isinstance(limits, dict) and all(
                k in _LIMIT_NAMES and type(v) is int and v >= 0 for k, v in limits.items())):
            raise KeysFileError('%s (%s): "limits" must be an object of %s, each a whole number >= 0'
                                % (where, e["name"], ", ".join(_LIMIT_NAMES)))
        if "resumable" in e and type(e["resumable"]) is not bool:
            raise KeysFileError('%s (%s): "resumable" must be true or false' % (where, e["name"]))
    return doc


def read_file(path: str) -> list[ClientKey]:
    """The keys of a keys file ([] when it does not exist); KeysFileError when it cannot be used."""
    return [ClientKey(e["name"], e["sha256"], e.get("limits"), e.get("resumable")) for e in read_doc(path)["keys"]]


@contextlib.contextmanager
def _locked(path: str):
    """Holds an exclusive lock on `path`.lock, so concurrent `keys add` runs write one after another."""
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_atomic(path: str, doc: dict) -> None:
    """Replaces `path` with `doc` so a reader sees the old file or the new one, whole, even after a crash."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp made it 0600: owner only
            json.dump(doc, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)  # the rename itself survives a power loss
    finally:
        os.close(dfd)


def add_key(path: str, name: str, limits: dict | None = None, resumable: bool | None = None) -> str:
    """Creates a key named `name`, stores only its hash in `path`, and returns the key itself.

    Safe to run many times at once on one file: the read-modify-write happens under a lock, and the
    file is replaced atomically, so no key that was printed is ever lost.
    """
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError("a key name uses letters, digits, '-', '_' and '.' only")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with _locked(path):
        doc = read_doc(path)
        if any(e["name"] == name for e in doc["keys"]):
            raise ValueError("a key named %r exists already" % name)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        entry = {"name": name, "sha256": digest(key), "created": int(time.time())}
        if limits:
            entry["limits"] = limits
        if resumable is not None:
            entry["resumable"] = resumable
        doc["keys"].append(entry)
        _write_atomic(path, doc)
    return key


def dev_key() -> ClientKey:
    return ClientKey("dev", digest(DEV_KEY))
