#!/usr/bin/env python3
"""Run the project's playbooks in its execution environments as AWX runs them.

    tests/awx/run_jobs.py                      both scenarios, one guest at a time
    tests/awx/run_jobs.py --scenario current   Debian 12 in the current EE only
    tests/awx/run_jobs.py --prefix ee-         guest names ee-debian12, ee-ubuntu1604

Each job is what an AWX job is: ansible-runner with process isolation, the
playbook started in a podman container of the EE image, a private data dir
holding

* project/        a copy of this checkout's files (what a project sync checks out),
                  with the guest's recorded host key in
                  inventories/awx-testbed/known_hosts (as docs/awx.md tells a
                  site to keep its fleet's keys with its inventory);
* inventory/hosts the guest, its groups and group vars (toa_params);
* env/ssh_key     the test bed's private key, as a Machine credential passes it
                  (runner loads it into an ssh-agent inside the container);
* env/cmdline     the credential's user (-u root);
* env/extravars   the survey's answers, as AWX sends them (strings for
                  multiple-choice questions);
* env/settings    process isolation in podman, the EE image, host network (the
                  guest's SSH port is forwarded to the host's loopback).

Host keys are checked strictly (StrictHostKeyChecking=yes, no other
known_hosts); nothing of the controller's home is mounted into a job.

Scenarios (tools/build_ee.py --local-base builds the images first, or reuses them):

* current: a fresh Debian 12 guest, EE toa-fleet-ee:2.19: site.yml, verify.yml,
  report.yml, remove.yml;
* legacy: a fresh Ubuntu 16.04 guest (Python 2.7), EE toa-fleet-ee-legacy:2.16:
  site.yml, verify.yml.

First, verify.yml with a known_hosts that names another key must fail with
the host UNREACHABLE ("Host key verification failed"): the check is on.
A job passes when runner reports rc 0 and status successful and its own result
holds: site.yml changed the host and failed nothing; verify.yml changed
nothing and every probe saw getpeername() return the injected address;
report.yml's CSV (written into the project, which the job's container shares)
lists the host as "working" on the module route with a rewritten probe;
after remove.yml the guest's kernel has no toa module loaded. Prints a table
of the timings; the results go to $TOA_CACHE/awx/results.json.
"""

import argparse
import csv
import glob
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("TOA_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "toa-fleet")
VENV_AWX = os.environ.get("TOA_VENV_AWX") or os.path.join(CACHE, "venv-awx")
WORK = os.path.join(CACHE, "awx")
TOAVM = os.path.join(ROOT, "testbed", "toavm.py")
KNOWN_HOSTS = "inventories/awx-testbed/known_hosts"  # inside the job's project

# The fleet's settings, kept in the inventory as docs/awx.md recommends: the
# probe's proxies (192.0.2.2, 2001:db8::2) lie inside trusted_cidrs.
GROUP_VARS = {
    # ansible-runner, which runs every AWX job, sets ANSIBLE_HOST_KEY_CHECKING=False
    # unless the job's environment says otherwise, and Ansible then puts
    # StrictHostKeyChecking=no before ansible_ssh_common_args, where ssh takes
    # the first value: the inventory variable beats that environment variable.
    "ansible_host_key_checking": True,
    "ansible_ssh_common_args": (
        "-o UserKnownHostsFile={{ playbook_dir }}/../%s -o GlobalKnownHostsFile=/dev/null "
        "-o StrictHostKeyChecking=yes" % KNOWN_HOSTS),
    "toa_params": {"ipv4_kinds": "200", "ipv6_kinds": "253,254",
                   "trusted_cidrs": "192.0.2.0/24,2001:db8::/32"},
}

# Survey answers per job template (docs/awx.md, "Survey"): multiple choice
# and text questions send strings, integer questions numbers.
SURVEYS = {
    "site": {"toa_strategy": "module", "toa_reboot": "auto", "toa_serial": "20%",
             "toa_max_fail_percentage": 0, "toa_reload": "false", "toa_verify_probe": "true"},
    "verify": {},
    "report": {"toa_report_probe_enabled": "true"},
    "remove": {"toa_remove_kernel": "false", "toa_serial": "20%", "toa_max_fail_percentage": 0},
}

SCENARIOS = {
    # name: (toavm guest, EE, inventory group, host vars, playbooks)
    "current": ("debian12", "current", "current", {}, ["site", "verify", "report", "remove"]),
    "legacy": ("ubuntu1604", "legacy", "legacy", {"ansible_python_interpreter": "/usr/bin/python2.7"},
               ["site", "verify"]),
}


def log(msg):
    sys.stderr.write("run_jobs: %s\n" % msg)
    sys.stderr.flush()


def run(cmd, **kw):
    kw.setdefault("check", True)
    if "stdout" not in kw and not kw.get("capture_output"):
        kw["stdout"] = sys.stderr
    return subprocess.run(cmd, **kw)


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def copy_project(dest):
    """The checkout's tracked and new (not ignored) files: what a project sync gets."""
    out = run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
              capture_output=True).stdout
    for rel in sorted(set(p for p in out.decode().split("\0") if p)):
        src = os.path.join(ROOT, rel)
        if not os.path.lexists(src):
            continue  # deleted in the working tree
        dst = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)


