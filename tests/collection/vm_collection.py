#!/usr/bin/env python3
"""The toa_fleet.toa collection for real: built from the tree, installed from
its tarball into a fresh virtualenv, and a site.yml that names everything by
its fully qualified name converges a fresh guest.

    python3 tests/collection/vm_collection.py                 # Debian 12 guest coll-debian12
    python3 tests/collection/vm_collection.py --guest ubuntu2404 --keep

Steps, each checked:

1. tools/build_collection.py builds the tarball (no copy of the role or the
   modules is kept in the tree: the tarball is made from library/,
   module_utils/, filter_plugins/ and roles/toa).
2. A new virtualenv gets ansible-core at the pin of requirements/dev.txt and
   nothing else; ansible-galaxy installs the tarball into a collections
   directory of the work directory; ansible-doc finds toa_fleet.toa.toa_verify.
3. The playbooks run from the work directory with an ansible.cfg that names
   only that collections directory (no library, module_utils, roles_path or
   filter_plugins: the project's ansible.cfg is not read, and ANSIBLE_* of the
   caller's environment is dropped). Hosts come from the test bed's inventory
   (strict host keys, the key toavm.py recorded).
4. site.yml (role toa_fleet.toa.toa) on the fresh guest: changed, nothing failed.
   Again: changed=0. verify.yml (module toa_fleet.toa.toa_verify, probe on):
   every probe family saw getpeername() return the injected address.

The guest is stopped at the end unless --keep. Work directory:
$TOA_CACHE/collection-test (removed first).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("TOA_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "toa-fleet")
TOAVM = os.path.join(ROOT, "testbed", "toavm.py")
INVENTORY = os.path.join(ROOT, "inventories", "local", "toavm_guests.py")
sys.path.insert(0, os.path.join(ROOT, "bench"))

from bench import parse_recap  # noqa: E402  (the bench's reader of PLAY RECAP)

SITE = """---
# Written as a user of the collection writes it: fully qualified names only.
- name: Install TOA with the toa_fleet.toa collection
  hosts: "{{ toa_hosts }}"
  become: true
  gather_facts: false
  roles:
    - role: toa_fleet.toa.toa
"""

VERIFY = """---
- name: Verify TOA with the collection's module
  hosts: "{{ toa_hosts }}"
  become: true
  gather_facts: false
  tasks:
    - name: State, checks and the end-to-end probe in one module run
      toa_fleet.toa.toa_verify:
        name: toa
        host: "{{ inventory_hostname }}"
        probe: true
        probe_families: [ipv4, ipv6, ipv4_on_ipv6]
      register: toa_verified

    - name: Say what verification found
      ansible.builtin.debug:
        msg: "{{ toa_verified.notes }}"

    - name: Keep the module's result for the test
      ansible.builtin.copy:
        content: "{{ toa_verified | to_json }}"
        dest: "{{ toa_result_file }}"
        mode: "0644"
      delegate_to: localhost
      become: false
      changed_when: false  # a file of the test's on the controller, not the host
"""

CFG = """[defaults]
collections_path = {collections}
inventory = {inventory}
gathering = explicit
retry_files_enabled = False
interpreter_python = auto_silent
stdout_callback = ansible.builtin.default

[ssh_connection]
pipelining = True
"""


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def pin(name):
    with open(os.path.join(ROOT, "requirements", "dev.txt")) as f:
        for line in f:
            m = re.match(r"^%s==(\S+)" % re.escape(name), line.strip())
            if m:
                return m.group(1)
    raise SystemExit("vm_collection: no %s== pin in requirements/dev.txt" % name)


def run(argv, **kw):
    kw.setdefault("check", True)
    return subprocess.run(argv, **kw)


def clean_env(work, venv):
    """The caller's environment without any ANSIBLE_* (the project's settings
    must not leak in), with the new venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
    env["ANSIBLE_CONFIG"] = os.path.join(work, "ansible.cfg")
    env["ANSIBLE_HOME"] = os.path.join(work, "ansible-home")
    env.pop("VIRTUAL_ENV", None)
    return env


