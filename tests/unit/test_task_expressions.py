"""The Jinja of task files, rendered by Ansible on realistic facts and command output
(tests/unit/role_tasks.py): messages, conditions and loops whose logic lives in YAML."""

import pytest
from role_tasks import find_task, render


def module_facts(**module):
    base = {"loaded": True, "version": "2.0.0", "trusted_cidrs": "", "honours_any_source": True}
    base.update(module)
    return {"module": base, "kernels": {"running": "6.1.0-28-amd64"},
            "autoload": {"enabled": True, "methods": ["modules-load"]},
            "host": {"id": "debian", "version": "12"}}


# -- verification says when TOA is honoured from any source ---------------------------------

@pytest.mark.parametrize("module, says", [
    ({}, "honours TOA from any source (no trusted_cidrs: a client that reaches the host "
         "directly can claim any address)."),
    ({"trusted_cidrs": None}, "honours TOA from any source"),  # the vendor's module
    ({"trusted_cidrs": "10.20.0.0/16", "honours_any_source": False},
     "honours TOA only from 10.20.0.0/16."),
])
def test_verify_playbook_says_which_sources_are_honoured(module, says):
    task = find_task("playbooks/verify.yml", "Check that TOA is loaded and set to load at boot")
    text = render(task["ansible.builtin.assert"]["success_msg"], inventory_hostname="web1",
                  toa=module_facts(**module))
    assert says in " ".join(text.split())


@pytest.mark.parametrize("module, says", [
    ({}, "It honours TOA from any source (no trusted_cidrs): a client that reaches the host "
         "directly can claim any address."),
    ({"trusted_cidrs": "10.20.0.0/16", "honours_any_source": False},
     "It honours TOA only from 10.20.0.0/16."),
])
def test_role_verification_says_which_sources_are_honoured(module, says):
    task = find_task("roles/toa/tasks/verify.yml", "Check that TOA is loaded and autoload is as asked")
    text = render(task["ansible.builtin.assert"]["success_msg"], toa=module_facts(**module),
                  toa_reload_pending=False)
    assert says in " ".join(text.split())
