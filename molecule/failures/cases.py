#!/usr/bin/env python3
"""Bad input against a real guest: each case runs playbooks/site.yml with one
fault and asserts that the play failed, that its message names what to change,
and that the host is exactly as before (files with size, mtime and mode under
the directories the role writes, the dpkg package list and the loaded modules).

    python3 molecule/failures/cases.py --guest molecule-failures-debian12 [--only NAME ...]

(or TOA_FAILURE_CASES="converge,lockdown" molecule test -s failures: a subset).

The guest is a testbed/toavm.py guest.  Cases run in order: checks on a fresh
host first, then a converge (module route, with a DKMS signing key made in the
guest), then the faults that need a built module, then kernel lockdown (which
cannot be undone without a reboot).  Prints one line per case and a summary;
exits non-zero when any case fails.
"""

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "testbed"))
import toavm  # noqa: E402  (testbed/ is not a package)

SNAPSHOT_DIRS = "/boot /etc /lib/modules /usr/src /var/lib/dkms /var/cache/toa-fleet"
SNAPSHOT = (
    "find %s -xdev -printf '%%p %%s %%T@ %%m\\n' 2>/dev/null | sort; echo '--- packages';"
    " dpkg-query -W; echo '--- modules'; cut -d' ' -f1 /proc/modules | sort" % SNAPSHOT_DIRS)

MIRROR_PATH = "test"
TEST_DEB_PACKAGE = "linux-image-6.1.0-99-toa-failtest"
TEST_KERNEL = "6.1.0-99-toa-failtest"
PIN_FILE = "/etc/apt/preferences.d/zz-fail-no-headers"
KEY = "/root/fail-mok.key"
CERT = "/root/fail-mok.der"


class Guest:
    def __init__(self, name):
        self.name = name
        self.state = toavm.load_state(name)

    def sh(self, command, check=True, timeout=900):
        # A loaded emulated guest can miss toavm's 10 s banner deadline: wait
        # longer and retry what never reached the guest (ssh's own rc 255).
        base = [("ConnectTimeout=60" if arg == "ConnectTimeout=10" else arg)
                for arg in toavm.ssh_base(self.state)]
        for attempt in range(4):
            proc = subprocess.run(base + [command], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, universal_newlines=True,
                                  timeout=timeout)
            if proc.returncode != 255 or "banner exchange" not in proc.stdout:
                break
            time.sleep(10 * (attempt + 1))
        if check and proc.returncode != 0:
            raise RuntimeError("guest command failed (%d): %s\n%s"
                               % (proc.returncode, command, proc.stdout))
        return proc.stdout

    def snapshot(self):
        return self.sh(SNAPSHOT)

    def inventory(self, directory):
        path = os.path.join(directory, "inventory.ini")
        # The guest's host key is checked against the one toavm.py recorded.
        args = " ".join(toavm.host_key_options(toavm.state_known_hosts(self.state)))
        with open(path, "w") as handle:
            handle.write(
                "[toa_servers]\n%s ansible_host=127.0.0.1 ansible_port=%d ansible_user=root "
                "ansible_ssh_private_key_file=%s ansible_python_interpreter=/usr/bin/python3 "
                "ansible_ssh_common_args='%s'\n"
                % (self.name, self.state["port"], self.state["key"], args))
        return path


def make_test_deb():
    """A small real .deb on the package proxy's mirror; returns (name, sha256)."""
    mirror = os.path.join(os.environ.get("TOA_CACHE", os.path.expanduser("~/.cache/toa-fleet")),
                          "mirror", MIRROR_PATH)
    name = "%s_1.0_amd64.deb" % TEST_DEB_PACKAGE
    path = os.path.join(mirror, name)
    if not os.path.exists(path):
        os.makedirs(mirror, exist_ok=True)
        with tempfile.TemporaryDirectory() as build:
            os.makedirs(os.path.join(build, "DEBIAN"))
            os.makedirs(os.path.join(build, "usr/share/doc", TEST_DEB_PACKAGE))
            with open(os.path.join(build, "DEBIAN/control"), "w") as handle:
                handle.write("Package: %s\nVersion: 1.0\nArchitecture: amd64\n"
                             "Maintainer: toa-fleet tests <tests@example.invalid>\n"
                             "Description: failure-case test package (installs a README)\n"
                             % TEST_DEB_PACKAGE)
            with open(os.path.join(build, "usr/share/doc", TEST_DEB_PACKAGE, "README"),
                      "w") as handle:
                handle.write("If this file exists, a corrupt download was installed.\n")
            subprocess.run(["dpkg-deb", "--root-owner-group", "--build", build, path],
                           check=True, stdout=subprocess.DEVNULL)
    with open(path, "rb") as handle:
        return name, hashlib.sha256(handle.read()).hexdigest()


