"""toa_facts: parsing helpers and the whole module against a fake host tree."""

import os

import pytest
import toa_facts
import toa_state
from conftest import debian12_host, fixture_text, write, load_catalogue

SHA = "b" * 64


@pytest.fixture
def fakehost(tmp_path, monkeypatch):
    """A host tree: Debian 12 on x86_64, systemd, nothing TOA installed."""
    return debian12_host(tmp_path, monkeypatch,
                         "nf_tables 290816 0 - Live 0x0000000000000000\n"
                         "ext4 987136 1 - Live 0x0000000000000000\n")


def facts(run_module, args=None, **kwargs):
    result = run_module(toa_facts, args or {}, **kwargs)
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is False
    return result["ansible_facts"]["toa"]


# -- helpers -----------------------------------------------------------------------

def test_parse_proc_modules():
    text = ("toa 16384 0 - Live 0xffffffffc0a1b000 (OE)\n"
            "nf_tables 290816 0 - Live 0x0000000000000000\n\n")
    assert toa_state.parse_proc_modules(text) == ["toa", "nf_tables"]


@pytest.mark.parametrize("text, expected", [
    ("syn_recv_sock_toa 5\ngetname_toa_ok 3\n", {"syn_recv_sock_toa": 5, "getname_toa_ok": 3}),
    ("ipv4_hits: 7\n", {"ipv4_hits": 7}),
    ("                 CPU0  CPU1\nsyn_recv_sock_toa :  2  3\ngetname_toa_ok : 1 0\n",
     {"syn_recv_sock_toa": 5, "getname_toa_ok": 1}),
    ("garbage line here\nlonely\n", {}),
    ("", {}),
])
def test_parse_toa_stats(text, expected):
    assert toa_state.parse_toa_stats(text) == expected


def test_read_parameters_skips_unreadable(fakehost, monkeypatch):
    write(fakehost, "/sys/module/toa/parameters/ipv4_kinds", "200\n")
    write(fakehost, "/sys/module/toa/parameters/trusted_cidrs", "\n")
    os.makedirs(str(fakehost / "sys/module/toa/parameters/not_a_file"))
    assert toa_state.read_parameters("toa") == {"ipv4_kinds": "200", "trusted_cidrs": ""}


def test_module_name_with_dash_maps_to_underscore(fakehost):
    write(fakehost, "/sys/module/toa_x/parameters/p", "1\n")
    assert toa_state.read_parameters("toa-x") == {"p": "1"}


# -- whole module ------------------------------------------------------------------------

def test_nothing_installed(fakehost, run_module, fake_commands):
    fake_commands.add(["modinfo", "-k", "6.1.0-18-amd64", "-n", "toa"], rc=1,
                      err="modinfo: ERROR: Module toa not found.\n")
    toa = facts(run_module, bins={"dkms": None})
    assert toa["host"]["distribution"] == "Debian" and toa["host"]["init"] == "systemd"
    assert toa["module"] == {"loaded": False, "version": None, "srcversion": None,
                             "file_srcversion": None, "reload_pending": False,
                             "parameters": {}, "trusted_cidrs": None,
                             "honours_any_source": None, "available": False,
                             "builtin": False, "file": None}
    assert toa["stats"] == {}
    assert toa["counters"]["lost"] is None  # no counters: unknown, not "nothing lost"
    assert toa["autoload"]["enabled"] is False and toa["autoload"]["files"] == []
    assert toa["kernels"] == {"running": "6.1.0-18-amd64", "installed_toa": [],
                              "running_is_toa": False, "installed": []}
    assert toa["module_plan"]["source"] == "dkms"
    assert toa["module_plan"]["reason"].startswith("toa_module_packages is empty")
    assert toa["dkms"] == [] and toa["dkms_installed"] is False
    assert toa["route"]["route"] == "module"
    assert toa["route_error"] is None


