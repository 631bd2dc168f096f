"""A small standalone Tornado app speaking the xAI API, for offline, deterministic gateway tests.

It replays recorded SSE sequences (`recordings/*.jsonl`), generates synthetic streams, plays faults
and keeps a journal of every request it saw. See README.md beside this file.

    python -m mock_upstream --port 0            # standalone
    server, port = mock_upstream.start(port=0)  # in-process, on the current IOLoop
"""

from mock_upstream.app import MockOptions, make_app, start

__all__ = ["MockOptions", "make_app", "start"]