def package_row(name, sha):
    return {"id": "failtest-debian12", "distribution": "debian", "major": "12",
            "arch": "x86_64", "kernel": TEST_KERNEL, "format": "deb", "image": name,
            "headers": None, "sha256": {name: sha}, "module_params": True}


# The DKMS signing key the module-route cases use, made once before any case
# (so that any subset of the cases finds it).
KEY_SETUP = ("test -e %s || openssl req -x509 -newkey rsa:2048 -nodes -days 30 -keyout %s"
             " -outform DER -out %s -subj '/CN=toa-fleet failures test key/' 2>/dev/null"
             % (KEY, KEY, CERT))


def cases(deb_name, deb_sha):
    wrong = hashlib.sha256(b"not the file").hexdigest()
    mirror = "http://10.0.2.100:3142/toa-mirror/%s/" % MIRROR_PATH
    signing = {"toa_dkms_signing_key": KEY, "toa_dkms_signing_cert": CERT}
    module = dict({"toa_strategy": "module"}, **signing)
    grub_moved = "/root/grub.cfg.failtest"
    return [
        # -- fresh host ---------------------------------------------------------------
        {"name": "check mode on a fresh host", "vars": module, "check": True,
         "expect_ok": True},
        {"name": "invalid value: toa_reboot: sometimes", "vars": {"toa_reboot": "sometimes"},
         "phrases": ["toa_reboot must be one of", "got: sometimes"]},
        {"name": "invalid type: toa_params is a list", "vars": {"toa_params": ["200"]},
         "phrases": ["toa_params", "dict"]},
        {"name": "unknown route: toa_strategy: bogus", "vars": {"toa_strategy": "bogus"},
         "phrases": ["toa_strategy must be one of", "auto, package, module, kernel"]},
        {"name": "unsupported OS for the package route (no catalogue row for Debian 12)",
         "vars": {"toa_strategy": "package"},
         "phrases": ["no catalogue row matches Debian 12"]},
        {"name": "checksum mismatch (corrupt download)",
         "vars": {"toa_strategy": "package", "toa_package_base_url": mirror,
                  "toa_catalogue_extra": [package_row(deb_name, wrong)]},
         "phrases": ["did not match", "nothing was installed", "correct toa_package_checksums"]},
        {"name": "unreachable mirror",
         "vars": {"toa_strategy": "package", "toa_package_base_url": "http://10.0.2.100:9/",
                  "toa_package_download_timeout": 20,
                  "toa_catalogue_extra": [package_row(deb_name, deb_sha)]},
         "phrases": ["nothing was installed", "toa_package_base_url (http://10.0.2.100:9/) is "
                                              "right and reachable"]},
        {"name": "no bootloader the role can drive (grub.cfg moved away)",
         "setup": "mv /boot/grub/grub.cfg %s" % grub_moved,
         "teardown": "mv %s /boot/grub/grub.cfg" % grub_moved,
         "vars": {"toa_strategy": "package", "toa_package_base_url": mirror,
                  "toa_catalogue_extra": [package_row(deb_name, deb_sha)]},
         "phrases": ["no bootloader the role can drive", "/boot/grub/grub.cfg",
                     "toa_preflight_ignore: [bootloader]"]},
        {"name": "not enough free space", "vars": dict(module, toa_preflight_free_mb={
            "dkms": 9000000}),
         "phrases": ["MB free but the module route needs 9000000 MB",
                     "lower toa_preflight_free_mb"]},
        {"name": "a TOA-like module is loaded (conflicts)",
         "vars_from_guest": ("cut -d' ' -f1 /proc/modules | head -n1",
                             lambda out: dict(module, toa_preflight_conflicting_modules=[
                                 out.strip()])),
         "phrases": ["is loaded; it rewrites the same peer addresses", "modprobe -r"]},
        {"name": "signing key file missing",
         "vars": dict(module, toa_dkms_signing_key="/root/no-such.key"),
         "phrases": ["toa_dkms_signing_key is /root/no-such.key, which does not exist"]},
        # One apt-get transaction: with the headers uninstallable, nothing at all
        # (not dkms, not the compiler) may be installed.
        {"name": "missing headers for the running kernel (apt pin -1)",
         "setup": "printf 'Package: linux-headers-*\\nPin: release *\\nPin-Priority: -1\\n'"
                  " > %s" % PIN_FILE,
         "teardown": "rm -f %s" % PIN_FILE,
         "vars": module,
         "phrases": ["Cannot install linux-headers-", "has no installation candidate",
                     "set toa_strategy: kernel"]},
        # -- converged host -------------------------------------------------------------
        {"name": "converge (module route, DKMS signing key)", "vars": module,
         "expect_ok": True, "compare": False,
         "phrases": ["The TOA module is signed by toa-fleet failures test key"]},
        {"name": "check mode on a converged host", "vars": module, "check": True,
         "expect_ok": True},
        {"name": "module load refused by the kernel (trusted_cidrs: not-a-cidr)",
         "setup": "modprobe -r toa && rm -f /etc/modules-load.d/toa.conf /etc/modprobe.d/toa.conf",
         "vars": dict(module, toa_params={"ipv4_kinds": "200", "ipv6_kinds": "253,254",
                                          "trusted_cidrs": "not-a-cidr"}),
         "phrases": ["Invalid argument", "trusted_cidrs: bad CIDR 'not-a-cidr'"]},
        # -- last: lockdown cannot be lifted without a reboot -------------------------------
        {"name": "kernel lockdown without a signing key",
         "setup": "echo integrity > /sys/kernel/security/lockdown",
         "vars": {"toa_strategy": "module"},
         "phrases": ["kernel lockdown is integrity", "Set toa_dkms_signing_key"]},
    ]


