"""The documentation holds together: README.md is the front door, docs/ holds the chapters.

Every relative link in README.md and docs/*.md must lead to a file that exists, and every
#anchor to a heading of the target file, as GitHub makes anchors from headings. README.md
stays short and names every numbered step; each chapter's contents list names its sections.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import ROOT

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def outside_fences(text: str) -> list[str]:
    """The lines of a markdown text that are not inside fenced code blocks (those become '')."""
    lines, fence = [], None
    for line in text.split("\n"):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)[0] * 3
            lines.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            lines.append("")
        else:
            lines.append(line)
    return lines


def heading_text(raw: str) -> str:
    """A heading as GitHub renders its text: inline code reduced to its content, links to their text."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), raw)
    text = LINK.sub(lambda m: m.group(1), text)
    return text


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: lowercase, punctuation gone, spaces become hyphens.

    Kept: letters and digits (Unicode ones too), underscores, hyphens and spaces; everything else
    (.:,'`()#§‖→ and the like) is removed. Hyphens are not collapsed: "a -- b" gives "a----b".
    """
    text = heading_text(heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor GitHub makes for the headings of a markdown text; a repeated slug gets -1, -2, ..."""
    seen: dict[str, int] = {}
    found = set()
    for line in outside_fences(text):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> list[str]:
    """The targets of the inline links of a markdown text, outside code blocks and code spans."""
    targets = []
    for line in outside_fences(text):
        # A code span's content is no link, but a link's text may hold a code span: blank the content only.
        line = CODE_SPAN.sub(lambda m: m.group(1) + "x" * len(m.group(2)) + m.group(1), line)
        targets += [m.group(2) for m in LINK.finditer(line)]
    return targets


def dead_links(path: Path, text: str | None = None) -> list[str]:
    """Every relative link of the markdown file at path that leads nowhere, as 'file: target (why)'."""
    text = path.read_text(encoding="utf-8") if text is None else text
    problems = []
    for target in links(text):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{path.name}: {target} (no such file)")
            continue
        if anchor and dest.suffix == ".md":
            if anchor not in anchors(dest.read_text(encoding="utf-8") if dest != path else text):
                problems.append(f"{path.name}: {target} (no heading makes #{anchor} in {dest.name})")
    return problems


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize(("heading", "expected"), [
    ("renew.sh: the certificate keeps itself alive", "renewsh-the-certificate-keeps-itself-alive"),
    ("ES256 signatures: 64 bytes, R‖S", "es256-signatures-64-bytes-rs"),
    ("What `-v` shows, and what it never shows", "what--v-shows-and-what-it-never-shows"),
    ("`--preferred-chain` in step 08", "--preferred-chain-in-step-08"),
    ("Profiles and `--replaces` in step 05", "profiles-and---replaces-in-step-05"),
    ("09 Export PKCS#12 for Windows and IIS", "09-export-pkcs12-for-windows-and-iis"),
    ("`dns-records.json` and `--cleanup`", "dns-recordsjson-and---cleanup"),
    ("IIS: `install-iis.ps1`", "iis-install-iisps1"),
    ("Against Let's Encrypt for real", "against-lets-encrypt-for-real"),
    ("POST-as-GET, plain GET, and why `jwk` only once", "post-as-get-plain-get-and-why-jwk-only-once"),
    ("alidns: Alibaba Cloud DNS", "alidns-alibaba-cloud-dns"),
    ("Bücher und [Links](https://example.com)", "bücher-und-links"),
    ("snake_case stays", "snake_case-stays"),
])
def test_slug_follows_githubs_rules(heading, expected):
    assert slug(heading) == expected


def test_repeated_headings_get_numbered_and_fenced_ones_do_not_count():
    text = "# Title\n## Notes\n```sh\n# Notes\n## not a heading\n```\n## Notes\n### Notes ###\n"
    assert anchors(text) == {"title", "notes", "notes-1", "notes-2"}


def test_the_checker_reports_dead_links_and_anchors(tmp_path):
    """The checker must be able to fail: a missing file, a missing anchor here and there are each reported."""
    (tmp_path / "other.md").write_text("# Other\n## Real section\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("# Page\n## Here\n"
                    "[ok](other.md#real-section) [ok](#here) [ok](https://example.com/x#y)\n"
                    "[gone](missing.md) [bad anchor](other.md#no-such-section) [bad here](#nowhere)\n"
                    "`[in code](missing-too.md)`\n```\n[in a block](missing-three.md)\n```\n", encoding="utf-8")
    assert dead_links(page) == [
        "page.md: missing.md (no such file)",
        "page.md: other.md#no-such-section (no heading makes #no-such-section in other.md)",
        "page.md: #nowhere (no heading makes #nowhere in page.md)",
    ]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(path):
    assert dead_links(path) == []


def test_readme_is_the_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300, "README.md is the front door: keep it under 300 lines, chapters go to docs/"
    for chapter in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{chapter.name}" in readme, f"README.md does not lead to docs/{chapter.name}"


def test_readme_maps_every_numbered_step():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    steps = sorted(p.name for p in ROOT.glob("[0-9][0-9]_*.py"))
    assert len(steps) >= 10
    assert [step for step in steps if step not in readme] == []


@pytest.mark.parametrize("path", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_each_chapter_lists_its_sections_first(path):
    """A chapter starts with a contents list that links every ## section of it."""
    text = path.read_text(encoding="utf-8")
    lines = outside_fences(text)
    first_section = next(i for i, line in enumerate(lines) if line.startswith("## "))
    listed = {target[1:] for target in links("\n".join(lines[:first_section])) if target.startswith("#")}
    sections = {slug(line[3:]) for line in lines if line.startswith("## ")}
    assert sections - listed == set(), f"{path.name}: sections missing from its contents list"
