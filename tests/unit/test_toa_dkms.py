"""toa_dkms: dkms status parsing per dkms generation and the command sequences."""

import os
import shutil

import pytest
import toa_dkms
import toa_host

DKMS = "/usr/sbin/dkms"
KERNEL = "6.1.0-18-amd64"
REF = "toa/1.0.0"


class FakeDkms:
    """A stateful dkms: `status` prints in the style of dkms 2.x or 3.x."""

    def __init__(self, root, style, fake_commands):
        self.root = root
        self.style = style
        self.kernels = {}
        self.notes = {}
        self.fail_build = False
        self.old_syntax_only = False
        fake_commands.add_callable(["dkms"], self)

    # Registered means a directory in the DKMS tree, as with the real dkms.
    @property
    def tree(self):
        return os.path.join(str(self.root), "var/lib/dkms/toa/1.0.0")

    @property
    def added(self):
        return os.path.isdir(self.tree)

    @added.setter
    def added(self, value):
        if value:
            os.makedirs(self.tree, exist_ok=True)
        else:
            shutil.rmtree(self.tree, ignore_errors=True)

    def head(self, kernel=None):
        if self.style == "3":
            base = "toa/1.0.0"
        else:
            base = "toa, 1.0.0"
        return base if kernel is None else "%s, %s, x86_64" % (base, kernel)

    def status_text(self):
        lines = ["zfs, 2.0.3, %s, x86_64: installed" % KERNEL]
        if self.added and not self.kernels:
            lines.append(self.head() + ": added")
        for kernel, state in sorted(self.kernels.items()):
            note = self.notes.get(kernel)
            lines.append("%s: %s%s" % (self.head(kernel), state, " " + note if note else ""))
        return "\n".join(lines) + "\n"

    def __call__(self, argv):
        action = argv[1]
        if action == "status":
            return 0, self.status_text(), ""
        if action == "add":
            self.added = True
            return 0, "Creating symlink /var/lib/dkms/toa/1.0.0/source -> /usr/src/toa-1.0.0\n", ""
        if action == "build":
            if self.fail_build:
                log = os.path.join(str(self.root), "var/lib/dkms/toa/1.0.0/build/make.log")
                os.makedirs(os.path.dirname(log), exist_ok=True)
                with open(log, "w") as handle:
                    handle.write("".join("make line %d\n" % n for n in range(1, 51)))
                return 10, "", "Error! Bad return status for module build on kernel: %s" % argv[-1]
            self.kernels[argv[-1]] = "built"
            return 0, "", ""
        if action == "install":
            self.kernels[argv[-1]] = "installed"
            return 0, "", ""
        if action == "remove":
            if self.old_syntax_only and argv[2] != "-m":
                return 3, "", "Error! Invalid number of arguments passed."
            self.added = False
            self.kernels = {}
            return 0, "", ""
        raise AssertionError(argv)


@pytest.fixture
def fakehost(tmp_path, monkeypatch):
    monkeypatch.setattr(toa_host, "ROOT", str(tmp_path))
    monkeypatch.setattr(toa_dkms, "running_kernel", lambda: KERNEL)
    os.makedirs(str(tmp_path / "usr/src/toa-1.0.0"))
    (tmp_path / "usr/src/toa-1.0.0/dkms.conf").write_text('PACKAGE_NAME="toa"\n')
    os.makedirs(str(tmp_path / ("lib/modules/%s/build" % KERNEL)))
    return tmp_path


@pytest.fixture(params=["2", "3"], ids=["dkms2", "dkms3"])
def dkms(request, fakehost, fake_commands):
    return FakeDkms(fakehost, request.param, fake_commands)


ARGS = {"name": "toa", "version": "1.0.0"}


def actions(fake_commands):
    return [call[1] for call in fake_commands.calls if call[0] == "dkms"]


