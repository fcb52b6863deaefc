"""tools/build_collection.py: the collection tree it lays out from the project's sources.

The build itself and ansible-test sanity on it run in scripts/sanity.py (a stage
of scripts/test.sh); these tests pin down the layout and the import rewrite.
"""

import ast
import glob
import os
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import build_collection  # noqa: E402

TARGET = "ansible_collections.toa_fleet.toa.plugins.module_utils"
UTILS = ["toa_host", "toa_route"]


def test_rewrites_both_import_forms_of_the_projects_module_utils():
    text = ("from ansible.module_utils.basic import AnsibleModule\n"
            "from ansible.module_utils import toa_host\n"
            "from ansible.module_utils.toa_host import host_path, read_text\n"
            "from ansible.module_utils.toa_route import (\n"
            "    identify_host,\n"
            ")\n"
            "try:\n"
            "    from ansible.module_utils.toa_route import select_route\n"
            "except ImportError:\n"
            "    pass\n")
    out = build_collection.rewrite_imports(text, "toa_fleet", "toa", UTILS)
    assert out.splitlines() == [
        "from ansible.module_utils.basic import AnsibleModule",
        "from %s import toa_host" % TARGET,
        "from %s.toa_host import host_path, read_text" % TARGET,
        "from %s.toa_route import (" % TARGET,
        "    identify_host,",
        ")",
        "try:",
        "    from %s.toa_route import select_route" % TARGET,
        "except ImportError:",
        "    pass",
    ]


def test_leaves_ansible_cores_own_module_utils_alone():
    text = ("from ansible.module_utils.common.text.converters import to_bytes\n"
            "from ansible.module_utils import basic\n"
            "from ansible.module_utils.toa_hostname_helper import x\n")
    assert build_collection.rewrite_imports(text, "toa_fleet", "toa", UTILS) == text


@pytest.mark.parametrize("line", [
    "import ansible.module_utils.toa_host\n",
    "from ansible.module_utils import basic, toa_host\n",
])
def test_refuses_an_import_it_cannot_rewrite(line):
    with pytest.raises(SystemExit, match="cannot rewrite"):
        build_collection.rewrite_imports(line, "toa_fleet", "toa", UTILS)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("collection") / "toa")
    os.makedirs(path)
    build_collection.lay_out(path)
    return path


def names(pattern):
    return sorted(os.path.basename(path) for path in glob.glob(pattern))


def test_the_tree_holds_every_module_util_filter_and_the_role(tree):
    assert names(os.path.join(tree, "plugins", "modules", "*.py")) == names(os.path.join(ROOT, "library", "*.py"))
    assert (names(os.path.join(tree, "plugins", "module_utils", "*.py"))
            == names(os.path.join(ROOT, "module_utils", "*.py")))
    assert names(os.path.join(tree, "plugins", "filter", "*.py")) == names(os.path.join(ROOT, "filter_plugins", "*.py"))
    for path in ("galaxy.yml", "README.md", "meta/runtime.yml", "roles/toa/tasks/main.yml",
                 "roles/toa/meta/argument_specs.yml", "roles/toa/files/toa-src/dkms.conf",
                 "LICENSE", "COPYING", "roles/toa/files/toa-src/COPYING"):
        assert os.path.isfile(os.path.join(tree, path)), path
    with open(os.path.join(tree, "galaxy.yml")) as handle:
        meta = yaml.safe_load(handle)
    assert (meta["namespace"], meta["name"]) == ("toa_fleet", "toa")


def test_the_role_carries_the_committed_bpf_object(tree):
    # the eBPF route copies it (auto takes that route on Debian 12): a collection
    # without it fails there
    for name in ("toa.bpf.o", "BUILD_SHA256", "toa-bpf", "toa.bpf.c"):
        built = os.path.join(tree, "roles", "toa", "files", "toa-bpf", name)
        with open(built, "rb") as a, open(os.path.join(ROOT, "roles", "toa", "files", "toa-bpf", name),
                                           "rb") as b:
            assert a.read() == b.read(), name


def test_kernel_build_leftovers_stay_out(tmp_path):
    assert build_collection.SKIP(str(tmp_path / "toa-src"), ["toa.o", "toa.ko", ".toa.o.cmd", "toa.c"]) \
        == {"toa.o", "toa.ko", ".toa.o.cmd"}
    assert build_collection.SKIP(str(tmp_path / "toa-bpf"), ["toa.bpf.o", "x.pyc"]) == {"x.pyc"}


def test_no_module_imports_the_project_layouts_module_utils(tree):
    for path in glob.glob(os.path.join(tree, "plugins", "*", "*.py")):
        with open(path) as handle:
            text = handle.read()
        ast.parse(text, path)
        assert "ansible.module_utils.toa_" not in text, path
        assert "from ansible.module_utils import toa_" not in text, path


def test_only_the_imports_differ_from_the_sources(tree):
    for path in glob.glob(os.path.join(ROOT, "library", "*.py")):
        with open(path) as handle:
            source = handle.read().splitlines()
        with open(os.path.join(tree, "plugins", "modules", os.path.basename(path))) as handle:
            built = handle.read().splitlines()
        assert len(source) == len(built)
        changed = [(a, b) for a, b in zip(source, built) if a != b]
        assert all(TARGET in b and "import" in b for a, b in changed), changed
