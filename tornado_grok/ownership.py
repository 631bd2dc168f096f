"""Ids that belong to keys: every id the gateway hands out for an upstream object is bound to the
client key that created it, so that for any other key it does not exist.

The upstream sees one operator key and cannot tell tenants apart, so the gateway does, statelessly:
the id a client sees is the upstream's id, a dot, and a tag, `resp_8f3….k5q2xw…` (26 characters of
base32), the first 128 bits of HMAC-SHA256 under the gateway's secret over (kind, the key's digest,
the upstream's name, the upstream's id). Nothing is stored and the check is one HMAC: the ids work
after a restart and on any process or machine that has the same secret, and expire when the
upstream forgets the object. A tag that does not verify (another key's id, an id the gateway never
issued, an id of another kind) is answered as an unknown id, before the upstream is called.

The secret is 32 random bytes, hex, in `id_secret_file` (default: `id_secret` beside the keys file),
made on the first start (mode 0600) and read on every later one; every process and machine that
serves the same keys must share it. Replacing it makes every issued id unknown.
"""

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import tempfile

from . import validate
from .config import ConfigError
from .errors import GatewayError

SEPARATOR = "."
TAG_CHARS = 26  # 128 bits in unpadded base32
MAX_UPSTREAM_ID = 128  # an upstream id longer than this is not bound (and so never accepted back)

RESPONSE = "response"
DEFERRED = "deferred"


class Ownership:
    """Issues and opens key-bound ids under one secret."""

    __slots__ = ("_secret", "names")

    def __init__(self, secret: bytes, names: tuple = ("",)):
        if len(secret) < 32:
            raise ValueError("the id secret must be at least 32 bytes")
        self._secret = secret
        # The names of the upstreams an id can belong to (upstreams.py; "" with a single upstream).
        self.names = names

    def tag(self, key_digest: str, kind: str, upstream_id: str, upstream: str = "") -> str:
        message = "\0".join((kind, key_digest, upstream, upstream_id)).encode("utf-8", "surrogatepass")
        mac = hmac.new(self._secret, message, hashlib.sha256).digest()[:16]
        return base64.b32encode(mac).decode("ascii").rstrip("=").lower()

    def issue(self, key_digest: str, kind: str, upstream_id: str, upstream: str = "") -> str:
        """The id the client sees for the upstream's `upstream_id`, bound to this key."""
        return upstream_id + SEPARATOR + self.tag(key_digest, kind, upstream_id, upstream)

    def open(self, key_digest: str, kind: str, client_id: str, upstream: str = "") -> str | None:
        """The upstream's id behind a client's id, or None when it is not this key's id of this kind."""
        upstream_id, separator, tag = client_id.rpartition(SEPARATOR)
        if not separator or not upstream_id or len(tag) != TAG_CHARS or len(upstream_id) > MAX_UPSTREAM_ID:
            return None
        if not hmac.compare_digest(tag, self.tag(key_digest, kind, upstream_id, upstream)):
            return None
        return upstream_id

    def owner(self, key_digest: str) -> "Owner":
        return Owner(self, key_digest)


class Owner:
    """One key's view of the ids: what a request's handler and its stream dialect are given.

    `upstream` is the name of the upstream serving the request (set when one is picked): the ids it
    hands out are bound to it, so that their later calls go back to it (locate)."""

    __slots__ = ("ownership", "key_digest", "upstream")

    def __init__(self, ownership: Ownership, key_digest: str):
        self.ownership = ownership
        self.key_digest = key_digest
        self.upstream = ""

    def issue(self, kind: str, upstream_id):
        """The client's id for an upstream id; anything that is not a usable id is returned as it is."""
        if type(upstream_id) is not str or not upstream_id or len(upstream_id) > MAX_UPSTREAM_ID:
            return upstream_id
        return self.ownership.issue(self.key_digest, kind, upstream_id, self.upstream)

    def open(self, kind: str, client_id, what: str, field: str = "") -> str:
        """The upstream's id behind the client's; a 400 naming `field` for what cannot be an id at all
        (the one id check, validate.path_id), the 404 of an unknown `what` for one that is not this key's."""
        return self.locate(kind, client_id, what, field)[0]

    def locate(self, kind: str, client_id, what: str, field: str = "") -> tuple:
        """(the upstream's id, the name of the upstream it belongs to), as open() checks it: the
        upstream is the one whose name makes the tag verify."""
        upstream_id, separator, tag = client_id.rpartition(SEPARATOR) if type(client_id) is str else ("", "", "")
        validate.path_id(upstream_id if separator and len(tag) == TAG_CHARS else client_id, field or what + " id")
        for name in self.ownership.names:
            upstream_id = self.ownership.open(self.key_digest, kind, client_id, name)
            if upstream_id is not None:
                return upstream_id, name
        raise not_found(what)

    def issue_response(self, response) -> None:
        """A Response object (a dict) as this key sees it: its `id` and `previous_response_id` bound."""
        if type(response) is not dict:
            return
        for field in ("id", "previous_response_id"):
            if response.get(field):
                response[field] = self.issue(RESPONSE, response[field])


def not_found(what: str) -> GatewayError:
    """The answer for an id that is not the key's: the same as for an id nobody ever had (the id is
    not echoed: it may be anything)."""
    return GatewayError(404, "no such %s: it does not exist, or belongs to another key" % what, code="not_found",
                        kind="invalid_request_error")


def secret_path(config) -> str:
    return config.id_secret_file or os.path.join(os.path.dirname(os.path.abspath(config.keys_file)), "id_secret")


def load_secret(config) -> bytes:
    """The gateway's id secret: read from its file, which is made (0600, atomically: the first of
    several starting processes wins, the others read its secret) when it does not exist yet."""
    path = secret_path(config)
    if not os.path.exists(path):
        _create(path)
    try:
        with open(path, "r", encoding="ascii") as f:
            text = f.read().strip()
        secret = binascii.unhexlify(text)
    except (OSError, UnicodeDecodeError, binascii.Error, ValueError) as e:
        raise ConfigError("id_secret_file %s: cannot read a hex secret (%s)" % (path, type(e).__name__)) from None
    if len(secret) < 32:
        raise ConfigError("id_secret_file %s: the secret must be at least 32 bytes (64 hex digits)" % path)
    return secret


def _create(path: str) -> None:
    folder = os.path.dirname(path) or "."
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".id_secret.", dir=folder)  # mode 0600
    except OSError as e:
        raise ConfigError("id_secret_file %s: cannot create it (%s)" % (path, e.strerror)) from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)  # fails if another process made it first: then its secret is the one
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
