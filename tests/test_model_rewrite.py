"""The aliased model name is put back into the upstream's bytes, in the "model" member only."""

from tornado_grok.relay import _rewrite, rewrite_pairs

PAIRS = rewrite_pairs("grok-4.20-non-reasoning", "grok-4-1-fast-non-reasoning")


def test_only_the_model_member_changes():
    event = (b'{"model":"grok-4.20-non-reasoning","choices":[{"delta":'
             b'{"content":"grok-4.20-non-reasoning"}}]}')
    assert _rewrite(event, PAIRS) == (b'{"model":"grok-4-1-fast-non-reasoning","choices":[{"delta":'
                                      b'{"content":"grok-4.20-non-reasoning"}}]}')


def test_spaced_json_and_whole_blocks():
    assert _rewrite(b'{"model": "grok-4.20-non-reasoning", "choices": []}', PAIRS) == \
        b'{"model": "grok-4-1-fast-non-reasoning", "choices": []}'
    block = b'data: {"model":"grok-4.20-non-reasoning"}\n\ndata: {"model":"grok-4.20-non-reasoning"}\n\n'
    assert _rewrite(block, PAIRS).count(b'"model":"grok-4-1-fast-non-reasoning"') == 2


def test_other_models_untouched():
    event = b'{"model":"grok-4.3","choices":[]}'
    assert _rewrite(event, PAIRS) is event


def test_names_with_a_slash_or_non_ascii_characters():
    """The upstream's name is found as upstreams write it (a "/" unescaped), and the client's is put
    back as the client wrote it: UTF-8, no \\/ and no \\u escapes."""
    pairs = rewrite_pairs("xai/grok-4", "team/grök-mini")
    event = b'{"model":"xai/grok-4","choices":[]}'
    assert _rewrite(event, pairs) == '{"model":"team/grök-mini","choices":[]}'.encode()
