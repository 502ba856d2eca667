"""Line budget (tinygrad's sz.py as a test): a file does one job and stays readable."""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "gpunet"
MAX_FILE = 400
# raise only in a commit that says what earned the lines
MAX_TOTAL = 12000


def code_lines(path: Path) -> int:
    """Lines holding code: no blanks, comments or docstrings."""
    src = path.read_text()
    skip: set[int] = set()
    prev = tokenize.INDENT
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.STRING and prev in (
            tokenize.INDENT,
            tokenize.NEWLINE,
            tokenize.DEDENT,
        ):
            skip.update(range(tok.start[0], tok.end[0] + 1))  # a docstring
        if tok.type not in (tokenize.NL, tokenize.COMMENT):
            prev = tok.type
    lines = 0
    for i, line in enumerate(src.splitlines(), start=1):
        text = line.strip()
        if text and not text.startswith("#") and i not in skip:
            lines += 1
    return lines


def test_line_budget():
    sizes = {p.relative_to(PKG).as_posix(): code_lines(p) for p in PKG.rglob("*.py")}
    too_big = {name: n for name, n in sizes.items() if n > MAX_FILE}
    assert not too_big, f"split these files: {too_big}"
    assert sum(sizes.values()) <= MAX_TOTAL, f"gpunet/ is {sum(sizes.values())} code lines"
