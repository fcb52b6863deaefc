#!/usr/bin/env python3
"""Dynamic inventory of the local test-bed guests started by testbed/toavm.py.

The embedded default inventory: every running guest under $TOA_CACHE/run
becomes a host (named after the guest) in the groups `toa_servers` and
`guest_<recipe>` (e.g. guest_debian12), reached over its loopback SSH port.

It also gives playbooks/build.yml (run on the controller, the implicit
localhost, which takes the `all` group's vars) the test bed's work directory
and the mirror address the guests reach: outside the test bed the build has
no default for either.

SSH host keys are checked strictly, against the key testbed/toavm.py recorded
for each guest when it started it ($TOA_CACHE/run/NAME/known_hosts): only
this inventory's hosts get that file, nothing is switched off for anyone else.
A guest whose recorded key is missing (started by an older toavm.py) is
listed all the same and fails to connect: recreate it.
"""
import json
import os
import sys

CACHE = os.environ.get("TOA_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "toa-fleet")
RUN = os.path.join(CACHE, "run")
# testbed/toavm.py: the guests reach the host's package proxy (testbed/aptcache.py)
# at 10.0.2.100:3142, which serves $TOA_CACHE/mirror under /toa-mirror/.
TESTBED_VARS = {
    "toa_build_cache": CACHE,
    "toa_build_mirror_url": "http://10.0.2.100:3142/toa-mirror/",
}


def ssh_common_args(known_hosts):
    """ansible_ssh_common_args for a guest: its recorded known_hosts only,
    strict checking (a key ssh does not find there is refused, not added)."""
    if not known_hosts or any(c.isspace() for c in known_hosts):
        # ssh reads UserKnownHostsFile as a whitespace-separated list.
        raise ValueError("unusable known_hosts path %r" % known_hosts)
    return ("-o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes"
            % known_hosts)


def host_vars(name, st):
    """How Ansible reaches guest NAME (its toavm.py state ST)."""
    return {
        "ansible_host": "127.0.0.1",
        "ansible_port": st["port"],
        "ansible_user": "root",
        "ansible_ssh_private_key_file": st["key"],
        # The path, not the state's field: a guest from an older
        # toavm.py has no file there and is refused, never unchecked.
        "ansible_ssh_common_args": ssh_common_args(os.path.join(RUN, name, "known_hosts")),
        "ansible_python_interpreter": st.get("python", "/usr/bin/python3"),
        "toa_testbed_guest": st["guest"],
    }


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def inventory():
    hostvars, groups = {}, {"toa_servers": []}
    names = sorted(os.listdir(RUN)) if os.path.isdir(RUN) else []
    for name in names:
        path = os.path.join(RUN, name, "state.json")
        if name.startswith(".") or name.startswith("molecule-") or not os.path.exists(path):
            continue
        with open(path) as f:
            st = json.load(f)
        if not alive(st["pid"]):
            continue
        hostvars[name] = host_vars(name, st)
        groups["toa_servers"].append(name)
        groups.setdefault("guest_" + st["guest"], []).append(name)
    out = {g: {"hosts": h} for g, h in groups.items()}
    out["all"] = {"vars": dict(TESTBED_VARS)}
    out["_meta"] = {"hostvars": hostvars}
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--host":
        print(json.dumps(inventory()["_meta"]["hostvars"].get(sys.argv[2], {})))
    else:
        print(json.dumps(inventory(), indent=1))
