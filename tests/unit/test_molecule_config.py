"""The Molecule scenarios as Molecule itself sees them.

Every molecule/NAME/molecule.yml holds only its own values; the rest comes
from the base configuration .config/molecule/config.yml, which Molecule finds
on its own and deep-merges under each scenario.  These tests load each
scenario through Molecule's own loader (molecule.config.Config, the code
`molecule test -s NAME` runs) and check what a broken merge would get wrong:
the guest, the Python the guest is driven with, the test sequence, the
playbooks the sequence runs, and the connection settings the base provides.
"""

import glob
import importlib.util
import os

import pytest
import yaml

# Importing Molecule sets ANSIBLE_FORCE_COLOR in os.environ (molecule.console);
# every later test that runs ansible-playbook would then read colored output.
_ENVIRON = dict(os.environ)
from molecule import config as molecule_config  # noqa: E402
from molecule import util as molecule_util  # noqa: E402

os.environ.clear()
os.environ.update(_ENVIRON)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = os.path.join(ROOT, ".config", "molecule", "config.yml")

_spec = importlib.util.spec_from_file_location("toavm", os.path.join(ROOT, "testbed", "toavm.py"))
toavm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toavm)

MODULE_ROUTE = ["destroy", "syntax", "create", "check", "converge", "idempotence",
                "side_effect", "verify", "destroy"]

# scenario: (guest, the sequence it runs, converge and verify playbooks)
SHARED = ("../shared/converge.yml", "../shared/verify_remove.yml")
EXPECTED = {
    "default": ("debian12", MODULE_ROUTE, SHARED),
    "debian11": ("debian11", MODULE_ROUTE, SHARED),
    "debian13": ("debian13", MODULE_ROUTE, SHARED),
    "ubuntu1604": ("ubuntu1604", MODULE_ROUTE, SHARED),
    "ubuntu1804": ("ubuntu1804", MODULE_ROUTE, SHARED),
    "ubuntu2004": ("ubuntu2004", MODULE_ROUTE, SHARED),
    "ubuntu2204": ("ubuntu2204", MODULE_ROUTE, SHARED),
    "ubuntu2404": ("ubuntu2404", MODULE_ROUTE, SHARED),
    "ebpf": ("debian12", MODULE_ROUTE, SHARED),
    "ebpf-ubuntu2404": ("ubuntu2404", MODULE_ROUTE, SHARED),
    "ebpf-debian11": ("debian11", MODULE_ROUTE[:3] + ["prepare"] + MODULE_ROUTE[3:], SHARED),
    "ebpf-ubuntu2204": ("ubuntu2204", MODULE_ROUTE, SHARED),
    "ebpf-debian13": ("debian13", MODULE_ROUTE, SHARED),
    "failures": ("debian12", ["destroy", "syntax", "create", "converge", "verify", "destroy"],
                 ("converge.yml", "verify.yml")),
    "kernel": ("debian12", MODULE_ROUTE[:3] + ["prepare"] + MODULE_ROUTE[3:],
               ("converge.yml", "verify.yml")),
    "kernel-ubuntu1604": ("ubuntu1604", MODULE_ROUTE[:3] + ["prepare"] + MODULE_ROUTE[3:],
                          ("converge.yml", "verify.yml")),
}


def scenario_dirs():
    return sorted(os.path.basename(os.path.dirname(p))
                  for p in glob.glob(os.path.join(ROOT, "molecule", "*", "molecule.yml")))


@pytest.fixture(autouse=True)
def untouched_environ():
    """Whatever Molecule's loader puts into os.environ stays in this module's tests."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def load(monkeypatch):
    """Molecule's effective configuration of one scenario, found the way the CLI finds it."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MOLECULE_PROJECT_DIRECTORY", ROOT)

    def _load(name):
        return molecule_config.Config(
            os.path.join(ROOT, "molecule", name, "molecule.yml"),
            args={"base_config": [BASE]},
            command_args={"subcommand": "test", "scenario_name": name},
        )
    return _load


def test_every_scenario_is_in_the_table():
    # A new scenario gets a row here, so its merged values are checked too.
    assert scenario_dirs() == sorted(EXPECTED)


