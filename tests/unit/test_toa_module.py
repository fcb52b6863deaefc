"""toa_module: load/unload command building, runtime params, autoload files."""

import os
import stat

import pytest
import toa_module
import toa_host
from conftest import fixture_text, write

MODPROBE = "/usr/sbin/modprobe"
HEADER = "# Managed by toa-fleet (Ansible): do not edit"
PARAMS = {"ipv4_kinds": "200", "ipv6_kinds": "253,254", "trusted_cidrs": ""}
DEBIAN8_RC_LOCAL = """#!/bin/sh -e
#
# rc.local
#
# This script is executed at the end of each multiuser runlevel.
#
# By default this script does nothing.

exit 0
"""


def read(root, path):
    full = os.path.join(str(root), path.lstrip("/"))
    if not os.path.exists(full):
        return None
    with open(full) as handle:
        return handle.read()


def mode_of(root, path):
    return stat.S_IMODE(os.stat(os.path.join(str(root), path.lstrip("/"))).st_mode)


def snapshot(root):
    """Every file under root with its content and mode, to prove nothing changed."""
    found = {}
    for directory, _dirs, files in os.walk(str(root)):
        for name in files:
            full = os.path.join(directory, name)
            with open(full, "rb") as handle:
                found[full] = (handle.read(), stat.S_IMODE(os.stat(full).st_mode))
    return found


class Kernel:
    """A fake kernel for the tmp tree: modprobe edits /proc/modules and sysfs."""

    def __init__(self, root, fake_commands, writable=("trusted_cidrs",)):
        self.root = root
        self.writable = writable
        self.installed = None  # srcversion of the module file; None: modinfo shows none
        fake_commands.add_callable(["modprobe"], self.modprobe)
        fake_commands.add_callable(["modinfo", "-F", "srcversion"], self.modinfo)

    def modinfo(self, argv):
        return 0, (self.installed + "\n") if self.installed else "", ""

    def load(self, params):
        write(self.root, "/proc/modules", "toa 16384 0 - Live 0xffffffffc0a1b000 (OE)\n")
        if self.installed:
            write(self.root, "/sys/module/toa/srcversion", self.installed + "\n")
        for key, value in params.items():
            mode = 0o644 if key in self.writable else 0o444
            write(self.root, "/sys/module/toa/parameters/" + key, value + "\n", mode=mode)

    def unload(self):
        write(self.root, "/proc/modules", "ext4 987136 1 - Live 0x0\n")
        base = os.path.join(str(self.root), "sys/module/toa/parameters")
        for name in os.listdir(base) if os.path.isdir(base) else []:
            os.remove(os.path.join(base, name))

    def modprobe(self, argv):
        if argv[1] == "-r":
            self.unload()
            return 0, "", ""
        self.load(dict(item.split("=", 1) for item in argv[2:]))
        return 0, "", ""


@pytest.fixture
def fakehost(tmp_path, monkeypatch):
    """Debian 12, systemd, toa not loaded."""
    monkeypatch.setattr(toa_host, "ROOT", str(tmp_path))
    monkeypatch.setattr(toa_module, "uname", lambda: ("x86_64", "6.1.0-18-amd64"))
    write(tmp_path, "/etc/os-release", fixture_text("os-release", "debian12"))
    write(tmp_path, "/proc/1/comm", "systemd\n")
    write(tmp_path, "/proc/modules", "ext4 987136 1 - Live 0x0\n")
    return tmp_path


@pytest.fixture
def kernel(fakehost, fake_commands):
    return Kernel(fakehost, fake_commands)


def as_debian8(root):
    write(root, "/etc/os-release", fixture_text("os-release", "debian8"))
    write(root, "/proc/1/comm", "init\n")


def as_centos6(root):
    os.remove(os.path.join(str(root), "etc/os-release"))
    write(root, "/etc/redhat-release", fixture_text("redhat-release", "centos6"))
    write(root, "/proc/1/comm", "init\n")


