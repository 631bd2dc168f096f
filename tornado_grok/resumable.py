"""Resumable streams (opt-in, `X-Resumable: true`), named in one place: the stored stream
(stored_stream.py, its sequence index in sequence_index.py), its readers (resumable_readers.py), the
relay that writes it (resumable_relay.py) and the memory store (streamstore_memory.py); this module
re-exports their names for the modules that import them from here (streamstore_redis.py).
"""

from .resumable_readers import KEEPALIVE, SequenceFilter, SequenceReader, StreamReader  # noqa: F401
from .resumable_relay import ResumableRelay, created_id, dialect_name, error_event, event_json  # noqa: F401
from .sequence_index import ALWAYS, event_sequence, first_sequence  # noqa: F401
from .stored_stream import FRAME, StoredStream, frame, gone, new_handle, not_resumable, token_digest  # noqa: F401
from .streamstore_memory import MemoryStreamStore  # noqa: F401
