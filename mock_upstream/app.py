"""make_app(options) -> tornado Application, and start() to serve it in-process on the current IOLoop."""

import itertools
from dataclasses import dataclass, field

import tornado.netutil
import tornado.web
from tornado.httpserver import HTTPServer

from mock_upstream import recordings, responses, scenarios
from mock_upstream.faults import FaultStore
from mock_upstream.handlers import admin, chat, images, models, rest
from mock_upstream.handlers import responses as responses_api
from mock_upstream.journal import Journal


@dataclass
class MockOptions:
    """Everything the mock can be told at start-up (the CLI flags, one for one)."""

    speed: float = 1.0  # delay multiplier: 1 real timing, 0 no delays
    require_key: str | None = None  # else any Bearer key is accepted
    recordings_dirs: list = field(default_factory=list)  # extra recordings, after the bundled ones
    scenarios_file: str | None = scenarios.BUILTIN_SCENARIOS
    journal_limit: int = 10000


class MockState:
    """What the handlers share: options, scenarios, journal, runtime faults. One per app."""

    def __init__(self, options: MockOptions):
        self.options = options
        self.registry = scenarios.Registry(recordings.load_all(options.recordings_dirs), options.scenarios_file)
        self.journal = Journal(options.journal_limit)
        self.faults = FaultStore()
        self.responses = responses.Store()  # for GET/DELETE /v1/responses/{id}
        self._images = itertools.count(1)

    def next_image(self) -> int:
        return next(self._images)


def make_app(options: MockOptions | None = None) -> tornado.web.Application:
    """The mock as a Tornado Application; `app.settings["mock"]` is its MockState."""
    state = MockState(options or MockOptions())
    routes = []
    for module in (chat, responses_api, images, models, rest, admin):
        routes += [(path, handler, {"mock": state}) for path, handler in module.default_handlers]
    return tornado.web.Application(routes, mock=state, compress_response=False,
                                   default_handler_class=admin.NotFoundHandler, default_handler_args={"mock": state})


def start(port: int = 0, host: str = "127.0.0.1", **options) -> tuple:
    """Listen on (host, port) on the current IOLoop; returns (HTTPServer, the bound port).

    `options` are MockOptions fields, e.g. start(0, speed=0, require_key="k").
    """
    app = make_app(MockOptions(**options))
    server = HTTPServer(app, idle_connection_timeout=3600)
    sockets = tornado.netutil.bind_sockets(port, host, backlog=4096)
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]