def run_play(inventory, extra, check, log):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(extra, handle)
        varfile = handle.name
    # The ansible-playbook next to the Python running this (Molecule's venv).
    program = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    if not os.path.exists(program):
        program = "ansible-playbook"
    argv = [program, "-i", inventory, os.path.join(ROOT, "playbooks/site.yml"),
            "-e", "@" + varfile]
    if check:
        argv.append("--check")
    env = dict(os.environ, ANSIBLE_TIMEOUT="60",
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    start = time.time()
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    os.unlink(varfile)
    log.write("$ %s\n%s\n" % (" ".join(shlex.quote(a) for a in argv), proc.stdout))
    log.flush()
    return proc.returncode, proc.stdout, time.time() - start


def diff(before, after):
    old, new = set(before.splitlines()), set(after.splitlines())
    lines = ["- " + line for line in sorted(old - new)] + ["+ " + line for line in sorted(new - old)]
    return "\n".join(lines[:40])


def run_case(guest, inventory, case, log):
    problems = []
    extra = dict(case.get("vars") or {})
    if "vars_from_guest" in case:
        command, build = case["vars_from_guest"]
        extra = build(guest.sh(command))
    if case.get("setup"):
        guest.sh(case["setup"])
    try:
        before = guest.snapshot() if case.get("compare", True) else None
        rc, out, seconds = run_play(inventory, extra, case.get("check"), log)
        after = guest.snapshot() if before is not None else None
    finally:
        if case.get("teardown"):
            guest.sh(case["teardown"])
    text = " ".join(out.split())  # messages wrap; compare on single spaces
    if case.get("expect_ok"):
        if rc != 0:
            problems.append("play failed (rc %d), expected success" % rc)
    elif rc == 0:
        problems.append("play succeeded, expected a failure")
    for phrase in case.get("phrases", []):
        if phrase not in text:
            problems.append("message lacks %r" % phrase)
    if before is not None and before != after:
        problems.append("host changed:\n" + diff(before, after))
    return problems, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guest", required=True, help="toavm guest name")
    parser.add_argument("--only", action="append", default=[],
                        help="run only cases whose name contains this (repeatable)")
    parser.add_argument("--log", default=os.path.join(tempfile.gettempdir(),
                                                      "toa-failures-cases.log"))
    args = parser.parse_args()
    if not args.only and os.environ.get("TOA_FAILURE_CASES"):
        args.only = [part.strip() for part in os.environ["TOA_FAILURE_CASES"].split(",")
                     if part.strip()]
    guest = Guest(args.guest)
    deb_name, deb_sha = make_test_deb()
    failed = 0
    total_start = time.time()
    with tempfile.TemporaryDirectory() as work, open(args.log, "w") as log:
        inventory = guest.inventory(work)
        guest.sh(KEY_SETUP)
        for case in cases(deb_name, deb_sha):
            if args.only and not any(part in case["name"] for part in args.only):
                continue
            problems, seconds = run_case(guest, inventory, case, log)
            status = "FAIL" if problems else "ok"
            lines = ["%-4s %5.0f s  %s" % (status, seconds, case["name"])]
            lines += ["       " + problem.replace("\n", "\n       ") for problem in problems]
            print("\n".join(lines), flush=True)
            log.write("=== " + "\n".join(lines) + "\n")  # progress, readable while it runs
            failed += bool(problems)
    print("%d case(s) failed; %.0f s in all; play output in %s"
          % (failed, time.time() - total_start, args.log))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
