"""tools/toa_buildroot.py: recipe key, debootstrap command, mount and unmount plans, cleanup."""

import copy
import os
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "testbed"))

import toa_buildroot as tb  # noqa: E402


def test_the_keyring_pin_is_the_test_beds():
    import toavm
    assert (tb.UBUNTU, tb.UBUNTU_KEYRING_DEB, tb.UBUNTU_KEYRING_SHA256) == (
        toavm.UBUNTU, toavm.UBUNTU_KEYRING_DEB, toavm.UBUNTU_KEYRING_SHA256)


def test_the_xenial_root_comes_from_the_guests_archive_with_every_pocket():
    import toavm
    recipe = tb.RECIPES["xenial"]
    assert recipe["mirror"] == toavm.GUESTS["ubuntu1604"]["mirror"]
    assert recipe["suite"] == toavm.GUESTS["ubuntu1604"]["suite"]
    assert tb.sources_list(recipe) == (
        "deb http://archive.ubuntu.com/ubuntu xenial main\n"
        "deb http://archive.ubuntu.com/ubuntu xenial-updates main\n"
        "deb http://archive.ubuntu.com/ubuntu xenial-security main\n")
    for needed in ("gcc", "make", "bc", "libelf-dev", "libssl-dev", "kmod", "fakeroot", "dpkg-dev", "python3",
                   "perl", "bzip2"):
        assert needed in recipe["packages"]


def test_debootstrap_command():
    argv = tb.debootstrap_argv(tb.RECIPES["xenial"], "/r/x", "/k/ubuntu.gpg")
    assert argv == ["debootstrap", "--variant=minbase", "--arch=amd64", "--components=main",
                    "--keyring=/k/ubuntu.gpg", "xenial", "/r/x", "http://archive.ubuntu.com/ubuntu"]


def test_the_recipe_key_follows_the_recipe(monkeypatch):
    key = tb.recipe_key("xenial")
    assert key == tb.recipe_key("xenial") and len(key) == 16
    assert tb.root_path("xenial", "/c/roots") == "/c/roots/xenial-" + key
    changed = copy.deepcopy(tb.RECIPES)
    changed["xenial"]["packages"] = changed["xenial"]["packages"] + ["flex"]
    monkeypatch.setattr(tb, "RECIPES", changed)
    assert tb.recipe_key("xenial") != key
    with pytest.raises(tb.BuildrootError, match="unknown build root suite 'jessie'; known: xenial"):
        tb.recipe_key("jessie")


def test_mount_plan_proc_dev_then_binds_at_the_same_path():
    plan = tb.mount_plan("/c/roots/x", ["/work/tools/kernel-recipes", "/srv/kbuild", "/work/tools"])
    assert plan == [
        (["mount", "-t", "proc", "proc", "/c/roots/x/proc"], "/c/roots/x/proc"),
        (["mount", "--bind", "/dev", "/c/roots/x/dev"], "/c/roots/x/dev"),
        (["mount", "--bind", "/dev/pts", "/c/roots/x/dev/pts"], "/c/roots/x/dev/pts"),
        # parents first; a directory inside a bound one is visible through it already
        (["mount", "--bind", "/srv/kbuild", "/c/roots/x/srv/kbuild"], "/c/roots/x/srv/kbuild"),
        (["mount", "--bind", "/work/tools", "/c/roots/x/work/tools"], "/c/roots/x/work/tools"),
    ]
    assert tb.unmount_plan([t for _argv, t in plan]) == [
        ["umount", "/c/roots/x/work/tools"], ["umount", "/c/roots/x/srv/kbuild"],
        ["umount", "/c/roots/x/dev/pts"], ["umount", "/c/roots/x/dev"], ["umount", "/c/roots/x/proc"]]


