"""The sequence index of a stored Responses stream: an event's `sequence_number` by a byte scan
(event_sequence, never a JSON parse) and the index entry of a stored block (first_sequence), which
StoredStream.seek bisects and SequenceFilter compares against.
"""

import re

_SEQUENCE = re.compile(rb'"sequence_number":\s*(\d{1,18})')
_ERROR_EVENT = b"event: error\n"
ALWAYS = 1 << 62  # an event the sequence filter always passes (an error event, one with no number)


def event_sequence(data: bytes, start: int, end: int) -> int:
    """The sequence_number of the event data[start:end] by a byte scan (no JSON parse: the key's
    quotes are escaped inside any string, so only a member matches); ALWAYS for an error event or
    an event without one."""
    if data.startswith(_ERROR_EVENT, start):
        return ALWAYS
    found = _SEQUENCE.search(data, start, end)
    return int(found.group(1)) if found is not None else ALWAYS


def first_sequence(data: bytes, seqs: list) -> int:
    """The index entry of a stored block: its first event's sequence_number, kept non-decreasing."""
    number = event_sequence(data, 0, data.find(b"\n\n"))
    return number if not seqs or number >= seqs[-1] else seqs[-1]
