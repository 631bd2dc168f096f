"""CORS for browser front ends: which origins may call the gateway, and the headers that say so.

Off unless `cors_origins` lists origins. An allowed origin gets `Access-Control-Allow-Origin` (its
own value, with `Vary: Origin`) on every response, errors included, and
`Access-Control-Expose-Headers` for the headers a front end needs to read: the request id, the
rate-limit headers, Retry-After, X-Stream-Fallback, X-Stream-Id, X-Resume-Url, X-Resumable(-Reason) (a
stream refused as resumable past a budget) and x-should-retry. A preflight (OPTIONS with
Access-Control-Request-Method) is answered without a key.
"""

EXPOSED = ("X-Request-Id", "X-Stream-Fallback", "X-Stream-Id", "X-Resume-Url", "X-Resumable", "X-Resumable-Reason",
           "Retry-After", "x-should-retry",
           "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
           "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")


class CorsPolicy:
    """The origins, methods and headers a browser may use; built once from the config."""

    def __init__(self, origins, methods, headers, max_age: int):
        self.any_origin = "*" in origins
        self.origins = {o.rstrip("/").lower() for o in origins if o != "*"}
        self.methods = ", ".join(m.upper() for m in methods)
        self.reflect_headers = "*" in headers
        self.headers = ", ".join(h for h in headers if h != "*")
        self.max_age = str(int(max_age))
        self.exposed = ", ".join(EXPOSED)

    @classmethod
    def from_config(cls, config) -> "CorsPolicy | None":
        if not config.cors_origins:
            return None
        return cls(config.cors_origins, config.cors_allow_methods, config.cors_allow_headers, config.cors_max_age)

    def allows(self, origin: str | None) -> bool:
        return bool(origin) and (self.any_origin or origin.lower() in self.origins)

    def response_headers(self, origin: str | None) -> list:
        """The headers of any response to a request from `origin` (only Vary when it is not allowed)."""
        if not self.allows(origin):
            return [("Vary", "Origin")]
        return [("Vary", "Origin"), ("Access-Control-Allow-Origin", origin),
                ("Access-Control-Expose-Headers", self.exposed)]

    def preflight_headers(self, requested_headers: str | None) -> list:
        """The answer to an allowed origin's preflight, besides response_headers()."""
        allowed = self.headers
        if self.reflect_headers and requested_headers:
            # "*" reflects what the browser asks for: a wildcard Allow-Headers never covers Authorization.
            allowed = ", ".join(filter(None, (allowed, requested_headers)))
        out = [("Access-Control-Allow-Methods", self.methods), ("Access-Control-Max-Age", self.max_age)]
        if allowed:
            out.append(("Access-Control-Allow-Headers", allowed))
        return out
