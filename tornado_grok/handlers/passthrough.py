"""The rows of routes.py, relayed as they are: one handler for every endpoint of the table."""

import ujson

from .. import routes
from ..errors import GatewayError
from .base import JSON_CONTENT_TYPE, APIHandler

# How long an owned object's usage is remembered as charged: xAI keeps a deferred completion's result
# for 24 hours; twice that, so that no fetch of it can be charged again.
CHARGED_FOR = 48 * 3600


class PassthroughHandler(APIHandler):
    """Relays one row of the route table: auth -> limits -> body check -> upstream -> client.

    Model aliases apply to a body's "model" and to {model} ids, and the client sees the name it used.
    Any 2xx status of the upstream reaches the client with the upstream's body (a deferred
    completion that is not ready is a 202).
    """

    def initialize(self, gateway, rows: dict) -> None:
        super().initialize(gateway)
        self.rows = rows

    def allowed_methods(self) -> list:
        return sorted(self.rows)

    async def get(self, **ids) -> None:
        await self.relay_row(ids)

    async def post(self, **ids) -> None:
        await self.relay_row(ids)

    async def delete(self, **ids) -> None:
        await self.relay_row(ids)

    async def relay_row(self, ids: dict) -> None:
        route = self.rows.get(self.request.method)
        if route is None:
            raise self.method_not_allowed()
        self.endpoint = "/api/v1" + route.path  # the metrics label: the row's template, never an id
        body = None
        if route.body is not None:
            body = await self.begin()
            route.body(body)
        else:
            await self.admit()
        aliases = self.config.aliases
        asked = sent = None
        if "model" in ids:
            asked = routes.check_id("model", ids["model"])
            sent = ids["model"] = aliases.get(asked, asked)
        if body is not None and isinstance(body.get("model"), str):
            asked = body["model"]
            sent = body["model"] = aliases.get(asked, asked)
        if asked is not None:
            self.log_fields["model"] = asked
        owned = [name for name in ids if name in routes.OWNED]
        for name in owned:  # another key's id, or one never issued: 404, and the upstream never sees it
            kind, what = routes.OWNED[name]
            ids[name] = self.locate(kind, ids[name], what, name)  # and the upstream it lives on
        response = await self.fetch_response(route.method, route.upstream_path(ids), body)
        raw = response.body or b""
        # The usage of an owned object's result (a finished deferred completion) is charged once, the
        # first time it is fetched, however often its owner fetches it again.
        # (Named by its upstream too when there are several: two upstreams may use the same id.)
        where = getattr(getattr(self, "pinned", None), "id_name", "")
        charge = not owned or b'"usage"' not in raw or await self.gateway.accounting.claim(
            "%s:%s%s" % (routes.OWNED[owned[0]][0], where + ":" if where else "", ids[owned[0]]), CHARGED_FOR)
        self.answer(response.code, raw, asked, sent, charge)

    def answer(self, status: int, raw: bytes, asked: str | None, sent: str | None, charge: bool = True) -> None:
        """The upstream's body as it is, unless a model name must be put back; usage accounted."""
        result = None
        if raw and (b'"usage"' in raw or asked != sent):
            try:
                result = ujson.loads(raw)
            except ValueError:
                raise GatewayError(502, "the upstream answered with a body that is not JSON",
                                   code="upstream_bad_json")
        usage = result.get("usage") if isinstance(result, dict) and charge else None
        self.account(usage if isinstance(usage, dict) else None, "completed")
        if isinstance(result, dict) and asked != sent:
            for field in ("model", "id"):
                if result.get(field) == sent:
                    result[field] = asked
            raw = None
        self.set_status(status)
        if raw == b"":
            self.finish()
        elif raw is None:
            self.write_json(result, status)
        else:
            self.set_header("Content-Type", JSON_CONTENT_TYPE)
            self.finish(raw)


def _handlers() -> list:
    table = routes.by_path()
    for rows in table.values():
        for route in rows.values():
            if route.stream:
                # This handler relays whole answers; a streaming row needs the relay and its dialect.
                raise ValueError("%s %s streams: PassthroughHandler relays whole answers only" % (
                    route.method, route.path))
    return [(pattern, PassthroughHandler, {"rows": rows}) for pattern, rows in table.items()]


default_handlers = _handlers()