def test_molecule_finds_the_base_without_an_option(monkeypatch):
    # `molecule test -s X` passes no --base-config: the CLI's default is this lookup.
    monkeypatch.chdir(os.path.join(ROOT, "molecule"))
    found = molecule_util.lookup_config_file(".config/molecule/config.yml")
    assert found is not None and os.path.samefile(found, BASE)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_effective_config(load, name):
    guest, sequence, (converge, verify) = EXPECTED[name]
    config = load(name)
    data = config.config_data

    # The guest: one platform, a recipe toavm.py can build.
    assert data["platforms"] == [{"name": guest, "guest": guest}]
    assert guest in toavm.GUESTS

    # The interpreter: the one toavm.py records for the guest; Ansible's own
    # discovery (auto_silent) everywhere it is Python 3.
    assert data["ansible"]["cfg"]["defaults"]["interpreter_python"] == "auto_silent"
    host_vars = data["provisioner"]["inventory"]["host_vars"]
    wanted = toavm.INTERPRETERS.get(guest)
    if wanted:
        assert host_vars[guest]["ansible_python_interpreter"] == wanted
    else:
        assert "ansible_python_interpreter" not in host_vars.get(guest, {})

    # The route: the shared plays read toa_molecule_strategy (default module).
    group_vars = data["provisioner"]["inventory"].get("group_vars") or {}
    strategy = (group_vars.get("all") or {}).get("toa_molecule_strategy", "module")
    assert strategy == ("ebpf" if name.startswith("ebpf") else "module")

    # The sequence, as Molecule will run it.
    assert config.scenario.sequence == sequence

    # Every step that runs a playbook finds it.
    playbooks = data["ansible"]["playbooks"]
    assert (playbooks["converge"], playbooks["verify"]) == (converge, verify)
    assert playbooks["create"] == "../shared/create.yml"
    assert playbooks["destroy"] == "../shared/destroy.yml"
    for step in set(sequence) & {"create", "prepare", "converge", "side_effect", "verify", "destroy"}:
        path = os.path.join(ROOT, "molecule", name, playbooks[step])
        assert os.path.isfile(path), (step, path)

    # The connection settings from the base, and the project paths interpolated.
    cfg = data["ansible"]["cfg"]
    assert cfg["defaults"]["timeout"] == 60
    assert "ServerAliveInterval=15" in cfg["ssh_connection"]["ssh_args"]
    assert data["ansible"]["env"]["ANSIBLE_LIBRARY"] == os.path.join(ROOT, "library")
    assert data["driver"]["name"] == "default" and data["driver"]["options"]["managed"] is True

    # Host keys: checked strictly against the key toavm.py recorded for the
    # guest (Molecule's own defaults would switch checking off).
    assert "host_key_checking" not in cfg["defaults"]
    ssh_opts = data["driver"]["ssh_connection_options"]
    assert "-o StrictHostKeyChecking=yes" in ssh_opts
    assert not any("StrictHostKeyChecking=no" in o or "UserKnownHostsFile=/dev/null" in o for o in ssh_opts)
    assert "-o UserKnownHostsFile={{toa_testbed_known_hosts}}" in ssh_opts
    # `molecule login` goes through toavm.py ssh to the guest create.yml started.
    login = config.driver.login_cmd_template.format(instance=guest)
    assert login == "python3 %s/testbed/toavm.py ssh molecule-%s-%s" % (ROOT, name, guest)
    known = data["provisioner"]["inventory"]["group_vars"]["all"]["toa_testbed_known_hosts"]
    # the guest name create.yml gives: PREFIX-SCENARIO-INSTANCE (rendered in test_host_keys)
    assert " ".join(known.split()).endswith(
        "/run/{{ lookup('env', 'TOA_MOLECULE_GUEST_PREFIX') or 'molecule-' }}"
        "{{ lookup('env', 'MOLECULE_SCENARIO_NAME') }}-{{ inventory_hostname }}/known_hosts")


def _leaves(tree, prefix=()):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, prefix + (key,))
    else:
        yield prefix, tree


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_scenario_file_restates_nothing_from_the_base(name):
    with open(BASE) as f:
        base = dict(_leaves(yaml.safe_load(f)))
    with open(os.path.join(ROOT, "molecule", name, "molecule.yml")) as f:
        own = dict(_leaves(yaml.safe_load(f)))
    assert [path for path, value in own.items() if base.get(path) == value] == []