def test_fresh_install_adds_builds_installs_then_is_idempotent(dkms, run_module, fake_commands):
    result = run_module(toa_dkms, ARGS)
    assert result["changed"] is True
    assert result["commands"] == [
        [DKMS, "add", REF],
        [DKMS, "build", REF, "-k", KERNEL],
        [DKMS, "install", REF, "-k", KERNEL],
    ]
    assert result["state"] == "installed" and result["kernel"] == KERNEL
    assert result["status"] == [{"module": "toa", "version": "1.0.0", "kernel": KERNEL,
                                 "arch": "x86_64", "state": "installed", "notes": ""}]
    before = len(fake_commands.calls)
    again = run_module(toa_dkms, ARGS)
    assert again["changed"] is False and again["commands"] == []
    assert "already installed" in again["msg"]
    # a rerun asks `dkms status` once and reports what it said
    assert [call[1] for call in fake_commands.calls[before:]] == ["status"]
    assert again["status"] == result["status"] and again["state"] == "installed"


def test_built_module_is_only_installed(dkms, run_module):
    dkms.added = True
    dkms.kernels[KERNEL] = "built"
    result = run_module(toa_dkms, ARGS)
    assert result["commands"] == [[DKMS, "install", REF, "-k", KERNEL]]


def test_other_kernel_installed_builds_for_this_one(dkms, run_module):
    dkms.added = True
    dkms.kernels["6.1.0-17-amd64"] = "installed"
    result = run_module(toa_dkms, dict(ARGS, kernel="6.1.0-20-amd64"))
    assert result["commands"] == [[DKMS, "build", REF, "-k", "6.1.0-20-amd64"],
                                  [DKMS, "install", REF, "-k", "6.1.0-20-amd64"]]
    assert result["state"] == "installed"


def test_installed_with_warning_note_is_installed(dkms, run_module):
    dkms.added = True
    dkms.kernels[KERNEL] = "installed"
    dkms.notes[KERNEL] = "(original_module exists)"
    result = run_module(toa_dkms, ARGS)
    assert result["changed"] is False
    assert result["status"][0]["notes"] == "(original_module exists)"


def test_build_failure_reports_make_log_tail(dkms, run_module):
    dkms.fail_build = True
    result = run_module(toa_dkms, ARGS)
    assert result["failed"] is True
    assert result["make_log"] == "/var/lib/dkms/toa/1.0.0/build/make.log"
    assert result["make_log_tail"][0] == "make line 11"
    assert result["make_log_tail"][-1] == "make line 50"
    assert len(result["make_log_tail"]) == 40
    assert "make line 10\n" not in result["msg"] and "make line 50" in result["msg"]
    assert "/var/lib/dkms/toa/1.0.0/build/make.log" in result["msg"]
    assert "headers" not in result["msg"]


def test_build_failure_without_headers_says_what_to_install(dkms, run_module, fakehost):
    os.rmdir(str(fakehost / ("lib/modules/%s/build" % KERNEL)))
    dkms.fail_build = True
    result = run_module(toa_dkms, ARGS)
    assert "install linux-headers-%s" % KERNEL in result["msg"]
    assert "kernel-devel-%s" % KERNEL in result["msg"]


def test_missing_source_fails_and_names_the_path(dkms, run_module, fakehost):
    result = run_module(toa_dkms, dict(ARGS, source="/opt/toa-src"))
    assert result["failed"] and "/opt/toa-src has no dkms.conf" in result["msg"]


def test_custom_source_is_added(dkms, run_module, fakehost):
    os.makedirs(str(fakehost / "opt/toa-src"))
    (fakehost / "opt/toa-src/dkms.conf").write_text("PACKAGE_NAME=toa\n")
    result = run_module(toa_dkms, dict(ARGS, source="/opt/toa-src"))
    assert result["commands"][0] == [DKMS, "add", "/opt/toa-src"]


def test_check_mode_only_reads_status(dkms, run_module, fake_commands, fakehost):
    result = run_module(toa_dkms, ARGS, check_mode=True)
    assert result["changed"] is True
    assert [argv[1] for argv in result["commands"]] == ["add", "build", "install"]
    assert set(actions(fake_commands)) == {"status"}
    assert not os.path.exists(str(fakehost / "var/lib/dkms/toa"))
    assert result["msg"].startswith("would run add, build, install")


def test_check_mode_without_source_warns_instead_of_failing(dkms, run_module, fakehost):
    os.remove(str(fakehost / "usr/src/toa-1.0.0/dkms.conf"))
    result = run_module(toa_dkms, ARGS, check_mode=True)
    assert not result.get("failed")
    assert result["commands"][0] == [DKMS, "add", REF]