def as_centos7(root):
    write(root, "/etc/os-release", fixture_text("os-release", "centos7"))
    write(root, "/etc/redhat-release", fixture_text("redhat-release", "centos7"))


def modprobe_calls(fake_commands):
    return [call for call in fake_commands.calls if call[0] == "modprobe"]


# -- pure rc.local editing ---------------------------------------------------------

def test_rc_local_add_before_final_exit():
    after = toa_module.rc_local_add(DEBIAN8_RC_LOCAL, "toa")
    lines = after.splitlines()
    assert lines.count("modprobe toa") == 1
    assert lines[-2:] == ["modprobe toa", "exit 0"]
    assert toa_module.rc_local_add(after, "toa") == after


def test_rc_local_add_appends_without_exit():
    text = "#!/bin/bash\ntouch /var/lock/subsys/local\n"
    assert toa_module.rc_local_add(text, "toa") == text + "modprobe toa\n"


def test_rc_local_add_moves_dead_line_and_collapses_duplicates():
    text = "#!/bin/sh -e\nmodprobe toa\nexit 0\nmodprobe toa\n"
    assert toa_module.rc_local_add(text, "toa") == "#!/bin/sh -e\nmodprobe toa\nexit 0\n"
    text = "#!/bin/sh -e\nexit 0\nmodprobe toa\n"
    assert toa_module.rc_local_add(text, "toa") == "#!/bin/sh -e\nmodprobe toa\nexit 0\n"


def test_rc_local_add_keeps_existing_position_and_ignores_other_lines():
    text = "#!/bin/sh\nmodprobe toa\necho hi\n/sbin/modprobe toa_other\nexit 0\n"
    assert toa_module.rc_local_add(text, "toa") == text


def test_rc_local_exit_in_the_middle_is_not_final():
    text = "#!/bin/sh\nif false; then\n  exit 0\nfi\necho done\n"
    assert toa_module.rc_local_add(text, "toa").endswith("echo done\nmodprobe toa\n")


def test_rc_local_remove_only_ours():
    text = ("#!/bin/bash\n\u201cmodprobe toa\u201d\nmodprobe toa\n/sbin/modprobe toa\n"
            "# modprobe toa\nmodprobe toast\nexit 0\n")
    assert toa_module.rc_local_remove(text, "toa") == (
        "#!/bin/bash\n\u201cmodprobe toa\u201d\n/sbin/modprobe toa\n# modprobe toa\n"
        "modprobe toast\nexit 0\n")


@pytest.mark.parametrize("value, expected", [
    (True, "1"), (False, "0"), (200, "200"), (["253", 254], "253,254"), (None, ""), ("", ""),
])
def test_param_value(value, expected):
    assert toa_module.param_value(value) == expected


@pytest.mark.parametrize("key, wanted, current, same", [
    ("ipv4_kinds", "200", "200\n", True), ("x", "1", "Y", True), ("x", "0", "N", True),
    ("trusted_cidrs", "", "(null)", True), ("ipv4_kinds", "200", "254", False),
    ("x", "1", "N", False), ("ipv4_kinds", "200", None, False),
])
def test_same_value(key, wanted, current, same):
    assert toa_module.same_value(key, wanted, current) is same


def test_equivalent_spellings_change_nothing(fakehost, kernel, run_module, fake_commands):
    # What toa_cfg.c reads back for these: kinds ascending, host bits cleared,
    # IPv6 compressed in lower case, a bare address with its full prefix.
    kernel.load({"ipv4_kinds": "200,254", "ipv6_kinds": "253,254",
                 "trusted_cidrs": "10.0.0.0/8,2001:db8::/32,192.0.2.7/32"})
    wanted = {"ipv4_kinds": "254,200", "ipv6_kinds": "254,253",
              "trusted_cidrs": "10.1.2.3/8,2001:DB8::/32,192.0.2.7"}
    result = run_module(toa_module, {"params": wanted})
    assert result["changed"] is False, result
    assert result["sysfs_writes"] == [] and result["commands"] == []


