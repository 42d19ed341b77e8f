"""Benchmarks run by ``tools/benchmark.py``, one module per subcommand.

Each benchmark module defines ``register(subparsers)``, which adds its subparser
with its options and ``set_defaults(func=main)``; ``main(args)`` runs it.
:mod:`cgnl_video.benchmarks.timing` measures; the helpers below write the Markdown
report: a benchmark owns one marked section of a file (e.g. ``docs/PERFORMANCE.md``)
and rewrites only that section, so hand-written text around it survives re-runs.
"""

import os
import stat
import tempfile
from pathlib import Path
from typing import Sequence


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table of ``rows`` (cells formatted with ``str``) under ``headers``."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to a temporary file next to ``path``, then renames it over ``path``.

    The file keeps its permissions (0644 when new).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    prefix = f".{path.name}."
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=prefix, delete=False) as tmp:
        tmp.write(text)
        tmp.flush()
        os.fsync(tmp.fileno())
        os.fchmod(tmp.fileno(), mode)
    os.replace(tmp.name, path)


def update_section(path: Path, name: str, body: str) -> None:
    """Puts ``body`` between the ``name`` section's markers in ``path``, atomically.

    The section replaces its previous version; a file without it gets it appended;
    a missing file is created.
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    section = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = f"{text.rstrip()}\n\n{section}\n" if text.strip() else f"{section}\n"
    write_atomic(path, text)