def private_data_dir(name, scenario, state, image):
    guest, _ee, group, host_vars, _books = SCENARIOS[scenario]
    pdd = os.path.join(WORK, "jobs", name)
    shutil.rmtree(pdd, ignore_errors=True)
    copy_project(os.path.join(pdd, "project"))
    # The fleet's host keys, kept with the inventory in the project.
    with open(state["known_hosts"]) as f:
        write(os.path.join(pdd, "project", KNOWN_HOSTS), f.read())
    hv = {"ansible_host": "127.0.0.1", "ansible_port": state["port"]}
    hv.update(host_vars)
    inventory = {"all": {"children": {group: {"hosts": {name: hv}}}, "vars": GROUP_VARS}}
    write(os.path.join(pdd, "inventory", "hosts"), json.dumps(inventory, indent=1) + "\n")
    with open(state["key"]) as f:
        write(os.path.join(pdd, "env", "ssh_key"), f.read(), 0o600)
    write(os.path.join(pdd, "env", "cmdline"), "-u root\n")
    settings = {
        "process_isolation": True,
        "process_isolation_executable": "podman",
        "container_image": image,
        # Host network: the guest's SSH port is on the host's loopback. root:
        # runner (run by root here) makes the artifact directories root's, and
        # the image's user 1000 could not write them (AWX's own pods run as
        # 1000 in a directory that user owns).
        "container_options": ["--network=host", "--user=root"],
        "suppress_ansible_output": True,
    }
    write(os.path.join(pdd, "env", "settings"), json.dumps(settings, indent=1) + "\n")
    return pdd


def events(pdd, ident):
    out = []
    for path in glob.glob(os.path.join(pdd, "artifacts", ident, "job_events", "*.json")):
        with open(path) as f:
            out.append(json.load(f))
    return sorted(out, key=lambda e: e.get("counter", 0))


def stats(evs):
    for e in evs:
        if e.get("event") == "playbook_on_stats":
            return e["event_data"]
    raise AssertionError("no playbook_on_stats event")


def run_job(pdd, book, survey, ident=None):
    ident = ident or book
    write(os.path.join(pdd, "env", "extravars"), json.dumps(survey) + "\n")
    cmd = [os.path.join(VENV_AWX, "bin", "ansible-runner"), "run", pdd,
           "-p", "playbooks/%s.yml" % book, "--ident", ident]
    t0 = time.time()
    proc = run(cmd, check=False, capture_output=True, text=True)
    seconds = time.time() - t0
    art = os.path.join(pdd, "artifacts", ident)
    rc = status = None
    if os.path.exists(os.path.join(art, "rc")):
        with open(os.path.join(art, "rc")) as f:
            rc = int(f.read().strip())
    if os.path.exists(os.path.join(art, "status")):
        with open(os.path.join(art, "status")) as f:
            status = f.read().strip()
    return {"playbook": book + ".yml", "seconds": round(seconds, 1), "rc": rc, "status": status,
            "runner_rc": proc.returncode, "stdout": os.path.join(art, "stdout"),
            "runner_output": (proc.stdout + proc.stderr)[-2000:]}