def test_loaded_module_with_params_stats_and_dkms(fakehost, run_module, fake_commands):
    write(fakehost, "/proc/modules",
          "toa 16384 0 - Live 0xffffffffc0a1b000 (OE)\next4 987136 1 - Live 0x0\n")
    write(fakehost, "/sys/module/toa/version", "1.0.0\n")
    write(fakehost, "/sys/module/toa/srcversion", "0123ABCD\n")
    write(fakehost, "/sys/module/toa/parameters/ipv4_kinds", "200\n")
    write(fakehost, "/sys/module/toa/parameters/ipv6_kinds", "253,254\n")
    write(fakehost, "/proc/net/toa_stats", "syn_recv_sock_toa 12\ngetname_toa_ok 10\n")
    ko = "/lib/modules/6.1.0-18-amd64/updates/dkms/toa.ko"
    fake_commands.add(["modinfo", "-k", "6.1.0-18-amd64", "-n", "toa"], out=ko + "\n")
    fake_commands.add(["modinfo", "-k", "6.1.0-18-amd64", "-F", "srcversion", "toa"],
                      out="0123ABCD\n")
    fake_commands.add(["dkms", "status"], out=(
        "toa/1.0.0, 6.1.0-18-amd64, x86_64: installed\n"
        "zfs/2.1.11, 6.1.0-18-amd64, x86_64: installed\n"))
    toa = facts(run_module)
    assert toa["module"] == {"loaded": True, "version": "1.0.0", "srcversion": "0123ABCD",
                             "file_srcversion": "0123ABCD", "reload_pending": False,
                             "parameters": {"ipv4_kinds": "200", "ipv6_kinds": "253,254"},
                             "trusted_cidrs": None, "honours_any_source": True,
                             "available": True, "builtin": False, "file": ko}
    assert toa["stats"] == {"syn_recv_sock_toa": 12, "getname_toa_ok": 10}
    assert toa["counters"]["lost"] is None  # none of these counters says what was lost
    assert toa["dkms_installed"] is True
    assert toa["dkms"] == [{"module": "toa", "version": "1.0.0", "kernel": "6.1.0-18-amd64",
                            "arch": "x86_64", "state": "installed", "notes": ""}]


def test_counters_name_lost_addresses(fakehost, run_module, fake_commands):
    write(fakehost, "/proc/net/toa_stats", "accepted 70000\nentries_dropped_full 4464\n"
                                           "missed_destroy 0\nhooks_ftrace 1\nrejected_multiple 3\n")
    counters = facts(run_module, {"gather_dkms": False})["counters"]
    assert counters["lost"] is True
    assert counters["lost_nonzero"] == {"entries_dropped_full": 4464}
    assert counters["lost_counters"]["missed_destroy"] == 0
    assert counters["lost_counters"]["global_missed"] is None
    assert "toa_params.max_entries" in counters["advice"]
    assert counters["refusals"]["rejected_multiple"] == 3 and counters["hooks_ftrace"] is True


def loaded_toa(root, fake_commands, loaded_src, file_src):
    write(root, "/proc/modules", "toa 16384 0 - Live 0xffffffffc0a1b000 (OE)\n")
    if loaded_src:
        write(root, "/sys/module/toa/srcversion", loaded_src + "\n")
    fake_commands.add(["modinfo", "-k", "6.1.0-18-amd64", "-n", "toa"],
                      out="/lib/modules/6.1.0-18-amd64/updates/dkms/toa.ko\n")
    if file_src is not None:
        fake_commands.add(["modinfo", "-k", "6.1.0-18-amd64", "-F", "srcversion", "toa"],
                          out=file_src + "\n")


def test_a_rebuilt_module_not_loaded_yet_is_a_pending_reload(fakehost, run_module, fake_commands):
    loaded_toa(fakehost, fake_commands, "0123ABCD", "4567EF01")
    module = facts(run_module, {"gather_dkms": False})["module"]
    assert module["srcversion"] == "0123ABCD" and module["file_srcversion"] == "4567EF01"
    assert module["reload_pending"] is True


@pytest.mark.parametrize("loaded_src, file_src", [
    ("0123ABCD", "0123ABCD"),  # the installed build is the one running
    (None, "0123ABCD"),  # a module without srcversion: unknown, not pending
    ("0123ABCD", ""),  # modinfo shows none
])
def test_no_pending_reload_unless_both_srcversions_differ(fakehost, run_module, fake_commands,
                                                         loaded_src, file_src):
    loaded_toa(fakehost, fake_commands, loaded_src, file_src)
    assert facts(run_module, {"gather_dkms": False})["module"]["reload_pending"] is False


def test_gather_dkms_false_runs_no_dkms(fakehost, run_module, fake_commands):
    fake_commands.add(["modinfo", "-k", "6.1.0-18-amd64", "-n", "toa"], rc=1)
    toa = facts(run_module, {"gather_dkms": False})
    assert toa["dkms"] is None and toa["dkms_installed"] is None
    assert [call for call in fake_commands.calls if call[0] == "dkms"] == []
    assert toa["route"]["route"] == "module"  # everything else is still read


