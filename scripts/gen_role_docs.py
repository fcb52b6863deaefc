#!/usr/bin/env python3
"""Render the role-variables table of docs/variables.md from roles/toa/meta/argument_specs.yml.

The table lives between the BEGIN/END ROLE VARIABLES markers in docs/variables.md
and nothing outside them is touched.  The README keeps a short hand-written
list of the most used variables between the BEGIN/END MOST USED VARIABLES
markers; its names and defaults are checked against the same specs (nothing
there is written).  `--check` writes nothing and exits 1 when the page differs
from what would be generated or the README's list names a variable or a default
the specs do not have (the test suite runs it), so the documentation cannot
drift from what the role validates.
"""

import argparse
import difflib
import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = os.path.join(ROOT, "roles", "toa", "meta", "argument_specs.yml")
PAGE = os.path.join(ROOT, "docs", "variables.md")
README = os.path.join(ROOT, "README.md")
BEGIN_RE = re.compile(r"^<!-- BEGIN ROLE VARIABLES\b.*-->\s*$", re.M)
END_RE = re.compile(r"^<!-- END ROLE VARIABLES -->\s*$", re.M)
PICKS_BEGIN_RE = re.compile(r"^<!-- BEGIN MOST USED VARIABLES\b.*-->\s*$", re.M)
PICKS_END_RE = re.compile(r"^<!-- END MOST USED VARIABLES -->\s*$", re.M)
# A row of the README's list: | `name` | default | what |
PICK_ROW_RE = re.compile(r"^\| `(\w+)` \| (.*?) \| .* \|\s*$")
ENTRY_POINT = "main"


def inline_markup(text):
    """Ansible doc markup (C(), I(), V(), O()) to Markdown; pipes escaped for tables."""
    text = " ".join(str(text).split())
    text = re.sub(r"\b[CVO]\(([^)]*)\)", r"`\1`", text)
    text = re.sub(r"\bI\(([^)]*)\)", r"*\1*", text)
    return text.replace("|", "\\|")


def show_value(value):
    """A default or choice as inline code, in YAML flow style users can paste."""
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return "`%s`" % str(value).lower()
    if isinstance(value, str):
        return "`%s`" % value if value else '`""`'
    if isinstance(value, (dict, list)):
        return "`%s`" % json.dumps(value, sort_keys=False).replace("|", "\\|")
    return "`%s`" % value


def option_type(spec):
    kind = spec.get("type", "str")
    if kind == "list" and spec.get("elements"):
        kind = "list of %s" % spec["elements"]
    return kind


def description(spec):
    text = spec.get("description", "")
    if isinstance(text, list):
        text = " ".join(str(part) for part in text)
    return inline_markup(text)


def render(specs_path=SPECS):
    with open(specs_path) as handle:
        data = yaml.safe_load(handle)
    entry = data["argument_specs"][ENTRY_POINT]
    lines = [
        "",
        "Generated from `roles/toa/meta/argument_specs.yml` (entry point `%s`), which the "
        "role also uses to validate its inputs. Defaults live in "
        "`roles/toa/defaults/main.yml`." % ENTRY_POINT,
        "",
        "| Variable | Type | Default | Choices | Description |",
        "|---|---|---|---|---|",
    ]
    for name, spec in entry.get("options", {}).items():
        if spec.get("required"):
            default = "*required*"
        else:
            default = show_value(spec.get("default"))
        choices = ", ".join(show_value(choice) for choice in spec.get("choices", []))
        lines.append("| `%s` | %s | %s | %s | %s |" % (
            name, option_type(spec), default, choices, description(spec)))
    lines.append("")
    # Further entry points (include_role tasks_from) share their options with `main`.
    for point, spec in data["argument_specs"].items():
        if point == ENTRY_POINT:
            continue
        names = ", ".join("`%s`" % name for name in spec.get("options", {}))
        lines.append("Entry point `%s` (`tasks_from: %s`): %s Options, as above: %s." % (
            point, point, inline_markup(spec.get("short_description", "")).rstrip(".") + ".", names))
        lines.append("")
    return "\n".join(lines) + "\n"


def splice(page_text, block, name="docs/variables.md"):
    begin = BEGIN_RE.search(page_text)
    end = END_RE.search(page_text)
    if not begin or not end or end.start() < begin.end():
        raise SystemExit("%s lacks the BEGIN/END ROLE VARIABLES markers (in that order)" % name)
    return page_text[:begin.end()] + "\n" + block.lstrip("\n") + page_text[end.start():]


def check_picks(readme_text, specs_path=SPECS):
    """Problems with the README's hand-picked variables: unknown names, wrong defaults."""
    begin = PICKS_BEGIN_RE.search(readme_text)
    end = PICKS_END_RE.search(readme_text)
    if not begin or not end or end.start() < begin.end():
        return ["README.md lacks the BEGIN/END MOST USED VARIABLES markers (in that order)"]
    with open(specs_path) as handle:
        options = yaml.safe_load(handle)["argument_specs"][ENTRY_POINT].get("options", {})
    problems = []
    rows = 0
    for line in readme_text[begin.end():end.start()].splitlines():
        match = PICK_ROW_RE.match(line)
        if not match:
            continue
        rows += 1
        name, shown = match.group(1), match.group(2).strip()
        if name not in options:
            problems.append("README.md names `%s`, which the role does not have" % name)
            continue
        spec = options[name]
        wanted = "*required*" if spec.get("required") else show_value(spec.get("default"))
        if shown != wanted:
            problems.append("README.md shows %s as the default of `%s`; the role's is %s"
                            % (shown, name, wanted))
    if not rows:
        problems.append("README.md's most used variables list has no rows")
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when docs/variables.md is out of date or the README's "
                             "list of most used variables is wrong; write nothing")
    parser.add_argument("--page", default=PAGE, help="page to update (default: %(default)s)")
    parser.add_argument("--readme", default=README,
                        help="README whose most used variables are checked (default: %(default)s)")
    parser.add_argument("--specs", default=SPECS, help="argument specs (default: %(default)s)")
    args = parser.parse_args(argv)

    name = os.path.relpath(args.page, ROOT)
    with open(args.readme) as handle:
        problems = check_picks(handle.read(), args.specs)
    for problem in problems:
        sys.stderr.write(problem + "\n")
    with open(args.page) as handle:
        current = handle.read()
    wanted = splice(current, render(args.specs), name)
    if current == wanted:
        return 1 if problems else 0
    if args.check:
        sys.stderr.write("%s role variables are out of date; run scripts/gen_role_docs.py\n" % name)
        sys.stderr.writelines(difflib.unified_diff(
            current.splitlines(True), wanted.splitlines(True), name, name + " (generated)"))
        return 1
    with open(args.page, "w") as handle:
        handle.write(wanted)
    print("updated %s" % name)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
