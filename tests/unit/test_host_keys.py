"""SSH host keys in the test bed: recorded per guest, checked strictly everywhere.

testbed/toavm.py generates each guest's host key at `up`, records it in
$TOA_CACHE/run/NAME/known_hosts and hands the private key to the guest on a
small virtio disk.  These tests hold the pieces that decide whether checking
really happens: the known_hosts line ssh looks up for a loopback port, the
options each client gets (toavm, the local inventory, Molecule, the bench),
the key disk QEMU gets, and the message when a key does not match.  The guest
proof (a real refusal by ssh and by Ansible) is in docs/testing.md.
"""

import importlib.util
import json
import os
import shlex
import subprocess
import sys

import pytest
import yaml

from role_tasks import render

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


toavm = _load("toavm", "testbed/toavm.py")
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench  # noqa: E402

PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPl2R34PvFGVwu2OTl2BD0t6m+rcjUy2PnprxUBkSxSC toa-testbed-g"


def options(argv):
    """{option: value} of the -o options in an ssh argument list or string."""
    if isinstance(argv, str):
        argv = shlex.split(argv)
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-o")


# --------------------------------------------------------------- known_hosts

def test_known_hosts_line_brackets_a_port_other_than_22():
    # ssh looks up a host on another port as [HOST]:PORT; the comment is dropped.
    assert toavm.known_hosts_line("127.0.0.1", 40123, PUB) == (
        "[127.0.0.1]:40123 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPl2R34PvFGVwu2OTl2BD0t6m+rcjUy2PnprxUBkSxSC\n")
    assert toavm.known_hosts_line("127.0.0.1", "22", PUB).startswith("127.0.0.1 ssh-ed25519 AAAA")