def test_available_without_modinfo_uses_modules_dep(fakehost, run_module):
    write(fakehost, "/lib/modules/6.1.0-18-amd64/modules.dep",
          "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko\nupdates/dkms/toa.ko.xz:\n")
    toa = facts(run_module, bins={"modinfo": None, "dkms": None})
    assert toa["module"]["available"] is True
    assert toa["module"]["file"] == "/lib/modules/6.1.0-18-amd64/updates/dkms/toa.ko.xz"


def test_autoload_systemd_files_and_options(fakehost, run_module):
    write(fakehost, "/etc/modules-load.d/toa.conf",
          "# Managed by toa-fleet (Ansible): do not edit\ntoa\n")
    write(fakehost, "/etc/modprobe.d/toa.conf",
          "# Managed by toa-fleet (Ansible): do not edit\n"
          "options toa ipv4_kinds=200 ipv6_kinds=253,254 trusted_cidrs=\n")
    toa = facts(run_module, bins={"dkms": None})
    assert toa["autoload"]["enabled"] is True
    assert toa["autoload"]["methods"] == ["modules-load"]
    assert toa["autoload"]["files"] == ["/etc/modules-load.d/toa.conf", "/etc/modprobe.d/toa.conf"]
    assert toa["autoload"]["options"] == {"ipv4_kinds": "200", "ipv6_kinds": "253,254",
                                          "trusted_cidrs": ""}


def test_autoload_modules_load_file_without_the_name_is_not_enabled(fakehost, run_module):
    write(fakehost, "/etc/modules-load.d/toa.conf", "# toa\ntoast\n")
    toa = facts(run_module, bins={"dkms": None})
    assert toa["autoload"]["enabled"] is False
    assert toa["autoload"]["files"] == ["/etc/modules-load.d/toa.conf"]


def test_autoload_el6_sysconfig(fakehost, run_module):
    write(fakehost, "/etc/sysconfig/modules/toa.modules", "#!/bin/sh\n/sbin/modprobe toa\n",
          mode=0o755)
    toa = facts(run_module, bins={"dkms": None})
    assert toa["autoload"]["methods"] == ["sysconfig"]
    os.chmod(str(fakehost / "etc/sysconfig/modules/toa.modules"), 0o644)
    toa = facts(run_module, bins={"dkms": None})
    assert toa["autoload"]["enabled"] is False
    assert "not executable" in toa["autoload"]["problems"][0]


def test_autoload_rc_local_and_vendor_quote_bug(fakehost, run_module):
    write(fakehost, "/etc/rc.d/rc.local",
          "#!/bin/bash\ntouch /var/lock/subsys/local\n\u201cmodprobe toa\u201d\n", mode=0o755)
    toa = facts(run_module, bins={"dkms": None})
    assert toa["autoload"]["enabled"] is False
    assert "typographic quotes" in toa["autoload"]["problems"][0]
    write(fakehost, "/etc/rc.d/rc.local",
          "#!/bin/bash\ntouch /var/lock/subsys/local\nmodprobe toa\n", mode=0o755)
    os.symlink("rc.d/rc.local", str(fakehost / "etc/rc.local"))
    toa = facts(run_module, bins={"dkms": None})
    assert toa["autoload"]["methods"] == ["rc-local"]
    assert toa["autoload"]["files"] == ["/etc/rc.d/rc.local"]


def test_autoload_rc_local_comment_and_non_executable(fakehost, run_module):
    write(fakehost, "/etc/rc.local", "#!/bin/sh -e\n# modprobe toa\nexit 0\n", mode=0o755)
    assert facts(run_module, bins={"dkms": None})["autoload"]["enabled"] is False
    write(fakehost, "/etc/rc.local", "#!/bin/sh -e\n/sbin/modprobe toa\nexit 0\n", mode=0o644)
    toa = facts(run_module, bins={"dkms": None})
    assert toa["autoload"]["enabled"] is False
    assert "not executable" in toa["autoload"]["problems"][0]


def test_etc_modules_is_detected(fakehost, run_module):
    write(fakehost, "/etc/modules", "# /etc/modules\nloop\ntoa\n")
    assert facts(run_module, bins={"dkms": None})["autoload"]["methods"] == ["etc-modules"]