def test_reordered_cidrs_are_written(fakehost, kernel, run_module):
    kernel.load({"trusted_cidrs": "10.0.0.0/8,192.0.2.0/24"})
    result = run_module(toa_module, {"params": {"trusted_cidrs": "192.0.2.0/24,10.0.0.0/8"}})
    assert result["changed"] is True
    assert result["sysfs_writes"][0]["after"] == "192.0.2.0/24,10.0.0.0/8"


def test_kinds_the_kernel_uses_are_refused(fakehost, run_module, fake_commands):
    result = run_module(toa_module, {"params": {"ipv4_kinds": "30"}})
    assert result["failed"] and "params.ipv4_kinds has 30 (MPTCP)" in result["msg"]
    assert fake_commands.calls == []


# -- load / unload -------------------------------------------------------------------

def test_load_builds_modprobe_with_sorted_params(fakehost, kernel, run_module, fake_commands):
    result = run_module(toa_module, {"params": PARAMS})
    assert result["changed"] is True and result["loaded"] is True
    assert result["commands"] == [[MODPROBE, "toa", "ipv4_kinds=200", "ipv6_kinds=253,254",
                                   "trusted_cidrs="]]
    assert result["params"] == PARAMS
    assert result["autoload_method"] is None and result["files_written"] == []
    second = run_module(toa_module, {"params": PARAMS})
    assert second["changed"] is False and second["commands"] == []
    assert len(modprobe_calls(fake_commands)) == 1


def test_load_failure_reports_stderr_and_kernel_log(fakehost, run_module, fake_commands):
    fake_commands.add(["modprobe", "toa"], rc=1, prefix=True,
                      err="modprobe: ERROR: could not insert 'toa': Unknown symbol in module\n")
    fake_commands.add(["dmesg"], out=(
        "[    1.0] e1000: link up\n"
        "[   12.3] toa: Unknown symbol kallsyms_lookup_name (err -2)\n"
        "[   12.4] TOA: module verification failed\n"))
    result = run_module(toa_module, {})
    assert result["failed"] is True
    assert "Could not load toa" in result["msg"]
    assert "Unknown symbol in module" in result["msg"]
    assert "toa: Unknown symbol kallsyms_lookup_name" in result["msg"]
    assert "e1000" not in result["msg"]
    assert result["kernel_log"][-1].endswith("TOA: module verification failed")


def test_load_failure_module_missing_hints_at_route(fakehost, run_module, fake_commands):
    fake_commands.add(["modprobe", "toa"], rc=1, err=(
        "modprobe: FATAL: Module toa not found in directory /lib/modules/6.1.0-18-amd64\n"))
    result = run_module(toa_module, {}, bins={"dmesg": None})
    assert result["failed"] is True
    assert "not installed for the running kernel 6.1.0-18-amd64" in result["msg"]


def test_missing_modprobe_fails_clearly(fakehost, run_module):
    result = run_module(toa_module, {}, bins={"modprobe": None})
    assert result["failed"] and "install the kmod package" in result["msg"]


def test_runtime_writable_param_is_written_to_sysfs(fakehost, kernel, run_module, fake_commands):
    kernel.load(PARAMS)
    wanted = dict(PARAMS, trusted_cidrs="10.0.0.0/8,192.0.2.0/24")
    result = run_module(toa_module, {"params": wanted})
    assert result["changed"] is True
    assert result["commands"] == []
    assert result["sysfs_writes"] == [{"path": "/sys/module/toa/parameters/trusted_cidrs",
                                       "before": "", "after": "10.0.0.0/8,192.0.2.0/24"}]
    assert read(fakehost, "/sys/module/toa/parameters/trusted_cidrs") == "10.0.0.0/8,192.0.2.0/24"
    assert modprobe_calls(fake_commands) == []


