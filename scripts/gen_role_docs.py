#!/usr/bin/env python3
"""Render the README's role-variables table from roles/toa/meta/argument_specs.yml.

The table lives between the BEGIN/END ROLE VARIABLES markers in README.md and
nothing outside them is touched.  `--check` writes nothing and exits 1 when the
README differs from what would be generated (the test suite runs it), so the
documentation cannot drift from what the role validates.
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
README = os.path.join(ROOT, "README.md")
BEGIN_RE = re.compile(r"^<!-- BEGIN ROLE VARIABLES\b.*-->\s*$", re.M)
END_RE = re.compile(r"^<!-- END ROLE VARIABLES -->\s*$", re.M)
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


def splice(readme_text, block):
    begin = BEGIN_RE.search(readme_text)
    end = END_RE.search(readme_text)
    if not begin or not end or end.start() < begin.end():
        raise SystemExit("README.md lacks the BEGIN/END ROLE VARIABLES markers (in that order)")
    return readme_text[:begin.end()] + "\n" + block.lstrip("\n") + readme_text[end.start():]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when README.md is out of date; write nothing")
    parser.add_argument("--readme", default=README, help="README to update (default: %(default)s)")
    parser.add_argument("--specs", default=SPECS, help="argument specs (default: %(default)s)")
    args = parser.parse_args(argv)

    with open(args.readme) as handle:
        current = handle.read()
    wanted = splice(current, render(args.specs))
    if current == wanted:
        return 0
    if args.check:
        sys.stderr.write("README.md role variables are out of date; run scripts/gen_role_docs.py\n")
        sys.stderr.writelines(difflib.unified_diff(
            current.splitlines(True), wanted.splitlines(True), "README.md", "README.md (generated)"))
        return 1
    with open(args.readme, "w") as handle:
        handle.write(wanted)
    print("updated %s" % os.path.relpath(args.readme, ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