def test_installed_toa_kernels_from_lib_modules_and_boot(fakehost, run_module, monkeypatch):
    os.makedirs(str(fakehost / "lib/modules/3.16.43.toa"))
    write(fakehost, "/boot/vmlinuz-3.16.43.toa", "")
    write(fakehost, "/boot/vmlinuz-4.4.87.toa", "")
    write(fakehost, "/boot/vmlinuz-6.1.0-18-amd64", "")
    toa = facts(run_module, bins={"dkms": None})
    assert toa["kernels"]["installed_toa"] == ["3.16.43.toa", "4.4.87.toa"]
    assert toa["kernels"]["running_is_toa"] is False
    write(fakehost, "/proc/sys/kernel/osrelease", "3.16.43.toa\n")
    toa = facts(run_module, bins={"dkms": None})
    assert toa["kernels"]["running_is_toa"] is True


def test_installed_kernels_from_boot_and_lib_modules_vmlinuz(fakehost, run_module):
    write(fakehost, "/boot/vmlinuz-6.1.0-18-amd64", "")
    write(fakehost, "/boot/vmlinuz-6.1.0-17-amd64", "")
    write(fakehost, "/lib/modules/5.14.0-362.el9.x86_64/vmlinuz", "")
    os.makedirs(str(fakehost / "lib/modules/6.1.0-10-amd64"))  # a leftover directory: no kernel
    toa = facts(run_module, bins={"dkms": None})
    assert toa["kernels"]["installed"] == ["5.14.0-362.el9.x86_64", "6.1.0-17-amd64", "6.1.0-18-amd64"]


def _kmod(release, version="2.0.1"):
    return {"file": "kmod/toa-kmod-%s_%s+k1_amd64.deb" % (release, version), "sha256": SHA, "version": version}


def test_module_plan_prebuilt_for_running_and_installed_kernels(fakehost, run_module):
    write(fakehost, "/boot/vmlinuz-6.1.0-18-amd64", "")
    write(fakehost, "/boot/vmlinuz-6.1.0-19-amd64", "")
    write(fakehost, "/boot/vmlinuz-6.1.0-17-amd64", "")
    toa = facts(run_module, {"module_packages": {r: _kmod(r) for r in ("6.1.0-18-amd64", "6.1.0-19-amd64")},
                             "module_package_base_url": "http://mirror/", "src_version": "2.0.1"},
                bins={"dkms": None})
    plan = toa["module_plan"]
    assert plan["source"] == "prebuilt"
    assert [i["kernel"] for i in plan["install"]] == ["6.1.0-18-amd64", "6.1.0-19-amd64"]
    assert plan["install"][0]["url"] == "http://mirror/kmod/toa-kmod-6.1.0-18-amd64_2.0.1+k1_amd64.deb"
    assert plan["without"] == ["6.1.0-17-amd64"]


def test_prebuilt_plan_says_what_dpkg_and_dkms_have_already(fakehost, run_module):
    write(fakehost, "/boot/vmlinuz-6.1.0-19-amd64", "")
    args = {"module_packages": {r: _kmod(r) for r in ("6.1.0-18-amd64", "6.1.0-19-amd64")},
            "module_package_base_url": "http://mirror/", "src_version": "2.0.1"}
    plan = facts(run_module, args, bins={"dkms": None})["module_plan"]
    assert [i["installed"] for i in plan["install"]] == [False, False]
    assert plan["dkms_left"] == []
    write(fakehost, "/var/lib/dpkg/status",
          "Package: toa-kmod-6.1.0-18-amd64\nStatus: install ok installed\nVersion: 2.0.1+k1\n\n"
          "Package: toa-kmod-6.1.0-19-amd64\nStatus: install ok installed\nVersion: 2.0.1+k0\n\n")
    os.makedirs(str(fakehost / "var/lib/dkms/toa/2.0.0/source"))
    plan = facts(run_module, args, bins={"dkms": None})["module_plan"]
    # the 6.1.0-19 package is another build than the entry names: it is installed again
    assert [(i["kernel"], i["installed"]) for i in plan["install"]] == [
        ("6.1.0-18-amd64", True), ("6.1.0-19-amd64", False)]
    assert plan["dkms_left"] == ["2.0.0"]
    # the DKMS plan reads neither
    plan = facts(run_module, dict(args, module_source="dkms"), bins={"dkms": None})["module_plan"]
    assert "dkms_left" not in plan and plan["install"] == []


