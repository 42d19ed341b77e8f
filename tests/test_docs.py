"""The docs: every relative link of README.md and docs/*.md resolves, and the README stays short.

A link is ``[text](target)`` or ``![alt](target)`` outside fenced code; ``target`` is taken
relative to the linking file. Links with a scheme (``https:``, ``mailto:``) are not followed.
``path#anchor`` into a Markdown file must name one of its headings, by GitHub's rule (lower
case, punctuation dropped, spaces to hyphens, ``-1``, ``-2`` ... for repeats).
"""

import pathlib
import re
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 160


FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(path: pathlib.Path):
    """``(line number, text)`` of the lines outside fenced code blocks."""
    in_fence = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            yield number, line


def links(path: pathlib.Path):
    """``(line number, target)`` of every link in the file."""
    for number, line in prose_lines(path):
        for match in INLINE_LINK.finditer(line):
            yield number, match.group(1)
        reference = REFERENCE_LINK.match(line)
        if reference:
            yield number, reference.group(1)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading's text."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: pathlib.Path) -> set:
    """The anchors of a Markdown file's headings (repeats numbered as GitHub does)."""
    seen, result = {}, set()
    for _, line in prose_lines(path):
        heading = HEADING.match(line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            result.add(base if count == 0 else f"{base}-{count}")
    return result


def link_problem(source: pathlib.Path, target: str):
    """Why ``target`` (linked from ``source``) does not resolve, or None."""
    path_part, _, anchor = urllib.parse.unquote(target).partition("#")
    resolved = (source.parent / path_part).resolve() if path_part else source
    if not resolved.exists():
        return "no such file"
    if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
        return f"no heading #{anchor} in {resolved.relative_to(ROOT)}"
    return None


def relative_links():
    for source in DOCS:
        for number, target in links(source):
            if not SCHEME.match(target):
                yield source, number, target


def test_every_relative_link_resolves():
    problems = [
        f"{source.relative_to(ROOT)}:{number}: ({target}): {problem}"
        for source, number, target in relative_links()
        for problem in [link_problem(source, target)]
        if problem
    ]
    assert not problems, "\n".join(problems)


def test_links_are_found():
    """The checker sees the links it should: the README links every document of docs/."""
    linked = {(ROOT / target).resolve() for _, target in links(ROOT / "README.md")}
    missing = [doc.name for doc in DOCS[1:] if doc.resolve() not in linked]
    assert not missing, f"README.md does not link {missing}"


def test_slug_follows_github():
    assert slug("Attention maps: `tools/visualize.py`") == "attention-maps-toolsvisualizepy"
    assert slug("2D -> 3D inflation") == "2d---3d-inflation"
    assert slug("Batches, processes and nodes") == "batches-processes-and-nodes"


def test_readme_is_short():
    lines = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"