def test_known_hosts_line_refuses_what_is_not_a_public_key():
    for bad in ("", "AAAAC3Nza", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn"):
        with pytest.raises(ValueError, match="not an OpenSSH public key"):
            toavm.known_hosts_line("127.0.0.1", 40123, bad)


def test_known_hosts_file_says_what_to_do_and_holds_one_key():
    text = toavm.known_hosts_text("hk-1", "ubuntu1604", 40123, PUB)
    lines = text.splitlines()
    keys = [ln for ln in lines if not ln.startswith("#")]
    assert keys == ["[127.0.0.1]:40123 ssh-ed25519 " + PUB.split()[1]]
    comment = "\n".join(ln for ln in lines if ln.startswith("#"))
    assert "toavm.py down hk-1 && testbed/toavm.py up hk-1 --guest ubuntu1604" in comment
    assert "port 40123" in comment


def test_make_host_key_records_the_key_the_disk_carries(tmp_path, monkeypatch):
    monkeypatch.setattr(toavm, "RUN", str(tmp_path))
    d = tmp_path / "g"
    d.mkdir()
    disk, kh = toavm.make_host_key(str(d), "g", "debian12", 40123)
    assert kh == str(tmp_path / "g" / "known_hosts") == toavm.known_hosts_path("g")
    raw = open(disk, "rb").read()
    assert len(raw) == toavm.HOSTKEY_DISK_SIZE and oct(os.stat(disk).st_mode & 0o777) == "0o600"
    # What the guest's unit does: drop the padding, derive the public key.
    secret = raw.rstrip(b"\0")
    assert secret.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    key = tmp_path / "k"
    key.write_bytes(secret)
    key.chmod(0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True,
                             check=True).stdout.split()
    recorded = [ln.split() for ln in open(kh).read().splitlines() if not ln.startswith("#")]
    assert recorded == [["[127.0.0.1]:40123"] + derived[:2]]
    # No second copy of the private key is left beside the disk.
    assert sorted(os.listdir(d)) == ["hostkey.disk", "known_hosts", "ssh_host_ed25519_key.pub"]
    # A second `up` of the same name gets a new key.
    toavm.make_host_key(str(d), "g", "debian12", 40124)
    assert open(disk, "rb").read().rstrip(b"\0") != secret


def test_guest_script_reads_the_disk_the_host_writes():
    # The serial QEMU gives the disk is the one the image's unit looks for.
    assert "= %s ]" % toavm.HOSTKEY_SERIAL in toavm.HOSTKEY_SCRIPT
    assert "tr -d '\\000'" in toavm.HOSTKEY_SCRIPT
    assert "Before=ssh.service ssh.socket sshd.service" in toavm.HOSTKEY_UNIT


# --------------------------------------------------------------- toavm's own ssh and scp

STATE = {"name": "hk-1", "guest": "debian12", "port": 40123, "key": "/c/ssh/id_ed25519"}


def test_ssh_and_scp_check_the_recorded_key_strictly(tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("[127.0.0.1]:40123 ssh-ed25519 AAAA\n")
    state = dict(STATE, known_hosts=str(kh))
    for argv in (toavm.ssh_base(state), toavm.scp_base(state)):
        opts = options(argv)
        assert opts["StrictHostKeyChecking"] == "yes"
        assert opts["UserKnownHostsFile"] == str(kh)
        assert opts["GlobalKnownHostsFile"] == "/dev/null"
        assert "no" not in opts.values() and "/dev/null" != opts["UserKnownHostsFile"]
    assert toavm.ssh_base(state)[-1] == "root@127.0.0.1"
    scp = toavm.scp_base(state)
    assert scp[scp.index("-P") + 1] == "40123" and scp[scp.index("-i") + 1] == "/c/ssh/id_ed25519"


def test_a_guest_without_a_recorded_key_is_refused_not_unchecked(tmp_path):
    for state in (dict(STATE), dict(STATE, known_hosts=str(tmp_path / "missing"))):
        with pytest.raises(SystemExit, match="no recorded SSH host key.*toavm.py down hk-1"):
            toavm.ssh_base(state)


def test_a_refused_host_key_gets_a_message_naming_what_to_do(tmp_path):
    kh = tmp_path / "known_hosts"
    kh.write_text("x\n")
    state = dict(STATE, known_hosts=str(kh))
    stderr = ("@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
              "Host key for [127.0.0.1]:40123 has changed and you have requested strict checking.\n"
              "Host key verification failed.\n")
    msg = toavm.host_key_refused(state, stderr)
    assert "port 40123" in msg and str(kh) in msg
    assert "toavm.py down hk-1" in msg and "toavm.py up hk-1 --guest debian12" in msg
    assert toavm.host_key_refused(state, "Connection refused") is None
    assert toavm.host_key_refused(state, None) is None


def test_waiting_for_ssh_stops_at_a_refused_key(tmp_path, monkeypatch):
    kh = tmp_path / "known_hosts"
    kh.write_text("x\n")
    state = dict(STATE, known_hosts=str(kh))
    refused = subprocess.CompletedProcess([], 255, "", "Host key verification failed.\n")
    monkeypatch.setattr(toavm.subprocess, "run", lambda *a, **k: refused)
    with pytest.raises(SystemExit, match="not the one recorded"):
        toavm.ssh_ok(state)
    down = subprocess.CompletedProcess([], 255, "", "Connection refused\n")
    monkeypatch.setattr(toavm.subprocess, "run", lambda *a, **k: down)
    assert toavm.ssh_ok(state) is False


def test_qemu_hands_the_key_disk_in_read_only_and_boots_the_root_disk():
    cmd = toavm.qemu_cmd("/run/g", "/run/g/o.qcow2", 2222, "tcg", 1024, 2, hostkey_disk="/run/g/hostkey.disk")
    drives = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-drive"]
    assert drives[0].startswith("file=/run/g/o.qcow2,if=none,id=root,")
    assert drives[1] == "file=/run/g/hostkey.disk,if=none,id=toahostkey,format=raw,readonly=on"
    devices = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-device"]
    # SeaBIOS boots the first disk only: the root disk is named first by bootindex.
    assert "virtio-blk-pci,drive=root,bootindex=0" in devices
    assert "virtio-blk-pci,drive=toahostkey,serial=toa-hostkey" in devices
    assert "-drive" in toavm.qemu_cmd("/run/g", "/o", 2222, "tcg", 1024, 2)
    assert not any("toahostkey" in a for a in toavm.qemu_cmd("/run/g", "/o", 2222, "tcg", 1024, 2))


def test_the_image_key_covers_the_guest_side(monkeypatch):
    # A change to the unit or its script must build new images.
    monkeypatch.setattr(toavm, "ensure_key", lambda: "ssh-ed25519 AAAA client")
    before = toavm.image_key("debian12")
    monkeypatch.setattr(toavm, "HOSTKEY_SCRIPT", toavm.HOSTKEY_SCRIPT + "# changed\n")
    assert toavm.image_key("debian12") != before
    monkeypatch.undo()
    monkeypatch.setattr(toavm, "ensure_key", lambda: "ssh-ed25519 AAAA client")
    monkeypatch.setattr(toavm, "HOSTKEY_UNIT", toavm.HOSTKEY_UNIT.replace("oneshot", "simple"))
    assert toavm.image_key("debian12") != before


# --------------------------------------------------------------- the local inventory

def run_inventory(cache, *args):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "inventories", "local", "toavm_guests.py")]
                          + list(args), capture_output=True, text=True, check=True,
                          env=dict(os.environ, TOA_CACHE=str(cache)))
    return json.loads(proc.stdout)