def test_read_only_param_needs_reload(fakehost, kernel, run_module, fake_commands):
    kernel.load(PARAMS)
    wanted = dict(PARAMS, ipv4_kinds="254")
    result = run_module(toa_module, {"params": wanted})
    assert result["failed"] is True
    assert "ipv4_kinds=254 (loaded: 200)" in result["msg"]
    assert "reload: true" in result["msg"]
    assert read(fakehost, "/sys/module/toa/parameters/ipv4_kinds") == "200\n"
    result = run_module(toa_module, {"params": wanted, "reload": True})
    assert result["changed"] is True
    assert result["commands"] == [[MODPROBE, "-r", "toa"],
                                  [MODPROBE, "toa", "ipv4_kinds=254", "ipv6_kinds=253,254",
                                   "trusted_cidrs="]]
    assert result["params"]["ipv4_kinds"] == "254"


def test_param_missing_from_sysfs_needs_reload(fakehost, kernel, run_module):
    kernel.load({"ipv4_kinds": "200"})
    result = run_module(toa_module, {"params": {"debug": True}})
    assert result["failed"] and "debug=1 (loaded: not visible in sysfs)" in result["msg"]


def test_bool_param_matches_kernel_spelling(fakehost, kernel, run_module):
    kernel.load({"strict": "Y"})
    assert run_module(toa_module, {"params": {"strict": True}})["changed"] is False


@pytest.fixture
def warnings(monkeypatch):
    seen = []
    monkeypatch.setattr(toa_module.AnsibleModule, "warn", lambda self, text: seen.append(text))
    return seen


def test_rebuilt_module_is_reloaded_with_reload(fakehost, kernel, run_module, warnings):
    kernel.installed = "0123ABCD"
    kernel.load(PARAMS)
    kernel.installed = "4567EF01"  # DKMS rebuilt it under the same version
    result = run_module(toa_module, {"params": PARAMS, "reload": True})
    assert result["changed"] is True and result["reload_pending"] is False
    assert result["commands"] == [[MODPROBE, "-r", "toa"],
                                  [MODPROBE, "toa", "ipv4_kinds=200", "ipv6_kinds=253,254",
                                   "trusted_cidrs="]]
    assert "srcversion 0123ABCD) was not the installed module's (4567EF01)" in result["msg"]
    assert read(fakehost, "/sys/module/toa/srcversion") == "4567EF01\n"
    again = run_module(toa_module, {"params": PARAMS, "reload": True})
    assert again["changed"] is False and again["commands"] == []
    assert warnings == []


def test_rebuilt_module_without_reload_is_a_warned_pending_reload(fakehost, kernel, run_module,
                                                                  warnings):
    kernel.installed = "0123ABCD"
    kernel.load(PARAMS)
    kernel.installed = "4567EF01"
    # A parameter only the new build has waits for the reload; a runtime one is set now.
    wanted = dict(PARAMS, trusted_cidrs="10.0.0.0/8", netns_max_entries="1000")
    result = run_module(toa_module, {"params": wanted})
    assert result["reload_pending"] is True
    assert result["commands"] == []
    assert [w["after"] for w in result["sysfs_writes"]] == ["10.0.0.0/8"]
    assert "netns_max_entries set at the reload" in result["msg"]
    assert len(warnings) == 1
    assert "srcversion 0123ABCD) than the installed module (srcversion 4567EF01)" in warnings[0]
    assert "toa_reload=true" in warnings[0] and "or reboot" in warnings[0]


def test_check_mode_records_the_reload(fakehost, kernel, run_module, fake_commands):
    kernel.installed = "0123ABCD"
    kernel.load(PARAMS)
    kernel.installed = "4567EF01"
    result = run_module(toa_module, {"params": PARAMS, "reload": True}, check_mode=True)
    assert result["changed"] is True and result["msg"].startswith("would have: reloaded toa")
    assert modprobe_calls(fake_commands) == []
    assert read(fakehost, "/sys/module/toa/srcversion") == "0123ABCD\n"


def test_same_build_or_unknown_srcversion_is_no_reload(fakehost, kernel, run_module, warnings):
    kernel.installed = "0123ABCD"
    kernel.load(PARAMS)
    assert run_module(toa_module, {"params": PARAMS, "reload": True})["changed"] is False
    kernel.installed = None  # modinfo shows no srcversion (a module without MODULE_VERSION)
    result = run_module(toa_module, {"params": PARAMS, "reload": True})
    assert result["changed"] is False and result["reload_pending"] is False
    assert warnings == []