def test_absent_removes_registered_version(dkms, run_module, fake_commands):
    dkms.added = True
    dkms.kernels[KERNEL] = "installed"
    result = run_module(toa_dkms, dict(ARGS, state="absent"))
    assert result["commands"] == [[DKMS, "remove", REF, "--all"]]
    assert result["state"] == "absent" and result["status"] == []
    again = run_module(toa_dkms, dict(ARGS, state="absent"))
    assert again["changed"] is False and again["commands"] == []


def test_absent_falls_back_to_old_syntax(dkms, run_module):
    dkms.added = True
    dkms.old_syntax_only = True
    result = run_module(toa_dkms, dict(ARGS, state="absent"))
    assert result["commands"] == [[DKMS, "remove", REF, "--all"],
                                  [DKMS, "remove", "-m", "toa", "-v", "1.0.0", "--all"]]
    assert result["changed"] is True and not result.get("failed")


def test_absent_check_mode_runs_nothing(dkms, run_module, fake_commands):
    dkms.added = True
    result = run_module(toa_dkms, dict(ARGS, state="absent"), check_mode=True)
    assert result["changed"] is True
    assert set(actions(fake_commands)) == {"status"}
    assert dkms.added is True


def test_absent_with_nothing_registered_runs_no_dkms(dkms, run_module, fake_commands):
    # the first converge asks for this, and dkms is a slow script on small hosts
    result = run_module(toa_dkms, dict(ARGS, state="absent"))
    assert result["changed"] is False and result["state"] == "absent"
    assert actions(fake_commands) == []


def test_missing_dkms_fails_clearly(fakehost, run_module):
    result = run_module(toa_dkms, ARGS, bins={"dkms": None})
    assert result["failed"] and "install the dkms package" in result["msg"]


@pytest.mark.parametrize("args, text", [
    (dict(ARGS, name="toa;reboot"), "may only contain"),
    (dict(ARGS, kernel="6.1 0"), "is not a kernel release"),
])
def test_bad_arguments(fakehost, run_module, fake_commands, args, text):
    result = run_module(toa_dkms, args)
    assert result["failed"] and text in result["msg"]
    assert fake_commands.calls == []


def test_status_filter_ignores_other_versions(fakehost, run_module, fake_commands):
    os.makedirs(str(fakehost / "var/lib/dkms/toa/1.0.0"))   # registered, as status says
    fake_commands.add(["dkms", "status"], out=(
        "toa/0.9.0, %s, x86_64: installed\ntoa/1.0.0, %s, x86_64: installed\n" % (KERNEL, KERNEL)))
    result = run_module(toa_dkms, ARGS)
    assert result["changed"] is False
    assert [entry["version"] for entry in result["status"]] == ["1.0.0"]


def test_fresh_install_asks_no_status_before_adding(dkms, run_module, fake_commands):
    # nothing registered: the DKMS tree says so without running dkms
    run_module(toa_dkms, ARGS)
    assert actions(fake_commands) == ["add", "build", "install", "status"]


def test_rebuild_removes_the_registered_version_first(dkms, run_module, fake_commands):
    dkms.added = True
    dkms.kernels[KERNEL] = "installed"
    result = run_module(toa_dkms, dict(ARGS, rebuild=True))
    assert result["changed"] is True and result["state"] == "installed"
    assert result["commands"] == [
        [DKMS, "remove", REF, "--all"],
        [DKMS, "add", REF],
        [DKMS, "build", REF, "-k", KERNEL],
        [DKMS, "install", REF, "-k", KERNEL],
    ]
    # one `dkms status`, at the end: the removal made the start's answer moot
    assert actions(fake_commands).count("status") == 1


def test_rebuild_with_nothing_registered_is_a_plain_install(dkms, run_module):
    result = run_module(toa_dkms, dict(ARGS, rebuild=True))
    assert [argv[1] for argv in result["commands"]] == ["add", "build", "install"]


def test_rebuild_in_check_mode_reports_and_keeps_the_build(dkms, run_module, fake_commands):
    dkms.added = True
    dkms.kernels[KERNEL] = "installed"
    result = run_module(toa_dkms, dict(ARGS, rebuild=True), check_mode=True)
    assert result["changed"] is True
    assert [argv[1] for argv in result["commands"]] == ["remove", "add", "build", "install"]
    assert dkms.kernels == {KERNEL: "installed"} and set(actions(fake_commands)) <= {"status"}