def check_site(pdd, name, book):
    st = stats(events(pdd, book))
    assert not st.get("failures") and not st.get("dark"), st
    assert st.get("changed", {}).get(name, 0) > 0, "site.yml changed nothing on a fresh guest: %s" % st
    return "changed %d, failed 0" % st["changed"][name]


VERIFY_TASK = "Verify TOA on the host in one module run (state, checks, end-to-end probe)"


def check_verify(pdd, name, book):
    evs = events(pdd, book)
    st = stats(evs)
    assert not st.get("failures") and not st.get("dark"), st
    assert not st.get("changed", {}).get(name), "verify.yml changed the host: %s" % st
    # toa_verify (roles/toa/tasks/verify_host.yml) returns the probes it ran
    verified = [e["event_data"]["res"] for e in evs if e.get("event") == "runner_on_ok"
                and e["event_data"].get("task") == VERIFY_TASK]
    assert len(verified) == 1, "expected one toa_verify result, found %d" % len(verified)
    results = verified[0]["probes"]
    families = sorted(r["family"] for r in results)
    assert families, "no family probed"
    seen = []
    for r in results:
        assert r.get("matches") is True and r.get("peer_address") == r.get("toa_address"), r
        seen.append("%s %s" % (r["family"], r["peer_address"]))
    return "probes: " + ", ".join(seen)


def check_report(pdd, name, book):
    path = os.path.join(pdd, "project", "reports", "toa-report.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["host"] for r in rows] == [name], rows
    row = rows[0]
    assert row["status"] == "working", row
    assert row["route"].startswith("module"), row
    assert row["probe"].startswith("rewritten"), row
    return "report row: %s, %s, %s" % (row["status"], row["route"], row["probe"])


def check_remove(pdd, name, book):
    st = stats(events(pdd, book))
    assert not st.get("failures") and not st.get("dark"), st
    modules = run(["python3", TOAVM, "ssh", name, "--", "cat", "/proc/modules"],
                  capture_output=True, text=True).stdout
    assert not [line for line in modules.splitlines() if line.startswith("toa ")], \
        "toa still loaded after remove.yml"
    assert "\n" in modules, "could not read /proc/modules from the guest"
    return "toa not loaded after removal"


def check_hostkey_refused(pdd, name, book):
    """A job whose known_hosts holds another key must not reach the host."""
    with open(os.path.join(pdd, "artifacts", book, "stdout"), errors="replace") as f:
        out = f.read()
    st = stats(events(pdd, book))
    assert st.get("dark", {}).get(name), "the host was not unreachable: %s" % st
    assert "Host key verification failed" in out, "ssh did not refuse the key"
    return "refused: UNREACHABLE, Host key verification failed"


def hostkey_job(pdd, name, results, scenario, guest, ee_tag):
    """verify.yml with a known_hosts naming a key the guest does not have."""
    other = os.path.join(pdd, "wrongkey")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other], stdin=subprocess.DEVNULL)
    with open(os.path.join(pdd, "project", KNOWN_HOSTS)) as f:
        good = f.read()
    with open(other + ".pub") as f:
        wrong_key = f.read().split()[:2]
    lines = [ln if ln.startswith("#") or not ln.strip() else "%s %s %s" % (ln.split()[0], *wrong_key)
             for ln in good.splitlines()]
    write(os.path.join(pdd, "project", KNOWN_HOSTS), "\n".join(lines) + "\n")
    try:
        job = run_job(pdd, "verify", SURVEYS["verify"], ident="hostkey")
    finally:
        write(os.path.join(pdd, "project", KNOWN_HOSTS), good)
        os.unlink(other)
        os.unlink(other + ".pub")
    job.update(scenario=scenario, guest=guest, ee=ee_tag, playbook="verify.yml, another host key")
    if job["rc"] == 0 or job["status"] != "failed":
        job["result"] = "FAILED: the job ran with a wrong host key (rc %s, status %s)" % (job["rc"], job["status"])
    else:
        try:
            job["result"] = check_hostkey_refused(pdd, name, "hostkey")
        except AssertionError as e:
            job["result"] = "FAILED check: %s" % e
    job["passed"] = not job["result"].startswith("FAILED")
    log("%s hostkey in %s: %.0f s, %s" % (scenario, ee_tag, job["seconds"], job["result"]))
    results.append(job)
    return job["passed"]


