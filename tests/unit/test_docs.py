"""ansible-doc renders every module in library/ and both entry points of the role.

Runs the commands a user types, with the ansible-doc of the ansible-core that
runs this test (scripts/test.sh runs tests/unit under the current and the
legacy 2.16 virtualenv, so both versions are covered), from the project root
so ansible.cfg applies as it does for the playbooks.  Any error, and any
output on stderr (ansible-doc's warnings go there), fails the test.
"""

import glob
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

import ansible.release

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = sorted(os.path.splitext(os.path.basename(path))[0]
                 for path in glob.glob(os.path.join(ROOT, "library", "*.py"))
                 if not os.path.basename(path).startswith("_"))
with open(os.path.join(ROOT, "roles", "toa", "meta", "argument_specs.yml")) as _handle:
    ENTRY_POINTS = sorted(yaml.safe_load(_handle)["argument_specs"])


def ansible_doc(*args):
    """Run this interpreter's ansible-doc; fail on a non-zero exit or any stderr."""
    program = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    assert os.access(program, os.X_OK), "no ansible-doc beside %s" % sys.executable
    argv = [program] + list(args)
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    command = "ansible-doc %s (ansible-core %s)" % (" ".join(args), ansible.release.__version__)
    assert proc.returncode == 0, "%s exited %d:\n%s" % (command, proc.returncode, proc.stderr)
    assert proc.stderr == "", "%s wrote to stderr:\n%s" % (command, proc.stderr)
    assert proc.stdout.strip(), "%s printed nothing" % command
    return proc.stdout


def test_the_modules_are_found():
    assert "toa_facts" in MODULES and len(MODULES) >= 6, MODULES
    assert ENTRY_POINTS == ["main", "remove"]


def test_ansible_doc_is_this_ansible_core():
    out = ansible_doc("--version")
    assert "core %s]" % ansible.release.__version__ in out.splitlines()[0], out


@pytest.mark.parametrize("name", MODULES)
def test_module_renders(name):
    out = ansible_doc("-M", "library", name)
    # The header differs between versions ("> MODULE toa_src (path)", "> TOA_SRC    (path)").
    assert os.path.join(ROOT, "library", name + ".py") in out.splitlines()[0], out
    for section in ("OPTIONS", "EXAMPLES:", "RETURN VALUES:"):
        assert section in out, "%s lacks %s:\n%s" % (name, section, out)


def options_without_description(options, prefix=""):
    """Dotted names of (sub-)options or return values that have no description."""
    missing = []
    for key, spec in (options or {}).items():
        if not spec.get("description"):
            missing.append(prefix + key)
        for sub in ("suboptions", "options", "contains"):
            missing += options_without_description(spec.get(sub), prefix + key + ".")
    return missing


@pytest.mark.parametrize("name", MODULES)
def test_module_documentation_examples_and_return_parse(name):
    data = json.loads(ansible_doc("--json", "-M", "library", name))[name]
    doc = data["doc"]
    assert doc["module"] == name
    assert doc.get("short_description") and doc.get("description")
    assert options_without_description(doc.get("options")) == []
    # ansible-doc passes EXAMPLES through as text: parse it as the tasks it shows.
    tasks = yaml.safe_load(data["examples"])
    assert isinstance(tasks, list) and tasks, "EXAMPLES of %s is not a task list" % name
    for task in tasks:
        assert isinstance(task, dict) and task.get("name"), "an example of %s has no name: %r" % (name, task)
    assert any(key.split(".")[-1] == name for task in tasks for key in task), \
        "no example of %s calls it" % name
    assert isinstance(data["return"], dict) and data["return"], "RETURN of %s is empty" % name
    assert options_without_description(data["return"]) == []


def entry_points_shown(out):
    # "ENTRY POINT: main - ..." (2.16), "ENTRY POINT: *main* - ..." (2.19 without colour)
    return re.findall(r"^ENTRY POINT: \W*(\w+)\W* - ", out, re.M)


def test_role_renders_every_entry_point():
    out = ansible_doc("-t", "role", "-r", "roles", "toa")
    assert sorted(entry_points_shown(out)) == ENTRY_POINTS, out


@pytest.mark.parametrize("point", ENTRY_POINTS)
def test_role_entry_point_renders(point):
    out = ansible_doc("-t", "role", "-r", "roles", "toa", "-e", point)
    assert entry_points_shown(out) == [point], out
    data = json.loads(ansible_doc("--json", "-t", "role", "-r", "roles", "toa", "-e", point))
    spec = data["toa"]["entry_points"][point]
    assert spec.get("short_description") and spec.get("options")
    assert options_without_description(spec["options"]) == []
    for option in spec["options"]:
        assert re.search(r"^- %s\b" % option, out, re.M), "%s is not shown:\n%s" % (option, out)
