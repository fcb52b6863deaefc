"""The README and the pages under docs/ point only at things that exist.

Every relative Markdown link must name an existing file, and a link with a
#fragment must name a heading of its target (GitHub's anchors: lower case,
punctuation dropped, spaces as hyphens).  Every docs/*.md named in the
README, the docs or the scripts must exist, and the README must link every
docs page: it is the front page, a page it does not name is not found.  docs/layout.md must name
every file of the folders it maps.
"""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
LINK_RE = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOCS_NAME_RE = re.compile(r"\bdocs/[\w.-]+\.md\b")
FENCE_RE = re.compile(r"^```.*?^```", re.M | re.S)


def read(path):
    with open(os.path.join(ROOT, path)) as handle:
        return handle.read()


def anchor(heading):
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    text = FENCE_RE.sub("", read(path))
    return {anchor(m.group(1)) for m in re.finditer(r"^#{1,6} +(.+?)\s*$", text, re.M)}


def links(path):
    return LINK_RE.findall(FENCE_RE.sub("", read(path)))


def test_the_pages_are_found():
    assert "README.md" in PAGES and "docs/variables.md" in PAGES and len(PAGES) >= 12, PAGES


def test_anchor_rules():
    assert anchor("Safe kernel switch (boot once, then default)") == "safe-kernel-switch-boot-once-then-default"
    assert anchor("Secure Boot: signing the module") == "secure-boot-signing-the-module"
    assert anchor("Counters: `/proc/net/toa_stats`") == "counters-procnettoa_stats"


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    problems = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, fragment = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(os.path.join(ROOT, resolved)):
            problems.append("%s: no such file" % target)
        elif fragment and resolved.endswith(".md") and fragment not in anchors(resolved):
            problems.append("%s: %s has no heading with that anchor" % (target, resolved))
    assert problems == [], "%s:\n%s" % (page, "\n".join(problems))


def test_every_docs_page_named_anywhere_exists():
    sources = PAGES + sorted(os.path.relpath(p, ROOT) for pattern in ("scripts/*", "tests/*/*.py", "tests/kmod/*",
                                                                      "bench/*.py", "roles/toa/*/*.yml")
                             for p in glob.glob(os.path.join(ROOT, pattern)) if os.path.isfile(p))
    missing = sorted({"%s names %s" % (src, name) for src in sources for name in DOCS_NAME_RE.findall(read(src))
                      if not os.path.exists(os.path.join(ROOT, name))})
    assert missing == []


def test_the_readme_links_every_docs_page():
    linked = {os.path.normpath(target.partition("#")[0]) for target in links("README.md")}
    assert sorted(set(PAGES[1:]) - linked) == []


def test_the_readme_stays_a_front_page():
    readme = read("README.md")
    assert len(readme.splitlines()) <= 200
    # The two newcomer commands come first, as .ci/run and the demo promise.
    commands = re.search(r"```sh\n(.*?)```", readme, re.S).group(1).splitlines()
    assert [line.split()[0] for line in commands] == ["scripts/demo.sh", "scripts/test.sh"]
    assert readme.index("scripts/demo.sh") < readme.index("\n## ")


# The directories whose every file docs/layout.md names (by path or by name
# within its row), so a file added, moved or renamed without redrawing the
# layout fails here.
LAYOUT_DIRS = ["library", "module_utils", "filter_plugins", "scripts", "tools", "testbed", "playbooks",
               "playbooks/tasks", "bench", "tests/host", "tests/kmod", "tests/bpf", "tests/awx",
               "inventories/local", "docs"]


def test_layout_names_every_file():
    layout = read(os.path.join("docs", "layout.md"))
    missing = []
    for folder in LAYOUT_DIRS:
        for path in sorted(glob.glob(os.path.join(ROOT, folder, "*"))):
            name = os.path.basename(path)
            if not os.path.isfile(path) or name.startswith((".", "_")) or name.endswith(".pyc"):
                continue
            if folder == "docs" and name == "layout.md":
                continue
            if name not in layout:
                missing.append(os.path.join(folder, name))
    assert missing == [], "docs/layout.md does not name: %s" % ", ".join(missing)
