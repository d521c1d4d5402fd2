"""The fast decoders of metric frames (``metric`` and ``metrics``) agree with the generic
validator on every input: what a fast path accepts, the generic path accepts as the same
message; everything else falls through to the generic path."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from nasflow.protocol import _codec
from nasflow.protocol._schema import BY_TYPE

values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(),
                   st.booleans(), st.none(), st.text(max_size=3))
field = st.one_of(values, st.integers(min_value=-2, max_value=2**64))


@given(seq=field, eid=st.one_of(st.text(max_size=300), values), tid=field, attempt=field,
       step=field, value=values, t=values, origin=st.one_of(st.none(), st.text(max_size=3)))
def test_fast_and_generic_paths_agree(seq: Any, eid: Any, tid: Any, attempt: Any, step: Any,
                                      value: Any, t: Any, origin: Any) -> None:
    obj = {"type": "metric", "seq": seq, "experiment_id": eid, "trial_id": tid,
           "attempt": attempt, "step": step, "value": value, "time": t, "origin": origin,
           "origin_seq": None}
    fast = _codec._fast_metric(obj)
    if fast is None:
        return  # the generic path decides
    seq_out, message = fast
    assert seq_out == seq and type(seq) is int and seq >= 1
    assert message == _codec._build(BY_TYPE["metric"], obj, seq)
    assert math.isfinite(message.value) and math.isfinite(message.time)


finite = st.floats(allow_nan=False, allow_infinity=False)
junk = st.one_of(values, st.floats(allow_nan=True, allow_infinity=True),
                 st.integers(min_value=-(2**65), max_value=2**65))


@st.composite
def batch_like(draw: st.DrawFn) -> dict[str, Any]:
    """A valid ``metrics`` object from a worker, then a few of its fields (or of the items
    of its columns) replaced by anything at all."""
    n = draw(st.integers(min_value=1, max_value=4))
    obj: dict[str, Any] = {
        "type": "metrics", "seq": draw(st.integers(min_value=1, max_value=2**63 - 1)),
        "experiment_id": draw(st.text(min_size=1, max_size=256)),
        "trial_id": draw(st.integers(min_value=0, max_value=2**63 - 1)),
        "attempt": draw(st.integers(min_value=0, max_value=2**63 - 1)),
        "steps": draw(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1),
                               min_size=n, max_size=n)),
        "values": draw(st.lists(finite, min_size=n, max_size=n)),
        "times": draw(st.lists(finite, min_size=n, max_size=n)),
        "origin": None, "origin_seq": None}
    for name in draw(st.lists(st.sampled_from([k for k in obj if k != "type"]), max_size=2)):
        column = obj[name]
        if type(column) is list and column and draw(st.booleans()):
            column[draw(st.integers(min_value=0, max_value=len(column) - 1))] = draw(junk)
        elif type(column) is list and draw(st.booleans()):
            obj[name] = column[:-1] if draw(st.booleans()) else [*column, draw(finite)]
        else:
            obj[name] = draw(st.one_of(junk, st.text(max_size=3)))
    return obj


@given(batch_like())
def test_fast_and_generic_paths_agree_on_batches(obj: dict[str, Any]) -> None:
    seq = obj["seq"]
    fast = _codec._fast_metrics(obj)
    if fast is None:
        return  # the generic path decides
    seq_out, message = fast
    assert seq_out == seq and type(seq) is int and seq >= 1
    assert message == _codec._build(BY_TYPE["metrics"], obj, seq)
    assert len(message.steps) == len(message.values) == len(message.times) >= 1
    assert all(math.isfinite(v) for v in (*message.values, *message.times))


def test_the_fast_batch_path_takes_what_workers_send() -> None:
    obj = {"type": "metrics", "seq": 3, "experiment_id": "e", "trial_id": 1, "attempt": 0,
           "steps": [1, 2], "values": [0.5, 0.25], "times": [1.5, 2.5], "origin": None,
           "origin_seq": None}
    fast = _codec._fast_metrics(obj)
    assert fast is not None and fast == (3, _codec._build(BY_TYPE["metrics"], obj, 3))
