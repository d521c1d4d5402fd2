"""docs/protocol.md: every JSON example is a valid frame, every message is documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nasflow.protocol import decode
from nasflow.protocol._schema import BY_TYPE

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
BLOCKS = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


@pytest.mark.parametrize("block", BLOCKS, ids=[b[:40] for b in BLOCKS])
def test_every_json_example_decodes(block: str) -> None:
    assert decode(block)


def test_every_message_type_has_an_example() -> None:
    shown = {message.TYPE for block in BLOCKS for _, message in decode(block)}
    assert shown == set(BY_TYPE)
    assert any('"type": "batch"' in block for block in BLOCKS)
