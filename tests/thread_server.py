"""ThreadServer: a Tornado app on 127.0.0.1:<free port>, served by an event loop of its own in a daemon
thread, so a test's synchronous client can talk to it. The base of the suite's small test upstreams
(tests/sse_target.py, tests/cut_upstream.py)."""

import asyncio
import threading

import tornado.httpserver
import tornado.netutil


class ThreadServer:
    """start(app) binds a free loopback port (`self.port`), serves `app` and returns once it listens."""

    def start(self, app, backlog: int = 128, timeout: float = 10.0) -> None:
        self._sockets = tornado.netutil.bind_sockets(0, "127.0.0.1", backlog=backlog)
        self.port = self._sockets[0].getsockname()[1]
        self._app = app
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("%s did not start within %s s" % (type(self).__name__, timeout))

    def _serve(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.server = tornado.httpserver.HTTPServer(self._app)
        self.server.add_sockets(self._sockets)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()
        self.loop.close()

    def close(self, timeout: float = 10.0) -> None:
        def stop():
            self.server.stop()
            self.loop.stop()
        self.loop.call_soon_threadsafe(stop)
        self._thread.join(timeout)
