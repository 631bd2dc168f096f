"""GET /admin/usage: per-key usage totals for the operator, behind the config's admin_key.

Not under /api/v1 and never opened by a client key: 404 while admin_key is empty (the admin API is
off), 401 without a Bearer token, 403 with any other token.
"""

import hmac

from ..errors import GatewayError
from .base import BaseHandler


class AdminHandler(BaseHandler):
    """Checks the admin key before anything else."""

    def prepare(self) -> None:
        admin_key = self.config.admin_key
        if not admin_key:
            raise GatewayError(404, "no such endpoint: %s %s" % (self.request.method, self.request.path),
                               code="not_found")
        scheme, _, token = (self.request.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise GatewayError(401, "the admin API needs 'Authorization: Bearer <admin_key>'",
                               code="invalid_admin_key",
                               headers={"WWW-Authenticate": 'Bearer realm="tornado_grok admin"'})
        if not hmac.compare_digest(token.strip().encode(), admin_key.encode()):
            raise GatewayError(403, "this key may not use the admin API", code="forbidden", kind="permission_error")


class UsageHandler(AdminHandler):
    """Totals per client key: requests, tokens, streams, abandoned streams, errors."""

    async def get(self) -> None:
        gateway = self.gateway
        shared = getattr(gateway.accounting, "shared", False)
        self.write_json({
            "scope": "shared" if shared else "process",
            "backend": self.config.ratelimit_backend,
            "keys": await gateway.accounting.snapshot(),
        })


default_handlers = [
    (r"/admin/usage", UsageHandler),
]