def test_module_plan_prebuilt_only_without_a_package_is_a_route_error(fakehost, run_module):
    toa = facts(run_module, {"module_source": "prebuilt",
                             "module_packages": {"6.1.0-19-amd64": _kmod("6.1.0-19-amd64")},
                             "module_package_base_url": "http://mirror/", "src_version": "2.0.1"},
                bins={"dkms": None})
    assert toa["route"] is None and toa["module_plan"] is None
    assert "no package for the running kernel 6.1.0-18-amd64" in toa["route_error"]
    assert "toa_build_kmod_releases" in toa["route_error"]


def test_prebuilt_plan_skips_the_dkms_space_check(fakehost, run_module, monkeypatch):
    monkeypatch.setattr(toa_facts, "free_space", lambda path: {"checked": path, "free_mb": 10, "device": 1})
    toa = facts(run_module, {"module_source": "dkms"}, bins={"dkms": None})
    assert [p["check"] for p in toa["preflight"]["problems"]] == ["space"]
    toa = facts(run_module, {"module_packages": {"6.1.0-18-amd64": _kmod("6.1.0-18-amd64")},
                             "module_package_base_url": "http://mirror/"}, bins={"dkms": None})
    assert toa["module_plan"]["source"] == "prebuilt"
    assert toa["preflight"]["problems"] == []


def test_centos6_without_os_release_takes_package_route(fakehost, run_module, monkeypatch):
    os.remove(str(fakehost / "etc/os-release"))
    write(fakehost, "/etc/redhat-release", fixture_text("redhat-release", "centos6"))
    write(fakehost, "/proc/1/comm", "init\n")
    write(fakehost, "/proc/sys/kernel/osrelease", "2.6.32-754.35.1.el6.x86_64\n")
    image = "kernel-2.6.32-220.23.1.el6.toa.x86_64.rpm"
    args = {"catalogue": load_catalogue(), "package_base_url": "file:///srv/mirror",
            "package_checksums": {image: SHA}}
    # CentOS 6.10's kernel is newer than the vendor's 2.6.32-220.23.1 (CentOS 6.2).
    toa = facts(run_module, args, bins={"dkms": None})
    assert toa["route"] is None
    assert "older than the running kernel 2.6.32-754.35.1.el6.x86_64" in toa["route_error"]
    assert "toa_allow_older_kernel: true" in toa["route_error"]
    toa = facts(run_module, dict(args, allow_older_kernel=True), bins={"dkms": None})
    assert (toa["host"]["distribution"], toa["host"]["version"], toa["host"]["init"]) == (
        "CentOS", "6.10", "upstart")
    assert toa["route"]["route"] == "package"
    assert toa["route"]["package"]["files"] == [
        {"name": image, "url": "file:///srv/mirror/" + image, "sha256": SHA, "kind": "image"}]


def test_route_error_is_reported_not_failed(fakehost, run_module):
    write(fakehost, "/etc/os-release", fixture_text("os-release", "alpine319"))
    toa = facts(run_module, {"catalogue": load_catalogue()}, bins={"dkms": None})
    assert toa["route"] is None
    assert "Alpine 3.19.1" in toa["route_error"]
    assert "toa_strategy" in toa["route_error"]


def test_unverified_package_row_sends_auto_to_the_module_route(fakehost, run_module):
    write(fakehost, "/etc/os-release", fixture_text("os-release", "debian8"))
    write(fakehost, "/proc/sys/kernel/osrelease", "3.16.0-11-amd64\n")
    write(fakehost, "/proc/sys/kernel/version", "#1 SMP Debian 3.16.84-1 (2020-06-09)\n")
    toa = facts(run_module, {"catalogue": load_catalogue()}, bins={"dkms": None})
    assert toa["host"]["kernel_upstream"] == "3.16.84"
    assert toa["route"]["route"] == "module"
    assert "toa_package_checksums" in toa["route"]["reason"]
    assert "toa_allow_older_kernel" in toa["route"]["reason"]
    toa = facts(run_module, {"catalogue": load_catalogue(), "strategy": "package"},
                bins={"dkms": None})
    assert toa["route"] is None
    assert "toa_package_checksums" in toa["route_error"]
    toa = facts(run_module, {"catalogue": load_catalogue(), "allow_unverified": True,
                             "allow_older_kernel": True}, bins={"dkms": None})
    assert toa["route"]["package"]["verified"] is False


