#!/usr/bin/env python3
"""Prove on a running guest that its SSH host key is checked, and a changed one refused.

    python3 testbed/hostkey_check.py NAME

Against guest NAME (started by `toavm.py up`), with the connection settings the
local inventory gives it (inventories/local/toavm_guests.py):

1. `ansible NAME -m ping` passes: the key toavm.py recorded is the guest's;
2. the recorded key is replaced by another ed25519 key: `ansible -m ping` is
   refused (UNREACHABLE, ssh's "Host key verification failed", the recorded
   file named) and so is `toavm.py ssh` (rc 255 and toavm's message saying to
   recreate the guest);
3. the recorded file is restored and `ansible -m ping` passes again.

Each ansible run gets its own ssh ControlPath directory: an open master
connection would skip the host key check.  Exit status 0 when all holds; the
recorded file is restored whatever happens.  About 1-2 min under TCG.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "inventories", "local"))
import toavm  # noqa: E402
import toavm_guests  # noqa: E402


def ansible_program():
    # The ansible next to the Python running this (a virtualenv), else PATH's.
    near = os.path.join(os.path.dirname(sys.executable), "ansible")
    return near if os.path.exists(near) else "ansible"


def ping(name, inventory, work, step):
    env = dict(os.environ, ANSIBLE_SSH_CONTROL_PATH_DIR=os.path.join(work, "cp-%d" % step),
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_TIMEOUT="60")
    proc = subprocess.run([ansible_program(), "-i", inventory, name, "-m", "ping"], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    return proc.returncode, proc.stdout


def other_key_line(known_hosts_text, work):
    """known_hosts_text with its key replaced by a freshly generated one."""
    key = os.path.join(work, "other")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "not-the-guest", "-f", key],
                   check=True, stdin=subprocess.DEVNULL)
    with open(key + ".pub") as f:
        kind, blob = f.read().split()[:2]
    lines = []
    for line in known_hosts_text.splitlines():
        if line and not line.startswith("#"):
            line = "%s %s %s" % (line.split()[0], kind, blob)
        lines.append(line)
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    name = sys.argv[1]
    st = toavm.load_state(name)
    kh = toavm.state_known_hosts(st)
    with open(kh) as f:
        recorded = f.read()
    problems = []

    def expect(ok, what, output=""):
        print("%s %s" % ("ok  " if ok else "FAIL", what))
        if not ok:
            problems.append(what)
            print(output[-3000:])

    with tempfile.TemporaryDirectory(prefix="hostkey-check-") as work:
        inventory = os.path.join(work, "inventory.json")
        with open(inventory, "w") as f:
            json.dump({"all": {"hosts": {name: toavm_guests.host_vars(name, st)}}}, f)

        rc, out = ping(name, inventory, work, 1)
        expect(rc == 0 and "SUCCESS" in out, "ansible ping with the recorded key passes", out)
        try:
            with open(kh, "w") as f:
                f.write(other_key_line(recorded, work))
            rc, out = ping(name, inventory, work, 2)
            expect(rc != 0 and "UNREACHABLE" in out and "Host key verification failed" in out,
                   "ansible ping with another recorded key is refused (UNREACHABLE, "
                   "Host key verification failed)", out)
            expect(kh in out, "ansible's message names the recorded file %s" % kh, out)
            proc = subprocess.run([sys.executable, os.path.join(HERE, "toavm.py"), "ssh", name, "--", "true"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
            expect(proc.returncode == 255 and "Host key verification failed" in proc.stderr
                   and "toavm: guest %s: the SSH host key on port %d is not the one recorded" % (name, st["port"])
                   in proc.stderr and "toavm.py down %s" % name in proc.stderr,
                   "toavm.py ssh is refused with a message saying to recreate the guest", proc.stderr)
            print("\n".join("    | " + ln for ln in proc.stderr.strip().splitlines()[-2:]))
        finally:
            with open(kh, "w") as f:
                f.write(recorded)
        rc, out = ping(name, inventory, work, 3)
        expect(rc == 0 and "SUCCESS" in out, "ansible ping passes again with the recorded key restored", out)
    if problems:
        raise SystemExit("hostkey_check: %d problem(s) on %s" % (len(problems), name))
    print("hostkey_check: %s: host key checked, a changed key refused" % name)


if __name__ == "__main__":
    main()