CHECKS = {"site": check_site, "verify": check_verify, "report": check_report, "remove": check_remove}


def run_scenario(scenario, images, prefix, results):
    guest, ee, _group, _hv, books = SCENARIOS[scenario]
    name = prefix + guest
    t0 = time.time()
    up = run(["python3", TOAVM, "up", name, "--guest", guest], capture_output=True, text=True, check=False)
    if up.returncode != 0:
        raise SystemExit("run_jobs: guest %s did not start:\n%s" % (name, up.stderr[-2000:]))
    log("guest %s up in %.0f s" % (name, time.time() - t0))
    ok = True
    try:
        state = json.loads(up.stdout)
        state["known_hosts"] = os.path.join(CACHE, "run", name, "known_hosts")
        pdd = private_data_dir(name, scenario, state, images[ee]["image"])
        ok = hostkey_job(pdd, name, results, scenario, guest, images[ee]["tag"])
        for book in books if ok else []:
            job = run_job(pdd, book, SURVEYS[book])
            job.update(scenario=scenario, guest=guest, ee=images[ee]["tag"])
            if job["rc"] != 0 or job["status"] != "successful":
                job["result"] = "FAILED: rc %s, status %s (see %s)" % (job["rc"], job["status"], job["stdout"])
                log(job["runner_output"])
            else:
                try:
                    job["result"] = CHECKS[book](pdd, name, book)
                except AssertionError as e:
                    job["result"] = "FAILED check: %s" % e
            job["passed"] = not job["result"].startswith("FAILED")
            ok = ok and job["passed"]
            log("%s %s in %s: %.0f s, %s" % (scenario, book, job["ee"], job["seconds"], job["result"]))
            results.append(job)
            if not job["passed"]:
                break
    finally:
        run(["python3", TOAVM, "down", name], check=False)
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), action="append",
                    help="run only this scenario (repeatable; default: current, then legacy)")
    ap.add_argument("--prefix", default="awx-", help="guest name prefix (default awx-)")
    args = ap.parse_args(argv)
    scenarios = args.scenario or ["current", "legacy"]
    needed = sorted(set(SCENARIOS[s][1] for s in scenarios))
    build = run(["python3", os.path.join(ROOT, "tools", "build_ee.py"), "--local-base"]
                + sum((["--ee", e] for e in needed), []), capture_output=True, text=True, check=False)
    sys.stderr.write(build.stderr[-3000:])
    if build.returncode != 0:
        raise SystemExit("run_jobs: building the execution environments failed")
    images = json.loads(build.stdout)
    os.environ["CONTAINERS_CONF"] = images["containers_conf"]  # for ansible-runner's podman
    results = []
    ok = True
    for scenario in scenarios:
        ok = run_scenario(scenario, images, args.prefix, results) and ok
    os.makedirs(WORK, exist_ok=True)
    with open(os.path.join(WORK, "results.json"), "w") as f:
        json.dump({"images": images, "jobs": results}, f, indent=1)
    print("| scenario | EE | playbook | wall time | result |")
    print("|---|---|---|---|---|")
    for j in results:
        print("| %s (%s) | %s | %s | %.0f s | %s |" % (j["scenario"], j["guest"], j["ee"], j["playbook"],
                                                          j["seconds"], j["result"]))
    if not ok:
        raise SystemExit("run_jobs: FAILED")


if __name__ == "__main__":
    main()
