"""The README's links and the repository paths it names all resolve inside the repository.

A reader follows `docs/method.md#...`, `benchmarks/results/...` or `search_spaces/...` from the README;
each must exist in a fresh clone. Output paths the tools create (`WORKDIR/...`, `runs/...`) are not
checked: only paths under the repository's own top-level folders, and Markdown links, are.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# top-level entries of the repository: a backticked path starting with one of these names a file here
REPO_ROOTS = (".ci/", "benchmarks/", "cluster/", "data_prep/", "docs/", "platform/", "search_spaces/", "tests/",
              "trainables/",
              "LICENSE", "pyproject.toml")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    text = FENCE.sub("", markdown.read_text(encoding="utf-8"))
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+)$", text, re.M)}


def expand_braces(path: str) -> list[str]:
    """``a.{md,csv}`` -> ``a.md``, ``a.csv`` (one level, as the README writes them)."""
    match = re.search(r"\{([^{}]+)\}", path)
    if not match:
        return [path]
    return [path[:match.start()] + part + path[match.end():] for part in match.group(1).split(",")]


def repo_paths(text: str) -> set[str]:
    """Words in code spans and fenced blocks that name something under the repository's folders."""
    chunks = CODE_SPAN.findall(FENCE.sub("", text)) + FENCE.findall(text)
    words = {w.strip(".,;:()[]'\"") for chunk in chunks for w in chunk.split()}
    return {w for w in words if w.startswith(REPO_ROOTS)}


def exists(path: str) -> bool:
    return any(glob.glob(str(REPO / p)) for p in expand_braces(path))


def test_github_anchor_matches_githubs_rule():
    assert github_anchor("8.1 A prototype, before the platform") == "81-a-prototype-before-the-platform"
    assert github_anchor("1. The backbone: a 3D pix2pix from (T2, FLAIR) to T1") == \
        "1-the-backbone-a-3d-pix2pix-from-t2-flair-to-t1"
    assert github_anchor("Set-up: two commands") == "set-up-two-commands"


def test_readme_links_resolve_in_the_repository():
    text = README.read_text(encoding="utf-8")
    links = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    assert "docs/method.md" in {t.split("#")[0] for t in links}
    broken = []
    for target in links:
        file, _, anchor = target.partition("#")
        path = REPO / file if file else README
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, broken


def test_every_repository_path_the_readme_names_exists():
    names = repo_paths(README.read_text(encoding="utf-8"))
    assert {"search_spaces/adaptation.yaml", "cluster/requirements-cluster.txt", "pyproject.toml"} <= names
    missing = sorted(n for n in names if not exists(n))
    assert not missing, missing


def test_the_readme_no_longer_cites_a_file_outside_the_repository():
    text = README.read_text(encoding="utf-8")
    assert "METHOD.md" not in text and "../shared" not in text


@pytest.mark.parametrize("doc", sorted((REPO / "docs").glob("*.md")), ids=lambda p: p.name)
def test_docs_links_resolve(doc):
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        assert path.exists(), target
        assert not anchor or anchor in anchors(path), target