def test_ubuntu_upstream_version_comes_from_version_signature(fakehost, run_module):
    write(fakehost, "/etc/os-release", fixture_text("os-release", "ubuntu1604"))
    write(fakehost, "/proc/sys/kernel/osrelease", "4.4.0-210-generic\n")
    write(fakehost, "/proc/sys/kernel/version", "#242-Ubuntu SMP Fri Apr 16 09:57:56 UTC 2021\n")
    assert facts(run_module, bins={"dkms": None})["host"]["kernel_upstream"] == ""
    write(fakehost, "/proc/version_signature", "Ubuntu 4.4.0-210.242-generic 4.4.262\n")
    toa = facts(run_module, {"catalogue": load_catalogue(), "strategy": "package",
                             "allow_unverified": True}, bins={"dkms": None})
    assert toa["host"]["kernel_upstream"] == "4.4.262"
    assert "older than the running kernel 4.4.0-210-generic (upstream 4.4.262)" \
        in toa["route_error"]


def test_check_mode_is_the_same(fakehost, run_module):
    toa = facts(run_module, check_mode=True, bins={"dkms": None})
    assert toa["route"]["route"] == "module"


def test_bad_arguments_fail(fakehost, run_module):
    result = run_module(toa_facts, {"strategy": "magic"}, bins={"dkms": None})
    assert result["failed"] and "strategy" in result["msg"]
    result = run_module(toa_facts, {"name": "toa; rm -rf /"}, bins={"dkms": None})
    assert result["failed"] and "not a kernel module name" in result["msg"]


def test_systemd_runtime_dir_wins_over_pid1_name(fakehost, run_module):
    write(fakehost, "/proc/1/comm", "init\n")
    assert facts(run_module, bins={"dkms": None})["host"]["init"] == "sysvinit"
    os.makedirs(str(fakehost / "run/systemd/system"))
    assert facts(run_module, bins={"dkms": None})["host"]["init"] == "systemd"


# -- trusted sources: what the loaded module honours, and the warning of every run --------

def load_toa(root, parameters):
    write(root, "/proc/modules", "toa 16384 0 - Live 0xffffffffc0a1b000 (OE)\n")
    write(root, "/sys/module/toa/version", "2.0.0\n")
    for name, value in parameters.items():
        write(root, "/sys/module/toa/parameters/" + name, value + "\n")


@pytest.mark.parametrize("parameters, trusted, any_source", [
    ({"ipv4_kinds": "200", "trusted_cidrs": ""}, "", True),
    ({"ipv4_kinds": "200", "trusted_cidrs": "(null)"}, "", True),
    ({"ipv4_kinds": "200", "trusted_cidrs": "10.20.0.0/16,2001:db8:20::/48"},
     "10.20.0.0/16,2001:db8:20::/48", False),
    ({}, None, True),  # the vendor's module: no parameters, no filter
])
def test_loaded_module_says_whether_it_honours_any_source(fakehost, run_module, parameters,
                                                          trusted, any_source):
    load_toa(fakehost, parameters)
    module = facts(run_module, {"gather_dkms": False})["module"]
    assert (module["trusted_cidrs"], module["honours_any_source"]) == (trusted, any_source)


@pytest.fixture
def warnings(monkeypatch):
    seen = []
    monkeypatch.setattr(toa_facts.AnsibleModule, "warn", lambda self, text: seen.append(text))
    return seen


@pytest.mark.parametrize("params, warned", [
    ({"ipv4_kinds": "200", "ipv6_kinds": "253,254", "trusted_cidrs": ""}, True),
    ({"ipv4_kinds": "200"}, True),
    ({}, True),
    ({"ipv4_kinds": "200", "trusted_cidrs": "10.20.0.0/16"}, False),
    (None, False),  # playbooks/verify.yml and report.yml pass no params: no warning
])
def test_every_run_warns_while_trusted_cidrs_is_empty(fakehost, run_module, warnings, params,
                                                      warned):
    args = {"gather_dkms": False}
    if params is not None:
        args["params"] = params
    facts(run_module, args)
    assert bool(warnings) is warned
    if warned:
        assert "toa_params.trusted_cidrs is empty: TOA is honoured from any source" in warnings[0]


