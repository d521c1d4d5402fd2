"""The fast decoder of metric frames agrees with the generic validator on every input."""

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
