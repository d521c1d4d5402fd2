"""Every fenced ``python`` and ``bash`` block of README.md and docs/*.md runs, and prints
what the page shows next to it, so the docs cannot drift from the code.

A page's Python blocks run in order in one namespace (as a reader pastes them into one
session), in a fresh process, in a temporary folder; its shell blocks run in the clone
(where ``.venv`` is). Every page gets a fresh ``NASFLOW_HOME`` in a temporary folder. A block with
top-level ``await`` runs on one event loop shared by the page (as in a notebook). Markers,
an HTML comment on the line just above the fence (invisible on GitHub):

- ``<!-- no-run -->``: a fragment or something that cannot run here (a GPU, a cluster,
  an endless service, the test suite itself); the reason follows, after a colon.
- ``<!-- slow -->``: runs, but takes long; only with ``NASFLOW_DOCS_SLOW=1``.

Shown output: a line ``# -> TEXT`` (alone, or after code) says the block prints a line
matching TEXT, where ``...`` stands for anything; the expected lines must appear in order.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARK = re.compile(r"^<!--\s*(no-run|slow)\b[^>]*-->\s*$")
_EXPECT = re.compile(r"#\s*->\s?(.*)$")
_RUNNABLE = {"python": "python", "py": "python", "bash": "bash", "sh": "bash"}
SLOW = os.environ.get("NASFLOW_DOCS_SLOW") == "1"


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: str
    line: int
    """The line of its opening fence (1-based)."""
    lang: str
    code: str
    mark: str | None
    """``"no-run"``, ``"slow"`` or ``None``."""

    @property
    def expected(self) -> list[str]:
        """The ``# -> TEXT`` lines it shows."""
        found = []
        for line in self.code.splitlines():
            m = _EXPECT.search(line)
            if m:
                found.append(m.group(1).strip())
        return found


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` in a runnable language, with their markers."""
    out: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mark = _MARK.match(lines[k]) if k >= 0 else None
        if lang in _RUNNABLE:
            out.append(Block(page.name, start + 1, _RUNNABLE[lang],
                             "\n".join(lines[start + 1: j]) + "\n",
                             mark.group(1) if mark else None))
        i = j + 1
    return out


# The runner: exec each block in one namespace; blocks with top-level await run on one
# asyncio.Runner (one loop for the page); each block's stdout is captured and returned.
_RUNNER = textwrap.dedent('''
    import ast, asyncio, contextlib, io, json, sys, traceback
    blocks = json.loads(sys.stdin.read())
    ns = {"__name__": "__main__"}
    results = []
    with asyncio.Runner() as runner:
        for b in blocks:
            buf = io.StringIO()
            try:
                code = compile(b["code"], f"{b['page']}:{b['line']}", "exec",
                               flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                with contextlib.redirect_stdout(buf):
                    result = eval(code, ns)
                    if asyncio.iscoroutine(result):
                        runner.run(result)
                error = None
            except BaseException:
                error = traceback.format_exc()
            results.append({"out": buf.getvalue(), "error": error})
            if error:
                break
    print("@@RESULTS@@" + json.dumps(results))
''')


def _matches(expected: list[str], output: str) -> str | None:
    """``None`` when every expected line appears, in order; else the first missing one."""
    lines = output.splitlines()
    pos = 0
    for want in expected:
        pattern = re.compile(".*?".join(re.escape(part) for part in want.split("...")))
        while pos < len(lines) and not pattern.fullmatch(lines[pos].strip()):
            pos += 1
        if pos == len(lines):
            return want
        pos += 1
    return None


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "NASFLOW_HOME": str(tmp_path / "home"), "PYTHONHASHSEED": "0"}
    # the CLI as a reader has it, from the virtualenv (README: .venv/bin, or activated)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "200"
    return env


def _runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.mark is None or (b.mark == "slow" and SLOW)]


def _run_python(page: Path, todo: list[Block], tmp_path: Path) -> None:
    payload = json.dumps([{"page": b.page, "line": b.line, "code": b.code} for b in todo])
    proc = subprocess.run([sys.executable, "-c", _RUNNER], input=payload, text=True,
                          capture_output=True, cwd=tmp_path, env=_env(tmp_path),
                          timeout=900)
    assert "@@RESULTS@@" in proc.stdout, f"{page.name}: the runner died\n{proc.stderr}"
    results = json.loads(proc.stdout.split("@@RESULTS@@", 1)[1])
    for block, result in zip(todo, results, strict=False):
        where = f"{page.name}:{block.line}"
        assert result["error"] is None, (
            f"the block at {where} raised (mark it <!-- no-run --> if it is a fragment):\n"
            f"{block.code}\n{result['error']}")
        missing = _matches(block.expected, result["out"])
        assert missing is None, (
            f"the block at {where} does not print {missing!r}; it printed:\n{result['out']}")
    assert len(results) == len(todo)


def _run_bash(page: Path, todo: list[Block], tmp_path: Path) -> None:
    for block in todo:
        # in the clone, as the README's reader is (`source .venv/bin/activate`)
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], text=True,
                              capture_output=True, cwd=ROOT, env=_env(tmp_path),
                              timeout=600)
        where = f"{page.name}:{block.line}"
        assert proc.returncode == 0, (
            f"the block at {where} exited {proc.returncode}:\n{block.code}\n{proc.stdout}"
            f"\n{proc.stderr}")
        missing = _matches(block.expected, proc.stdout)
        assert missing is None, (
            f"the block at {where} does not print {missing!r}; it printed:\n{proc.stdout}")


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_page_runs_as_shown(page: Path, tmp_path: Path) -> None:
    todo = _runnable(page)
    if not todo:
        pytest.skip(f"{page.name} has no block to run")
    python = [b for b in todo if b.lang == "python"]
    if python:
        _run_python(page, python, tmp_path)
    _run_bash(page, [b for b in todo if b.lang == "bash"], tmp_path)


# --- the checker itself -----------------------------------------------------------------

def test_blocks_are_found_with_their_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nprint(1)  # -> 1\n```\n\n<!-- no-run: a fragment -->\n"
        "```python\nmodel.fit()\n```\n<!-- slow -->\n\n```bash\necho hi\n```\n"
        "```\nnot code\n```\n")
    found = blocks(page)
    assert [(b.line, b.lang, b.mark) for b in found] == [
        (3, "python", None), (8, "python", "no-run"), (13, "bash", "slow")]
    assert found[0].expected == ["1"]


def test_shown_output_is_matched_in_order_with_ellipses() -> None:
    out = "searching\n[{'width': 32, 'op': 'conv3'}, {'width': 16}]\ndone 3 trials\n"
    assert _matches(["[{'width': ..., 'op': ...}, ...]", "done ... trials"], out) is None
    assert _matches(["done ... trials", "searching"], out) == "searching"
    assert _matches(["nothing like it"], out) == "nothing like it"


def test_every_marked_block_says_why() -> None:
    """A ``no-run`` marker carries its reason, so a reader (and a reviewer) knows why the
    block is not checked."""
    bare = []
    for page in PAGES:
        for i, line in enumerate(page.read_text().splitlines(), 1):
            if re.match(r"^<!--\s*no-run\s*-->", line):
                bare.append(f"{page.name}:{i}")
    assert not bare, f"no-run markers without a reason: {bare}"