def test_vendor_kernel_route_warns_that_its_module_has_no_filter(fakehost, run_module, warnings):
    os.remove(str(fakehost / "etc/os-release"))
    write(fakehost, "/etc/redhat-release", fixture_text("redhat-release", "centos7"))
    write(fakehost, "/proc/sys/kernel/osrelease", "3.10.0-514.el7.x86_64\n")
    facts(run_module, {"gather_dkms": False, "catalogue": load_catalogue(),
                       "allow_unverified": True, "params": {"trusted_cidrs": ""}})
    assert len(warnings) == 1
    assert warnings[0].startswith("The TOA module of catalogue row centos7-x86_64 (the vendor's "
                                  "kernel) has no source filter")


# -- the module source directories the role recorded installing ------------------------------

def test_src_recorded_lists_only_the_role_s_source_directories(fakehost, run_module):
    assert facts(run_module, {"gather_dkms": False})["src_recorded"] == []
    write(fakehost, "/var/lib/toa-fleet/installed-src", "\n".join([
        "/usr/src/toa-1.0.0",
        "/usr/src/toa-2.0.0",
        "/usr/src/toa-2.0.0",          # written twice: listed once
        "  /usr/src/toa-2.1.0~rc1  ",
        "/usr/src/toa-../../etc",      # never a way out of /usr/src
        "/usr/src/toa-2.0.0/..",
        "/usr/src/toa-2.0.0/toa_main.c",
        "/usr/src/other-1.0",
        "/etc/passwd",
        "# a comment",
        ""]))
    assert facts(run_module, {"gather_dkms": False})["src_recorded"] == [
        "/usr/src/toa-1.0.0", "/usr/src/toa-2.0.0", "/usr/src/toa-2.1.0~rc1"]
    assert facts(run_module, {"gather_dkms": False, "name": "vtoa"})["src_recorded"] == []


# -- auto and the eBPF route (toa_ebpf_auto_releases) ----------------------------------

def _ebpf_ready(fakehost):
    write(fakehost, "/sys/kernel/btf/vmlinux", "")
    write(fakehost, "/proc/self/mounts",
          "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n"
          "bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0\n")


def test_auto_takes_ebpf_on_a_listed_release_of_a_fresh_host(fakehost, run_module):
    _ebpf_ready(fakehost)
    toa = facts(run_module, bins={"dkms": None, "modinfo": None})
    assert toa["route"]["route"] == "module"   # no list: the module, as before
    toa = facts(run_module, {"ebpf_auto_releases": ["debian 12"]},
                bins={"dkms": None, "modinfo": None})
    assert toa["route"]["route"] == "ebpf" and toa["route"]["strategy"] == "auto"
    assert toa["module_plan"] is None


@pytest.mark.parametrize("setup, words", [
    (lambda h: write(h, "/proc/modules", "toa 16384 0 - Live 0x0 (OE)\n"), "toa module is loaded"),
    (lambda h: write(h, "/etc/modules-load.d/toa.conf", "toa\n"), "/etc/modules-load.d/toa.conf"),
    (lambda h: os.makedirs(str(h / "var/lib/dkms/toa/2.0.1/source")), "DKMS has toa 2.0.1"),
    (lambda h: write(h, "/lib/modules/6.1.0-18-amd64/modules.dep",
                     "updates/toa.ko:\n"), "/lib/modules/6.1.0-18-amd64/updates/toa.ko is installed"),
])
def test_auto_keeps_the_module_route_on_a_host_that_has_it(fakehost, run_module, setup, words):
    _ebpf_ready(fakehost)
    setup(fakehost)
    toa = facts(run_module, {"ebpf_auto_releases": ["debian 12"]},
                bins={"dkms": None, "modinfo": None})
    assert toa["route"]["route"] == "module"
    assert words in toa["route"]["reason"], toa["route"]["reason"]


@pytest.mark.parametrize("args, words", [
    ({"module_source": "dkms"}, "toa_module_source is dkms"),
    ({"module_packages": {"6.1.0-18-amd64": {"sha256": SHA, "version": "2.0.1+k1"}},
      "module_package_base_url": "http://mirror/", "src_version": "2.0.1"},
     "toa_module_packages has a package for kernel 6.1.0-18-amd64"),
])
def test_auto_keeps_the_module_the_settings_ask_for(fakehost, run_module, args, words):
    _ebpf_ready(fakehost)
    toa = facts(run_module, dict(args, ebpf_auto_releases=["debian 12"]),
                bins={"dkms": None, "modinfo": None})
    assert toa["route"]["route"] == "module" and words in toa["route"]["reason"]