def test_inventory_checks_each_guest_against_its_own_file(tmp_path):
    for name, port in (("g1", 40001), ("g2", 40002)):
        d = tmp_path / "run" / name
        d.mkdir(parents=True)
        (d / "state.json").write_text(json.dumps({"pid": os.getpid(), "port": port, "key": "/k",
                                                  "guest": "debian12"}))
    hostvars = run_inventory(tmp_path)["_meta"]["hostvars"]
    for name in ("g1", "g2"):
        opts = options(hostvars[name]["ansible_ssh_common_args"])
        assert opts == {"UserKnownHostsFile": str(tmp_path / "run" / name / "known_hosts"),
                        "GlobalKnownHostsFile": "/dev/null",
                        "StrictHostKeyChecking": "yes"}
    assert run_inventory(tmp_path, "--host", "g2") == hostvars["g2"]


def test_inventory_refuses_a_path_ssh_would_split():
    inv = _load("toavm_guests", "inventories/local/toavm_guests.py")
    with pytest.raises(ValueError, match="unusable"):
        inv.ssh_common_args("/a b/known_hosts")


def test_project_config_leaves_host_key_checking_on():
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "ansible.cfg"))
    for section in cfg.sections():
        assert "host_key_checking" not in cfg[section]
        assert "StrictHostKeyChecking=no" not in " ".join(cfg[section].values())


# --------------------------------------------------------------- Molecule and the bench