@pytest.mark.parametrize("bind, why", [
    ("/", "the whole host would be writable inside"), ("/c/roots/x/tmp", "is inside the root /c/roots/x itself"),
    ("/c", "holds the root /c/roots/x"), ("relative/dir", "give an absolute path"),
])
def test_mount_plan_refuses_binds_that_would_loop_or_expose_everything(bind, why):
    with pytest.raises(tb.BuildrootError) as err:
        tb.mount_plan("/c/roots/x", ["/srv/ok", bind])
    assert why in str(err.value)


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 0:5 / /c/roots/x/proc rw - proc proc rw
91 22 0:6 / /c/roots/x/dev rw - devtmpfs udev rw
92 91 0:7 / /c/roots/x/dev/pts rw - devpts devpts rw
93 22 8:1 /srv/my\\040dir /c/roots/x/srv/my\\040dir rw - ext4 /dev/sda1 rw
94 22 0:5 / /c/roots/xy/proc rw - proc proc rw
"""


def test_mounts_under_a_root_deepest_first_and_not_its_neighbours():
    assert tb.mounts_under("/c/roots/x", MOUNTINFO) == [
        "/c/roots/x/dev/pts", "/c/roots/x/srv/my dir", "/c/roots/x/dev", "/c/roots/x/proc"]
    assert tb.mounts_under("/c/roots/z", MOUNTINFO) == []


class FakeSystem:
    """subprocess.run and Popen recorded; the command's exit code or a signal on wait."""

    def __init__(self, monkeypatch, rc=0, stop_with=None, fail_mount=None):
        self.calls = []
        self.rc = rc
        self.stop_with = stop_with
        self.fail_mount = fail_mount
        self.terminated = False
        monkeypatch.setattr(tb.subprocess, "run", self.run)
        monkeypatch.setattr(tb.subprocess, "Popen", self.popen)
        monkeypatch.setattr(tb.os, "geteuid", lambda: 0)
        monkeypatch.setattr(tb, "mounts_under", lambda root, text=None: [])

    def run(self, argv, **kw):
        self.calls.append(list(argv))
        if argv[0] == "mount" and self.fail_mount and argv[-1].endswith(self.fail_mount):
            if kw.get("check"):
                raise subprocess.CalledProcessError(32, argv)
            return subprocess.CompletedProcess(argv, 32)
        return subprocess.CompletedProcess(argv, 0)

    def popen(self, argv, **kw):
        self.calls.append(list(argv))
        fake = self

        class Proc:
            def wait(self, timeout=None):
                if fake.stop_with and not fake.terminated:
                    raise tb._Stop(fake.stop_with)
                return fake.rc

            def poll(self):
                return None if not fake.terminated else -15

            def terminate(self):
                fake.terminated = True

            def kill(self):
                fake.terminated = True
        return Proc()

    def mounted(self):
        return [c[-1] for c in self.calls if c[0] == "mount"]

    def unmounted(self):
        return [c[-1] for c in self.calls if c[0] == "umount"]


@pytest.fixture
def root(tmp_path, monkeypatch):
    r = tmp_path / "roots" / "xenial-k"
    (r / "etc").mkdir(parents=True)
    (r / tb.INFO).write_text("{}\n")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.53\n")
    monkeypatch.setattr(tb, "HOST_RESOLV", str(resolv))
    return str(r)


def test_run_mounts_runs_in_chroot_and_unmounts_in_reverse(root, monkeypatch, tmp_path):
    fake = FakeSystem(monkeypatch, rc=3)
    work = str(tmp_path / "work")
    assert tb.run_in_root(root, ["make", "-v"], [work]) == 3
    chroot = [c for c in fake.calls if c[0] == "chroot"]
    assert chroot == [["chroot", root, "make", "-v"]]
    assert fake.mounted() == [root + "/proc", root + "/dev", root + "/dev/pts", root + work]
    assert fake.unmounted() == list(reversed(fake.mounted()))
    assert os.path.isdir(root + work)
    with open(os.path.join(root, "etc", "resolv.conf")) as f:
        assert f.read() == "nameserver 192.0.2.53\n"


def test_a_failed_mount_unmounts_what_was_mounted(root, monkeypatch):
    fake = FakeSystem(monkeypatch, fail_mount="/dev/pts")
    with pytest.raises(tb.BuildrootError, match="mount --bind /dev/pts .* failed"):
        tb.run_in_root(root, ["true"])
    assert not [c for c in fake.calls if c[0] == "chroot"]
    assert fake.unmounted() == [root + "/dev", root + "/proc"]


