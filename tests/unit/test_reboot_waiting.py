"""The closing "hosts that still need a reboot" summary of site.yml and remove.yml.

Written once, in playbooks/tasks/reboot_waiting.yml, and imported by the last
play of both playbooks.  Run here for real with ansible-playbook over local
hosts whose toa_reboot_required is what the role would have left.
"""

import os
import subprocess
import sys

import pytest
import yaml
from role_tasks import ROOT

TASKS = os.path.join(ROOT, "playbooks", "tasks", "reboot_waiting.yml")


@pytest.mark.parametrize("playbook", ["site.yml", "remove.yml"])
def test_both_playbooks_end_with_the_shared_summary(playbook):
    with open(os.path.join(ROOT, "playbooks", playbook)) as handle:
        plays = yaml.safe_load(handle)
    last = plays[-1]
    assert last["hosts"] == plays[0]["hosts"]   # the same hosts the role ran on
    imports = [task["ansible.builtin.import_tasks"] for task in last["tasks"]
               if "ansible.builtin.import_tasks" in task]
    assert imports == ["tasks/reboot_waiting.yml"]
    with open(os.path.join(ROOT, "playbooks", playbook)) as handle:
        assert "toa_reboot_required" not in handle.read()   # not written out again


def run_summary(tmp_path, hosts):
    inventory = {"all": {"hosts": dict(
        (name, dict({"ansible_connection": "local", "ansible_python_interpreter": sys.executable}, **values))
        for name, values in hosts.items())}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump([{
        "name": "Summary", "hosts": "all", "gather_facts": False,
        "tasks": [{"name": "Summary", "ansible.builtin.import_tasks": TASKS}]}]))
    program = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"))
    proc = subprocess.run([program, "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml")],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 0, out
    return out


def test_names_the_hosts_waiting_for_a_reboot_in_inventory_order(tmp_path):
    out = run_summary(tmp_path, {
        "web1": {"toa_reboot_required": True},
        "web2": {"toa_reboot_required": False},
        "web3": {},                                  # the role never got to decide
        "web4": {"toa_reboot_required": True},
    })
    assert "Reboot these hosts, then run this playbook again: web1, web4" in out
    assert out.count("Reboot these hosts") == 1      # run_once: one line for the play


def test_says_so_when_no_host_waits(tmp_path):
    out = run_summary(tmp_path, {"web1": {"toa_reboot_required": False}, "web2": {}})
    assert "No host is waiting for a reboot." in out
    assert "Reboot these hosts" not in out