def test_unload(fakehost, kernel, run_module, fake_commands):
    kernel.load(PARAMS)
    result = run_module(toa_module, {"state": "unloaded"})
    assert result["changed"] is True and result["loaded"] is False
    assert result["commands"] == [[MODPROBE, "-r", "toa"]]
    again = run_module(toa_module, {"state": "unloaded"})
    assert again["changed"] is False and again["commands"] == []


def test_unload_in_use_fails(fakehost, kernel, run_module, fake_commands):
    kernel.load({})
    fake_commands.add(["modprobe", "-r", "toa"], rc=1, err="modprobe: FATAL: Module toa is in use.")
    result = run_module(toa_module, {"state": "unloaded"}, bins={"dmesg": None})
    assert result["failed"] and "Module toa is in use" in result["msg"]
    assert "Stop what uses it" in result["msg"]


@pytest.mark.parametrize("params, text", [
    ({"trusted_cidrs": "10.0.0.0/8 192.0.2.0/24"}, "contains a space"),
    ({"x": 'a"b'}, "contains a space, quote"),
    ({"bad-name": "1"}, "is not a module parameter name"),
])
def test_bad_params_are_refused(fakehost, run_module, fake_commands, params, text):
    result = run_module(toa_module, {"params": params})
    assert result["failed"] and text in result["msg"]
    assert fake_commands.calls == []


def test_check_mode_load_runs_nothing(fakehost, run_module, fake_commands):
    before = snapshot(fakehost)
    result = run_module(toa_module, {"params": PARAMS, "autoload": "enabled"}, check_mode=True,
                        diff=True)
    assert result["changed"] is True and result["loaded"] is True
    assert result["commands"][0][:2] == [MODPROBE, "toa"]
    assert result["files_written"] == ["/etc/modules-load.d/toa.conf", "/etc/modprobe.d/toa.conf"]
    assert [d["before_header"] for d in result["diff"]] == result["files_written"]
    assert result["msg"].startswith("would have: ")
    assert modprobe_calls(fake_commands) == []
    assert snapshot(fakehost) == before


def test_check_mode_sysfs_write_changes_nothing(fakehost, kernel, run_module):
    kernel.load(PARAMS)
    result = run_module(toa_module, {"params": dict(PARAMS, trusted_cidrs="10.0.0.0/8")},
                        check_mode=True)
    assert result["changed"] is True and result["sysfs_writes"][0]["after"] == "10.0.0.0/8"
    assert result["params"]["trusted_cidrs"] == "10.0.0.0/8"
    assert read(fakehost, "/sys/module/toa/parameters/trusted_cidrs") == "\n"


# -- autoload ---------------------------------------------------------------------------

def test_autoload_systemd_writes_modules_load_and_options(fakehost, kernel, run_module):
    result = run_module(toa_module, {"params": PARAMS, "autoload": "enabled"}, diff=True)
    assert result["autoload_method"] == "modules-load"
    assert read(fakehost, "/etc/modules-load.d/toa.conf") == HEADER + "\ntoa\n"
    assert read(fakehost, "/etc/modprobe.d/toa.conf") == (
        HEADER + "\noptions toa ipv4_kinds=200 ipv6_kinds=253,254 trusted_cidrs=\n")
    assert mode_of(fakehost, "/etc/modules-load.d/toa.conf") == 0o644
    assert result["diff"][0] == {"before_header": "/etc/modules-load.d/toa.conf",
                                 "after_header": "/etc/modules-load.d/toa.conf",
                                 "before": "", "after": HEADER + "\ntoa\n"}
    again = run_module(toa_module, {"params": PARAMS, "autoload": "enabled"}, diff=True)
    assert again["changed"] is False and again["diff"] == [] and again["files_written"] == []


