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


# -- the probe sends the kinds the module reads, never kind 0 ---------------------------------

PROBE = ("roles/toa/tasks/probe.yml", "Prove TOA for each family the module reads")
ALL_FAMILIES = ["ipv4", "ipv6", "ipv4_on_ipv6"]


def probe_plan(params, families=ALL_FAMILIES, module_params=None):
    block = find_task(*PROBE)
    variables = dict(toa_params=params, toa_verify_probe_families=families,
                     inventory_hostname="web1")
    if module_params is not None:
        variables["__toa_module_params"] = module_params
    probed = render("{{ __toa_probe_families }}", block["vars"], **variables)
    sends = find_task("roles/toa/tasks/probe.yml", "Send a crafted TOA handshake and read getpeername()")
    kinds = dict((family, int(render(sends["toa_probe"]["kind"], block["vars"], item=family,
                                     **variables))) for family in probed)
    skip = find_task("roles/toa/tasks/probe.yml",
                     "Say which families are not probed because the module reads no kind for them")
    skipped = render(skip["loop"], block["vars"], **variables)
    messages = [" ".join(render(skip["ansible.builtin.debug"]["msg"], block["vars"], item=family,
                                **variables).split()) for family in skipped]
    return kinds, skipped, messages


def test_empty_ipv6_kinds_skips_the_ipv6_probe_and_says_why():
    kinds, skipped, messages = probe_plan({"ipv4_kinds": "200", "ipv6_kinds": "",
                                           "trusted_cidrs": ""})
    assert kinds == {"ipv4": 200, "ipv4_on_ipv6": 200}
    assert skipped == ["ipv6"]
    assert messages == ["Not probing ipv6 on web1: toa_params.ipv6_kinds is empty, so the module "
                        "honours no IPv6 TOA option and there is nothing to prove. Remove ipv6 "
                        "from toa_verify_probe_families, or set the kinds your proxies send."]


@pytest.mark.parametrize("params, kinds", [
    ({"ipv4_kinds": "200", "ipv6_kinds": "253,254"}, {"ipv4": 200, "ipv6": 253, "ipv4_on_ipv6": 200}),
    ({"ipv4_kinds": " 254 , 200", "ipv6_kinds": "254"}, {"ipv4": 254, "ipv6": 254, "ipv4_on_ipv6": 254}),
    ({"ipv4_kinds": "200", "ipv6_kinds": ",, "}, {"ipv4": 200, "ipv4_on_ipv6": 200}),
    ({"ipv4_kinds": [200], "ipv6_kinds": [254, 253]}, {"ipv4": 200, "ipv6": 254, "ipv4_on_ipv6": 200}),
    ({}, {"ipv4": 200, "ipv6": 253, "ipv4_on_ipv6": 200}),  # the module's defaults
])
def test_each_family_is_probed_with_the_first_kind_the_module_reads(params, kinds):
    found, _skipped, _messages = probe_plan(params)
    assert found == kinds
    assert 0 not in found.values()


def test_only_the_asked_families_are_probed():
    kinds, skipped, _messages = probe_plan({"ipv4_kinds": "200", "ipv6_kinds": ""}, ["ipv4"])
    assert (kinds, skipped) == ({"ipv4": 200}, [])


def test_the_loaded_parameters_win_over_toa_params():
    kinds, _skipped, _messages = probe_plan({"ipv4_kinds": "200", "ipv6_kinds": ""}, ["ipv6"],
                                            module_params={"ipv4_kinds": "200",
                                                           "ipv6_kinds": "254"})
    assert kinds == {"ipv6": 254}
