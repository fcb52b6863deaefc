#!/usr/bin/env python3
"""Dynamic inventory of the local test-bed guests started by testbed/toavm.py.

The embedded default inventory: every running guest under $TOA_CACHE/run
becomes a host (named after the guest) in the groups `toa_servers` and
`guest_<recipe>` (e.g. guest_debian12), reached over its loopback SSH port.

It also gives playbooks/build.yml (run on the controller, the implicit
localhost, which takes the `all` group's vars) the test bed's work directory
and the mirror address the guests reach: outside the test bed the build has
no default for either.
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
        hostvars[name] = {
            "ansible_host": "127.0.0.1",
            "ansible_port": st["port"],
            "ansible_user": "root",
            "ansible_ssh_private_key_file": st["key"],
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": st.get("python", "/usr/bin/python3"),
            "toa_testbed_guest": st["guest"],
        }
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