def test_autoload_without_params_removes_our_options_file(fakehost, kernel, run_module):
    run_module(toa_module, {"params": PARAMS, "autoload": "enabled"})
    kernel.unload()
    result = run_module(toa_module, {"autoload": "enabled"})
    assert result["files_removed"] == ["/etc/modprobe.d/toa.conf"]
    assert read(fakehost, "/etc/modprobe.d/toa.conf") is None


def test_autoload_el6_uses_sysconfig_script(fakehost, kernel, run_module):
    as_centos6(fakehost)
    result = run_module(toa_module, {"autoload": "enabled"})
    assert result["autoload_method"] == "sysconfig"
    text = read(fakehost, "/etc/sysconfig/modules/toa.modules")
    assert text.startswith("#!/bin/sh\n" + HEADER + "\n")
    assert "exec /sbin/modprobe toa" in text
    assert mode_of(fakehost, "/etc/sysconfig/modules/toa.modules") == 0o755
    assert read(fakehost, "/etc/rc.d/rc.local") is None
    assert run_module(toa_module, {"autoload": "enabled"})["changed"] is False


def test_autoload_sysconfig_fixes_mode(fakehost, kernel, run_module):
    as_centos6(fakehost)
    run_module(toa_module, {"autoload": "enabled"})
    os.chmod(os.path.join(str(fakehost), "etc/sysconfig/modules/toa.modules"), 0o644)
    result = run_module(toa_module, {"autoload": "enabled"})
    assert result["changed"] is True
    assert mode_of(fakehost, "/etc/sysconfig/modules/toa.modules") == 0o755


def test_autoload_debian8_sysvinit_edits_rc_local_once(fakehost, kernel, run_module):
    as_debian8(fakehost)
    write(fakehost, "/etc/rc.local", DEBIAN8_RC_LOCAL, mode=0o644)
    result = run_module(toa_module, {"autoload": "enabled"}, diff=True)
    assert result["autoload_method"] == "rc-local"
    text = read(fakehost, "/etc/rc.local")
    assert text == DEBIAN8_RC_LOCAL.replace("\nexit 0\n", "\nmodprobe toa\nexit 0\n")
    assert mode_of(fakehost, "/etc/rc.local") == 0o755
    assert result["diff"][0]["after"] == text
    again = run_module(toa_module, {"autoload": "enabled"})
    assert again["changed"] is False
    assert read(fakehost, "/etc/rc.local").count("modprobe toa") == 1


def test_rc_local_created_on_centos7_when_missing(fakehost, kernel, run_module):
    as_centos7(fakehost)
    result = run_module(toa_module, {"autoload": "enabled", "autoload_method": "rc-local"})
    assert result["files_written"] == ["/etc/rc.d/rc.local"]
    assert read(fakehost, "/etc/rc.d/rc.local") == (
        "#!/bin/sh -e\n" + toa_module.RC_LOCAL_CREATED + "\nmodprobe toa\nexit 0\n")
    assert mode_of(fakehost, "/etc/rc.d/rc.local") == 0o755
    assert read(fakehost, "/etc/rc.local") is None
    # Disabling removes the file again: nothing but our scaffold is in it.
    result = run_module(toa_module, {"autoload": "disabled"})
    assert result["files_removed"] == ["/etc/rc.d/rc.local"]
    assert read(fakehost, "/etc/rc.d/rc.local") is None


def test_rc_local_symlink_is_followed(fakehost, kernel, run_module):
    as_centos7(fakehost)
    write(fakehost, "/etc/rc.d/rc.local", "#!/bin/bash\ntouch /var/lock/subsys/local\n",
          mode=0o644)
    os.symlink("rc.d/rc.local", os.path.join(str(fakehost), "etc/rc.local"))
    result = run_module(toa_module, {"autoload": "enabled", "autoload_method": "rc-local",
                                     "rc_local_path": "/etc/rc.local"})
    assert result["files_written"] == ["/etc/rc.d/rc.local"]
    assert os.path.islink(os.path.join(str(fakehost), "etc/rc.local"))
    assert read(fakehost, "/etc/rc.local").endswith("touch /var/lock/subsys/local\nmodprobe toa\n")
    assert mode_of(fakehost, "/etc/rc.d/rc.local") == 0o755