def test_molecule_checks_the_guest_create_yml_started(monkeypatch):
    with open(os.path.join(ROOT, ".config", "molecule", "config.yml")) as f:
        base = yaml.safe_load(f)
    assert "host_key_checking" not in base["ansible"]["cfg"]["defaults"]
    opts = options(" ".join(base["driver"]["ssh_connection_options"]))
    assert opts["StrictHostKeyChecking"] == "yes" and opts["GlobalKnownHostsFile"] == "/dev/null"
    assert opts["UserKnownHostsFile"] == "{{toa_testbed_known_hosts}}"
    expr = base["provisioner"]["inventory"]["group_vars"]["all"]["toa_testbed_known_hosts"]
    # The guest name create.yml gives the instance.
    with open(os.path.join(ROOT, "molecule", "shared", "create.yml")) as f:
        assert '"{{ guest_prefix }}{{ run_id }}-{{ item.name }}"' in f.read()
    monkeypatch.setenv("MOLECULE_SCENARIO_NAME", "default")
    monkeypatch.setenv("TOA_CACHE", "/srv/cache")
    assert render(expr, inventory_hostname="debian12") == "/srv/cache/run/molecule-default-debian12/known_hosts"
    monkeypatch.delenv("TOA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "/x")
    assert render(expr, inventory_hostname="d") == "/x/toa-fleet/run/molecule-default-d/known_hosts"
    # A guest prefix other than molecule- (create.yml names the guest with it).
    monkeypatch.setenv("TOA_MOLECULE_GUEST_PREFIX", "eb-")
    assert render(expr, inventory_hostname="d") == "/x/toa-fleet/run/eb-default-d/known_hosts"
    monkeypatch.delenv("TOA_MOLECULE_GUEST_PREFIX")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", "/home/u")
    assert render(expr, inventory_hostname="d") == "/home/u/.cache/toa-fleet/run/molecule-default-d/known_hosts"


def test_bench_aliases_share_the_guest_key_strictly():
    state = {"name": "b", "port": 40000, "key": "/k", "known_hosts": "/c/run/b/known_hosts"}
    for host in bench.alias_inventory(state, 3, "a", "/tmp/cp")["all"]["hosts"].values():
        opts = options(host["ansible_ssh_common_args"])
        assert opts["StrictHostKeyChecking"] == "yes"
        assert opts["UserKnownHostsFile"] == "/c/run/b/known_hosts"
    with pytest.raises(ValueError, match="no recorded host key"):
        bench.alias_inventory({"port": 40000, "key": "/k"}, 1, "a")


def test_baseline_needs_the_known_hosts_file(tmp_path):
    proc = subprocess.run(["bash", os.path.join(ROOT, "bench", "baseline.sh"), "40000", "/k"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "KNOWN_HOSTS" in proc.stderr
    proc = subprocess.run(["bash", os.path.join(ROOT, "bench", "baseline.sh"), "40000", "/k",
                           str(tmp_path / "none")], capture_output=True, text=True)
    assert proc.returncode == 2 and "no recorded host key" in proc.stderr


def test_toavm_ssh_passes_stderr_on_and_explains_a_refused_key(tmp_path, capfd):
    kh = tmp_path / "known_hosts"
    kh.write_text("x\n")
    state = dict(STATE, known_hosts=str(kh))
    fake = ["sh", "-c", "echo out; echo 'Host key verification failed.' >&2; exit 255"]
    assert toavm.run_explained(state, fake) == 255
    out, err = capfd.readouterr()
    assert out == "out\n"
    assert err.startswith("Host key verification failed.\n")
    assert "toavm: guest hk-1: the SSH host key on port 40123 is not the one recorded" in err
    # Any other failure, or the remote command's own exit code, is passed on unexplained.
    assert toavm.run_explained(state, ["sh", "-c", "echo 'Connection refused' >&2; exit 255"]) == 255
    assert toavm.run_explained(state, ["sh", "-c", "echo 'Host key verification failed.' >&2; exit 3"]) == 3
    assert "toavm:" not in capfd.readouterr().err


def test_failure_cases_inventory_checks_the_recorded_key(tmp_path):
    # molecule/failures/cases.py writes its own INI inventory for site.yml runs.
    cases = _load("cases", "molecule/failures/cases.py")
    kh = tmp_path / "known_hosts"
    kh.write_text("[127.0.0.1]:40123 ssh-ed25519 AAAA\n")
    guest = object.__new__(cases.Guest)
    guest.name, guest.state = "molecule-failures-debian12", dict(STATE, known_hosts=str(kh))
    path = guest.inventory(str(tmp_path))
    program = os.path.join(os.path.dirname(sys.executable), "ansible-inventory")
    proc = subprocess.run([program if os.path.exists(program) else "ansible-inventory", "-i", path, "--list"],
                          capture_output=True, text=True, check=True)
    host = json.loads(proc.stdout)["_meta"]["hostvars"]["molecule-failures-debian12"]
    assert options(host["ansible_ssh_common_args"]) == {
        "UserKnownHostsFile": str(kh), "GlobalKnownHostsFile": "/dev/null", "StrictHostKeyChecking": "yes"}
    assert "HOST_KEY_CHECKING" not in open(os.path.join(ROOT, "molecule", "failures", "cases.py")).read()