def test_a_signal_stops_the_command_and_unmounts(root, monkeypatch):
    fake = FakeSystem(monkeypatch, stop_with=signal.SIGTERM)
    before = signal.getsignal(signal.SIGTERM)
    assert tb.run_in_root(root, ["sleep", "100"]) == 128 + signal.SIGTERM
    assert fake.terminated
    assert fake.unmounted() == [root + "/dev/pts", root + "/dev", root + "/proc"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_busy_mount_is_unmounted_lazily(root, monkeypatch):
    fake = FakeSystem(monkeypatch)
    calls = []

    def run(argv, **kw):
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 0 if argv[:2] == ["umount", "-l"] else 32)
    monkeypatch.setattr(tb.subprocess, "run", run)
    assert tb.unmount_all(["/r/proc"], say=fake.calls.append) == []
    assert calls == [["umount", "/r/proc"], ["umount", "-l", "/r/proc"]]


def test_run_refuses_an_unfinished_root_and_a_non_root_user(tmp_path, monkeypatch):
    with pytest.raises(tb.BuildrootError, match="is not a finished build root"):
        tb.run_in_root(str(tmp_path), ["true"])
    (tmp_path / "etc").mkdir()
    (tmp_path / tb.INFO).write_text("{}")
    monkeypatch.setattr(tb.os, "geteuid", lambda: 1000)
    with pytest.raises(tb.BuildrootError, match="needs root"):
        tb.run_in_root(str(tmp_path), ["true"])


def test_a_root_with_mounts_left_is_never_deleted(tmp_path, monkeypatch):
    root = tmp_path / "x"
    (root / "srv").mkdir(parents=True)
    monkeypatch.setattr(tb, "mounts_under", lambda path, text=None: [str(root / "srv")])
    monkeypatch.setattr(tb, "unmount_all", lambda targets, say=None: list(targets))
    with pytest.raises(tb.BuildrootError, match="still has mounts; not deleting it"):
        tb.remove_root(str(root))
    assert root.is_dir()


def test_ensure_returns_a_finished_root_without_making_it(tmp_path, monkeypatch):
    def refuse(*_args, **_kw):
        pytest.fail("made a root that exists")
    monkeypatch.setattr(tb, "make_root", refuse)  # (first: the key hashes make_root's code)
    path = tb.root_path("xenial", str(tmp_path))
    os.makedirs(os.path.join(path, "etc"))
    with open(os.path.join(path, tb.INFO), "w") as f:
        f.write("{}")
    assert tb.ensure_root("xenial", str(tmp_path)) == path


def test_run_command_needs_a_command(capsys):
    with pytest.raises(SystemExit):
        tb.main(["run", "/nonexistent", "--"])
    assert "give the command after --" in capsys.readouterr().err


def test_a_second_command_waits_for_the_first_and_never_clears_its_mounts(root, monkeypatch):
    import fcntl
    import threading
    fake = FakeSystem(monkeypatch)
    cleared = []
    monkeypatch.setattr(tb, "clear_stale_mounts", lambda r, say=None: cleared.append(r) or [])
    said = []
    holder = open(os.path.join(root, tb.LOCK), "w")
    fcntl.flock(holder, fcntl.LOCK_EX)  # a first command runs
    release = threading.Timer(0.5, holder.close)
    release.start()
    assert tb.run_in_root(root, ["true"], say=said.append) == 0
    release.join()
    assert said == ["another command runs in %s: waiting for it" % root]
    assert cleared == [root] and [c for c in fake.calls if c[0] == "chroot"]


def test_run_from_the_command_line_binds_and_runs_what_follows_the_dashes(root, monkeypatch, tmp_path):
    fake = FakeSystem(monkeypatch, rc=4)
    shared = str(tmp_path / "shared")
    assert tb.main(["run", root, "--bind", shared, "--", "sh", "-c", "exit 4", "--bind"]) == 4
    assert [c for c in fake.calls if c[0] == "chroot"] == [["chroot", root, "sh", "-c", "exit 4", "--bind"]]
    assert root + shared in fake.mounted()


def test_missing_tools_are_looked_up_on_the_roots_path(tmp_path):
    for directory, tool, mode in (("usr/bin", "gcc", 0o755), ("sbin", "depmod", 0o755), ("usr/bin", "perl", 0o644)):
        path = tmp_path / directory / tool
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(mode)
    assert tb.missing_tools(str(tmp_path), ("gcc", "depmod", "perl", "openssl")) == ["perl", "openssl"]
    assert "openssl" in tb.BUILD_TOOLS and "openssl" in tb.RECIPES["xenial"]["packages"]