def test_disable_removes_only_what_we_wrote(fakehost, kernel, run_module):
    as_debian8(fakehost)
    user_text = DEBIAN8_RC_LOCAL.replace(
        "exit 0", "\u201cmodprobe toa\u201d\n/usr/local/bin/start-app\nexit 0")
    write(fakehost, "/etc/rc.local", user_text, mode=0o755)
    run_module(toa_module, {"params": PARAMS, "autoload": "enabled"})
    write(fakehost, "/etc/modules-load.d/toa.conf", "toa\n")  # the user's own, no header
    assert "modprobe toa\nexit 0" in read(fakehost, "/etc/rc.local")
    result = run_module(toa_module, {"state": "unloaded", "autoload": "disabled"})
    assert result["changed"] is True
    assert read(fakehost, "/etc/rc.local") == user_text
    assert read(fakehost, "/etc/modprobe.d/toa.conf") is None
    assert read(fakehost, "/etc/modules-load.d/toa.conf") == "toa\n"
    assert sorted(result["files_removed"]) == ["/etc/modprobe.d/toa.conf"]
    assert result["files_written"] == ["/etc/rc.local"]
    again = run_module(toa_module, {"state": "unloaded", "autoload": "disabled"})
    assert again["changed"] is False


def test_switching_method_removes_the_other_methods_files(fakehost, kernel, run_module):
    write(fakehost, "/etc/rc.local", DEBIAN8_RC_LOCAL, mode=0o755)
    run_module(toa_module, {"autoload": "enabled", "autoload_method": "rc-local"})
    assert "modprobe toa" in read(fakehost, "/etc/rc.local")
    result = run_module(toa_module, {"autoload": "enabled"})
    assert result["autoload_method"] == "modules-load"
    assert read(fakehost, "/etc/rc.local") == DEBIAN8_RC_LOCAL
    assert read(fakehost, "/etc/modules-load.d/toa.conf") == HEADER + "\ntoa\n"


def test_autoload_unchanged_touches_no_file(fakehost, kernel, run_module):
    write(fakehost, "/etc/rc.local", DEBIAN8_RC_LOCAL + "modprobe toa\n", mode=0o755)
    kernel.load({})
    before = snapshot(fakehost)
    result = run_module(toa_module, {"params": {}})
    assert result["changed"] is False
    assert snapshot(fakehost) == before


def test_check_mode_disable_writes_nothing(fakehost, kernel, run_module):
    as_debian8(fakehost)
    write(fakehost, "/etc/rc.local", DEBIAN8_RC_LOCAL, mode=0o755)
    run_module(toa_module, {"params": PARAMS, "autoload": "enabled"})
    before = snapshot(fakehost)
    result = run_module(toa_module, {"autoload": "disabled"}, check_mode=True, diff=True)
    assert result["changed"] is True
    assert result["files_removed"] == ["/etc/modprobe.d/toa.conf"]
    assert result["files_written"] == ["/etc/rc.local"]
    assert result["diff"][0]["after"] == DEBIAN8_RC_LOCAL
    assert snapshot(fakehost) == before


def test_relative_rc_local_path_is_refused(fakehost, run_module):
    result = run_module(toa_module, {"rc_local_path": "etc/rc.local"})
    assert result["failed"] and "absolute path" in result["msg"]


def test_auto_method_uses_systemd_runtime_dir(fakehost, kernel, run_module):
    write(fakehost, "/proc/1/comm", "init\n")
    os.makedirs(os.path.join(str(fakehost), "run/systemd/system"))
    result = run_module(toa_module, {"autoload": "enabled"}, check_mode=True)
    assert result["autoload_method"] == "modules-load"
    os.rmdir(os.path.join(str(fakehost), "run/systemd/system"))
    result = run_module(toa_module, {"autoload": "enabled"}, check_mode=True)
    assert result["autoload_method"] == "rc-local"