def play(work, venv, env, book, host, extra=None):
    """Run a playbook; return (rc, the host's PLAY RECAP counters, the output).
    ansible-core has no JSON stdout callback (that is ansible.posix's), so
    the recap is read."""
    argv = [os.path.join(venv, "bin", "ansible-playbook"), book, "-e", "toa_hosts=" + host]
    for k, v in (extra or {}).items():
        argv += ["-e", "%s=%s" % (k, v)]
    t0 = time.time()
    p = run(argv, cwd=work, env=env, capture_output=True, text=True, check=False)
    out = p.stdout + "\n" + p.stderr
    out_path = os.path.join(work, "%s.%d.log" % (os.path.basename(book), int(t0)))
    with open(out_path, "w") as f:
        f.write(out)
    stats = parse_recap(p.stdout).get(host)
    log("%s: rc %d in %.0f s, recap %s (output %s)"
        % (os.path.basename(book), p.returncode, time.time() - t0, stats, out_path))
    if stats is None:
        raise AssertionError("%s: no recap for %s (rc %d):\n%s" % (book, host, p.returncode, out[-3000:]))
    return p.returncode, stats, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--guest", default="debian12", help="test-bed guest recipe (default debian12)")
    ap.add_argument("--name", help="guest name (default coll-GUEST)")
    ap.add_argument("--keep", action="store_true", help="leave the guest running")
    ap.add_argument("--use-running", action="store_true",
                    help="use the guest NAME that runs already (it must be fresh for the first converge)")
    args = ap.parse_args(argv)
    name = args.name or "coll-" + args.guest
    work = os.path.join(CACHE, "collection-test")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    t_all = time.time()

    # 1. the tarball, from the tree
    # The project's venv (scripts/setup.sh) has ansible-galaxy and PyYAML for the build.
    builder = os.path.join(os.environ.get("TOA_VENV") or os.path.join(CACHE, "venv"), "bin", "python3")
    p = run([builder, os.path.join(ROOT, "tools", "build_collection.py"), "--out", os.path.join(work, "dist")],
            capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise SystemExit("vm_collection: tools/build_collection.py failed (run scripts/setup.sh first):\n%s"
                         % p.stderr[-3000:])
    tarball = p.stdout.strip().splitlines()[-1]
    assert re.search(r"toa_fleet-toa-[0-9.]+\.tar\.gz$", tarball) and os.path.isfile(tarball), tarball
    log("built %s (%d bytes)" % (tarball, os.path.getsize(tarball)))

    # 2. a fresh virtualenv with ansible-core only, the collection installed from the tarball
    venv = os.path.join(work, "venv")
    run([sys.executable, "-m", "venv", venv])
    core = pin("ansible-core")
    run([os.path.join(venv, "bin", "pip"), "install", "-q", "ansible-core==" + core], capture_output=True)
    collections = os.path.join(work, "collections")
    with open(os.path.join(work, "ansible.cfg"), "w") as f:
        f.write(CFG.format(collections=collections, inventory=INVENTORY))
    env = clean_env(work, venv)
    run([os.path.join(venv, "bin", "ansible-galaxy"), "collection", "install", tarball, "-p", collections],
        cwd=work, env=env, capture_output=True)
    installed = os.path.join(collections, "ansible_collections", "toa_fleet", "toa")
    assert os.path.isfile(os.path.join(installed, "plugins", "modules", "toa_verify.py")), installed
    assert os.path.isdir(os.path.join(installed, "roles", "toa", "tasks")), installed
    cfg = run([os.path.join(venv, "bin", "ansible-config"), "dump", "--only-changed"], cwd=work, env=env,
              capture_output=True, text=True).stdout
    for key in ("DEFAULT_MODULE_PATH", "DEFAULT_MODULE_UTILS_PATH", "DEFAULT_ROLES_PATH", "DEFAULT_FILTER_PLUGIN_PATH"):
        assert key not in cfg, "the test's ansible.cfg must not set %s:\n%s" % (key, cfg)
    doc = run([os.path.join(venv, "bin", "ansible-doc"), "-j", "toa_fleet.toa.toa_verify"], cwd=work, env=env,
              capture_output=True, text=True)
    assert "toa_fleet.toa.toa_verify" in doc.stdout, doc.stdout[:500]
    log("ansible-core %s in a fresh venv, collection installed at %s" % (core, installed))
    for fname, text in (("site.yml", SITE), ("verify.yml", VERIFY)):
        with open(os.path.join(work, fname), "w") as f:
            f.write(text)

    # 3. a fresh guest
    if not args.use_running:
        t0 = time.time()
        up = run(["python3", TOAVM, "up", name, "--guest", args.guest], capture_output=True, text=True,
                 check=False)
        if up.returncode != 0:
            raise SystemExit("vm_collection: guest %s did not start:\n%s" % (name, up.stderr[-2000:]))
        log("guest %s up in %.0f s" % (name, time.time() - t0))
    ok = False
    try:
        # 4. converge, rerun, verify
        rc, st, out = play(work, venv, env, "site.yml", name)
        assert rc == 0 and st["failed"] == 0 and st["unreachable"] == 0, "site.yml failed:\n" + out[-4000:]
        assert st["changed"] > 0, "site.yml changed nothing on a fresh guest: %s" % st
        rc, st, out = play(work, venv, env, "site.yml", name)
        assert rc == 0 and st["failed"] == 0, "site.yml rerun failed:\n" + out[-4000:]
        assert st["changed"] == 0, "site.yml rerun changed something: %s\n%s" % (st, out[-4000:])
        result_file = os.path.join(work, "verify-result.json")
        rc, st, out = play(work, venv, env, "verify.yml", name, extra={"toa_result_file": result_file})
        assert rc == 0 and st["failed"] == 0, "verify.yml failed:\n" + out[-4000:]
        assert st["changed"] == 0, "verify.yml changed something on the host: %s" % st
        with open(result_file) as f:
            v = json.load(f)
        probes = v.get("probes") or []
        fams = sorted(pr.get("family") for pr in probes)
        assert fams == ["ipv4", "ipv4_on_ipv6", "ipv6"], "probe families: %s" % fams
        for pr in probes:
            assert pr.get("matches") is True and pr.get("msg") is None, "probe %s: %s" % (pr["family"], pr)
            log("probe %s: getpeername() returned %s" % (pr["family"], pr.get("peer_address")))
        assert not v.get("failures"), v.get("failures")
        ok = True
    finally:
        if not args.keep:
            run(["python3", TOAVM, "down", name], check=False, capture_output=True)
    log("PASS in %.0f s" % (time.time() - t_all) if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
