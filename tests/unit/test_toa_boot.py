"""toa_boot: pick a distribution kernel next to a TOA kernel and make the bootloader start it."""

import os

import pytest
import toa_boot
import toa_host
from conftest import fixture_text

UUID = "5a1b2c3d-0000-4e5f-8a9b-0123456789ab"
SUBMENU = "gnulinux-advanced-" + UUID

DPKG_S = (
    "linux-image-4.4.87.toa: /boot/vmlinuz-4.4.87.toa\n"
    "linux-headers-4.4.87.toa: /usr/src/linux-headers-4.4.87.toa\n"
    "diversion by dash from: /bin/sh\n"
)


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(toa_host, "ROOT", str(tmp_path))
    # Not a TOA kernel, and not one of the releases in these tests.
    monkeypatch.setattr(toa_boot, "running_kernel", lambda: "6.1.0-18-amd64")
    (tmp_path / "boot").mkdir()
    return tmp_path


def kernels(root, *releases):
    for release in releases:
        (root / "boot" / ("vmlinuz-" + release)).write_text("")


def test_release_order_is_by_version():
    releases = ["4.4.0-21-generic", "4.4.87.toa", "4.4.0-210-generic", "4.19.0-9-amd64", "4.19.0-10-amd64"]
    assert sorted(releases, key=toa_boot.release_key, reverse=True) == [
        "4.19.0-10-amd64", "4.19.0-9-amd64", "4.4.87.toa", "4.4.0-210-generic", "4.4.0-21-generic"]


def test_grub_entry_in_the_advanced_submenu():
    cfg = fixture_text("grub-ubuntu1604-toa.cfg")
    assert toa_boot.grub_entry(cfg, "4.4.0-210-generic") == (
        SUBMENU + ">gnulinux-4.4.0-210-generic-advanced-" + UUID)
    assert toa_boot.grub_entry(cfg, "4.4.0-21-generic") == SUBMENU + ">gnulinux-4.4.0-21-generic-advanced-" + UUID
    assert toa_boot.grub_entry(cfg, "4.4.87.toa") == SUBMENU + ">gnulinux-4.4.87.toa-advanced-" + UUID
    assert toa_boot.grub_entry(cfg, "5.4.0-1-generic") is None


def test_grub_entry_does_not_take_a_longer_release_with_the_same_start():
    cfg = "\n".join(
        "submenu 'Advanced' $menuentry_id_option 'gnulinux-advanced-U' {" if i == 0 else
        "\tmenuentry 'Debian GNU/Linux, with Linux %s' --class os $menuentry_id_option "
        "'gnulinux-%s-advanced-U' {\n\t}" % (r, r)
        for i, r in enumerate(["", "6.1.192-toa-broken", "6.1.192-toa", "6.1.0-56-amd64"])) + "\n}\n"
    assert toa_boot.grub_entry(cfg, "6.1.192-toa") == "gnulinux-advanced-U>gnulinux-6.1.192-toa-advanced-U"
    assert toa_boot.grub_entry(cfg, "6.1.192-toa-broken") == (
        "gnulinux-advanced-U>gnulinux-6.1.192-toa-broken-advanced-U")
    assert toa_boot.grub_entry(cfg, "6.1.192") is None


def test_grub_entry_at_top_level_without_ids():
    cfg = ("menuentry 'CentOS Linux (3.10.0-1160.el7.x86_64) 7 (Core)' --class centos {\n"
           "  linux16 /vmlinuz-3.10.0-1160.el7.x86_64\n}\n"
           "menuentry \"Debian GNU/Linux, with Linux 6.1.0-18-amd64\" --id 'd-6.1.0-18-amd64' {\n}\n")
    assert toa_boot.grub_entry(cfg, "6.1.0-18-amd64") == "d-6.1.0-18-amd64"


def grub_host(root, default_text="GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\n"):
    (root / "boot" / "grub").mkdir()
    (root / "boot" / "grub" / "grub.cfg").write_text(fixture_text("grub-ubuntu1604-toa.cfg"))
    (root / "etc" / "default" / "grub.d").mkdir(parents=True)
    (root / "etc" / "default" / "grub").write_text(default_text)


def entry_of(release):
    return SUBMENU + ">gnulinux-%s-advanced-%s" % (release, UUID)


def test_effective_grub_default_is_the_last_assignment():
    assert toa_boot.grub_default_setting(["GRUB_DEFAULT=0\n", "# GRUB_DEFAULT=saved\n"]) == "0"
    assert toa_boot.grub_default_setting(["GRUB_DEFAULT=0\n", "export GRUB_DEFAULT=\"saved\"  # ok\n"]) == "saved"
    assert toa_boot.grub_default_setting(["GRUB_DEFAULT='Advanced options>x'\n"]) == "Advanced options>x"
    assert toa_boot.grub_default_setting(["GRUB_TIMEOUT=5\n"]) is None


def test_drop_ins_are_read_in_grub_mkconfig_order(root):
    grub_host(root)
    for name in ("init-select.cfg", "50-cloudimg.cfg", "notes.txt"):
        (root / "etc" / "default" / "grub.d" / name).write_text("")
    assert toa_boot.grub_default_files() == [
        "/etc/default/grub", "/etc/default/grub.d/50-cloudimg.cfg", "/etc/default/grub.d/init-select.cfg"]


def test_boot_once_keeps_the_running_kernel_as_the_saved_default(root, run_module, fake_commands, monkeypatch):
    kernels(root, "4.4.87.toa", "4.4.0-210-generic")
    grub_host(root)
    monkeypatch.setattr(toa_boot, "running_kernel", lambda: "4.4.0-210-generic")
    fake_commands.add(["grub-editenv", "list"], out="")
    fake_commands.add(["dpkg-query", "-S"], prefix=True, out=DPKG_S)
    fake_commands.add(["update-grub"])
    fake_commands.add(["grub-set-default"], prefix=True)
    fake_commands.add(["grub-reboot"], prefix=True)
    fake_commands.strict = True
    result = run_module(toa_boot, {"release": "4.4.87.toa", "mode": "once"}, bins={"grubby": None})
    assert result["changed"] and not result.get("failed"), result
    assert (result["once"], result["default_release"]) == (True, "4.4.0-210-generic")
    assert result["commands"] == [
        ["write", "/etc/default/grub.d/99-toa-fleet.cfg", "GRUB_DEFAULT=saved"],
        ["/usr/sbin/update-grub"],
        ["/usr/sbin/grub-set-default", entry_of("4.4.0-210-generic")],
        ["/usr/sbin/grub-reboot", entry_of("4.4.87.toa")]]
    dropin = (root / "etc" / "default" / "grub.d" / "99-toa-fleet.cfg").read_text()
    assert "GRUB_DEFAULT=saved" in dropin.splitlines()
    assert "once (the default stays 4.4.0-210-generic)" in result["msg"]


def test_boot_once_already_planned_changes_nothing(root, run_module, fake_commands, monkeypatch):
    kernels(root, "4.4.87.toa", "4.4.0-210-generic")
    grub_host(root, "GRUB_DEFAULT=saved\n")
    monkeypatch.setattr(toa_boot, "running_kernel", lambda: "4.4.0-210-generic")
    fake_commands.add(["grub-editenv", "list"], out="saved_entry=%s\nnext_entry=%s\n"
                      % (entry_of("4.4.0-210-generic"), entry_of("4.4.87.toa")))
    fake_commands.add(["dpkg-query", "-S"], prefix=True, out=DPKG_S)
    fake_commands.strict = True
    result = run_module(toa_boot, {"release": "4.4.87.toa", "mode": "once"}, bins={"grubby": None})
    assert not result["changed"], result
    assert result["commands"] == []
    assert not (root / "etc" / "default" / "grub.d" / "99-toa-fleet.cfg").exists()


def test_verified_kernel_becomes_the_saved_default(root, run_module, fake_commands, monkeypatch):
    kernels(root, "4.4.87.toa", "4.4.0-210-generic")
    grub_host(root)
    (root / "etc" / "default" / "grub.d" / "99-toa-fleet.cfg").write_text(toa_boot.GRUB_DROPIN_TEXT)
    monkeypatch.setattr(toa_boot, "running_kernel", lambda: "4.4.87.toa")
    fake_commands.add(["grub-editenv", "list"], out="saved_entry=%s\n" % entry_of("4.4.0-210-generic"))
    fake_commands.add(["grub-set-default"], prefix=True)
    fake_commands.strict = True
    result = run_module(toa_boot, {"release": "4.4.87.toa"}, bins={"grubby": None})
    assert result["commands"] == [["/usr/sbin/grub-set-default", entry_of("4.4.87.toa")]], result
    assert (result["once"], result["default_release"]) == (False, "4.4.87.toa")
    fake_commands.add(["grub-editenv", "list"], out="saved_entry=%s\n" % entry_of("4.4.87.toa"))
    again = run_module(toa_boot, {"release": "4.4.87.toa"}, bins={"grubby": None})
    assert not again["changed"] and again["commands"] == []


def test_removal_makes_the_newest_distribution_kernel_the_default(root, run_module, fake_commands, monkeypatch):
    kernels(root, "4.4.87.toa", "4.4.0-210-generic", "4.4.0-21-generic")
    grub_host(root, "GRUB_DEFAULT=saved\n")
    monkeypatch.setattr(toa_boot, "running_kernel", lambda: "4.4.87.toa")
    fake_commands.add(["grub-editenv", "list"],
                      out="saved_entry=%s\nnext_entry=%s\n" % (entry_of("4.4.87.toa"), entry_of("4.4.87.toa")))
    result = run_module(toa_boot, {}, bins={"grubby": None, "grub2-reboot": None})
    assert result["release"] == "4.4.0-210-generic"
    assert result["toa_kernels"] == ["4.4.87.toa"]
    assert result["commands"] == [["/usr/sbin/grub-set-default", entry_of("4.4.0-210-generic")],
                                  ["/usr/sbin/grub-editenv", "-", "unset", "next_entry"]]


def test_boot_once_in_check_mode_writes_nothing(root, run_module, fake_commands, monkeypatch):
    kernels(root, "4.4.87.toa", "4.4.0-210-generic")
    grub_host(root)
    monkeypatch.setattr(toa_boot, "running_kernel", lambda: "4.4.0-210-generic")
    fake_commands.add(["grub-editenv", "list"], out="")
    fake_commands.add(["dpkg-query", "-S"], prefix=True, out=DPKG_S)
    fake_commands.strict = True  # only read-only queries may run
    result = run_module(toa_boot, {"release": "4.4.87.toa", "mode": "once"}, check_mode=True,
                        bins={"grubby": None})
    assert result["changed"] and len(result["commands"]) == 4
    assert result["msg"].startswith("would make grub boot kernel 4.4.87.toa once")
    assert not (root / "etc" / "default" / "grub.d" / "99-toa-fleet.cfg").exists()


def test_grubby_boot_once_restores_the_running_default_then_grub2_reboot(root, run_module, fake_commands,
                                                                        monkeypatch):
    kernels(root, "3.10.0-693.el7.centos.toa", "3.10.0-1160.el7.x86_64")
    monkeypatch.setattr(toa_boot, "running_kernel", lambda: "3.10.0-1160.el7.x86_64")
    # Installing the kernel rpm made it the default (UPDATEDEFAULT=yes).
    fake_commands.add(["grubby", "--default-kernel"], out="/boot/vmlinuz-3.10.0-693.el7.centos.toa\n")
    fake_commands.add(["grubby", "--info", "/boot/vmlinuz-3.10.0-693.el7.centos.toa"],
                      out='index=0\nkernel=/boot/vmlinuz-3.10.0-693.el7.centos.toa\n'
                          'title="CentOS Linux (3.10.0-693.el7.centos.toa) 7 (Core)"\n')
    fake_commands.add(["grub2-editenv", "list"], out="saved_entry=CentOS Linux (3.10.0-1160.el7.x86_64) 7\n")
    fake_commands.add(["grubby", "--set-default"], prefix=True)
    fake_commands.add(["grub2-reboot"], prefix=True)
    fake_commands.add(["rpm", "-qf"], prefix=True, out="kernel-3.10.0-693.el7.centos.toa.x86_64\n")
    fake_commands.strict = True
    result = run_module(toa_boot, {"release": "3.10.0-693.el7.centos.toa", "mode": "once"},
                        bins={"dpkg-query": None, "grub-reboot": None, "grub-editenv": None})
    assert result["commands"] == [["/usr/sbin/grubby", "--set-default", "/boot/vmlinuz-3.10.0-1160.el7.x86_64"],
                                  ["/usr/sbin/grub2-reboot", "0"]], result
    assert (result["once"], result["default_release"]) == (True, "3.10.0-1160.el7.x86_64")


def test_grubby_prefers_the_bls_id_for_grub2_reboot():
    info = toa_boot.parse_grubby_info('index=2\nkernel="/boot/vmlinuz-5.14.0-362.toa"\n'
                                      'id="3f2c-5.14.0-362.toa"\nindex=3\nkernel="/boot/x"\n')
    assert info == {"index": "2", "kernel": "/boot/vmlinuz-5.14.0-362.toa", "id": "3f2c-5.14.0-362.toa"}


def test_grub_legacy_has_no_boot_once_and_says_so(root, run_module, fake_commands, monkeypatch):
    kernels(root, "2.6.32-754.toa", "2.6.32-754.el6.x86_64")
    monkeypatch.setattr(toa_boot, "running_kernel", lambda: "2.6.32-754.el6.x86_64")
    fake_commands.add(["grubby", "--default-kernel"], out="/boot/vmlinuz-2.6.32-754.el6.x86_64\n")
    fake_commands.add(["grubby", "--set-default"], prefix=True)
    fake_commands.add(["rpm", "-qf"], prefix=True, out="kernel-2.6.32-754.toa.x86_64\n")
    fake_commands.strict = True
    result = run_module(toa_boot, {"release": "2.6.32-754.toa", "mode": "once"},
                        bins={"dpkg-query": None, "grub-reboot": None, "grub2-reboot": None})
    assert result["commands"] == [["/usr/sbin/grubby", "--set-default", "/boot/vmlinuz-2.6.32-754.toa"]]
    assert result["once"] is False and result["default_release"] == "2.6.32-754.toa"
    assert "no one-time boot here" in result["msg"]


def test_check_mode_runs_no_change(root, run_module, fake_commands):
    kernels(root, "3.10.0-693.el7.centos.toa", "3.10.0-1160.el7.x86_64")
    fake_commands.add(["grubby", "--default-kernel"], out="/boot/vmlinuz-3.10.0-693.el7.centos.toa\n")
    fake_commands.add(["rpm", "-qf"], prefix=True, out="kernel-3.10.0-693.el7.centos.toa.x86_64\n")
    fake_commands.strict = True
    result = run_module(toa_boot, {}, check_mode=True, bins={"dpkg-query": None})
    assert result["changed"]
    assert result["bootloader"] == "grubby"
    assert result["commands"] == [["/usr/sbin/grubby", "--set-default", "/boot/vmlinuz-3.10.0-1160.el7.x86_64"]]
    assert result["msg"].startswith("would make grubby boot kernel 3.10.0-1160.el7.x86_64 by default")


def test_grubby_set_default_and_idempotence(root, run_module, fake_commands):
    kernels(root, "3.10.0-693.el7.centos.toa", "3.10.0-1160.el7.x86_64", "3.10.0-1160.el7.x86_64.old")
    fake_commands.add(["grubby", "--default-kernel"], out="/boot/vmlinuz-3.10.0-693.el7.centos.toa\n")
    result = run_module(toa_boot, {})
    assert result["changed"]
    assert fake_commands.ran(["grubby", "--set-default", "/boot/vmlinuz-3.10.0-1160.el7.x86_64"])
    fake_commands.add(["grubby", "--default-kernel"], out="/boot/vmlinuz-3.10.0-1160.el7.x86_64\n")
    again = run_module(toa_boot, {})
    assert not again["changed"]


def test_no_distribution_kernel_says_what_to_install(root, run_module):
    kernels(root, "4.4.87.toa")
    result = run_module(toa_boot, {})
    assert result["failed"]
    assert "no distribution kernel is installed next to the TOA kernel(s) 4.4.87.toa" in result["msg"]


def test_explicit_release_must_be_installed(root, run_module):
    kernels(root, "4.4.87.toa", "4.4.0-210-generic")
    result = run_module(toa_boot, {"release": "4.4.0-9-generic"})
    assert result["failed"]
    assert "4.4.0-9-generic is not installed" in result["msg"]


def test_missing_grub_entry_says_to_regenerate(root, run_module):
    kernels(root, "4.4.87.toa", "4.4.0-210-generic")
    grub_host(root)
    (root / "boot" / "grub" / "grub.cfg").write_text("menuentry 'x' --id 'y' {\n}\n")
    result = run_module(toa_boot, {}, bins={"grubby": None})
    assert result["failed"]
    assert "no menu entry for kernel 4.4.0-210-generic: run update-grub" in result["msg"]
    assert os.path.basename(result["msg"].split()[0]) == "grub.cfg"


def test_dpkg_owner_parsing():
    assert toa_boot.parse_dpkg_owners(DPKG_S + "libc6:amd64, libc6:i386: /usr/share/doc/x\n") == [
        "linux-image-4.4.87.toa", "linux-headers-4.4.87.toa", "libc6"]


def test_rpm_owner_parsing():
    out = ("kernel-3.10.0-693.el7.centos.toa.x86_64\n"
           "file /usr/src/kernels/3.10.0-693.el7.centos.toa is not owned by any package\n"
           "error: file /usr/src/kernels/x: No such file or directory\n")
    assert toa_boot.parse_rpm_owners(out) == ["kernel-3.10.0-693.el7.centos.toa.x86_64"]


def test_packages_of_toa_kernels_that_do_not_run(root, run_module, fake_commands, monkeypatch):
    kernels(root, "4.4.87.toa", "4.4.0-210-generic")
    monkeypatch.setattr(toa_boot, "running_kernel", lambda: "4.4.0-210-generic")
    fake_commands.add(["dpkg-query", "-S", "/boot/vmlinuz-4.4.87.toa", "/usr/src/linux-headers-4.4.87.toa"],
                      out=DPKG_S, rc=0)
    fake_commands.strict = True
    result = run_module(toa_boot, {"boot": False}, bins={"grubby": None})
    assert not result["changed"] and not result.get("failed"), result
    assert result["packages"] == ["linux-image-4.4.87.toa", "linux-headers-4.4.87.toa"]
    assert result["toa_kernels"] == ["4.4.87.toa"]
    assert "release" not in result


def test_running_toa_kernel_is_not_offered_for_removal(root, run_module, fake_commands, monkeypatch):
    kernels(root, "3.10.0-693.el7.centos.toa", "3.10.0-1160.el7.x86_64")
    monkeypatch.setattr(toa_boot, "running_kernel", lambda: "3.10.0-693.el7.centos.toa")
    fake_commands.add(["grubby", "--default-kernel"], out="/boot/vmlinuz-3.10.0-1160.el7.x86_64\n")
    fake_commands.strict = True
    result = run_module(toa_boot, {}, bins={"dpkg-query": None})
    assert result["packages"] == []
    assert not result["changed"]
    assert result["release"] == "3.10.0-1160.el7.x86_64"


def test_rpm_hosts_query_rpm(root, run_module, fake_commands, monkeypatch):
    kernels(root, "3.10.0-693.el7.centos.toa", "3.10.0-1160.el7.x86_64")
    monkeypatch.setattr(toa_boot, "running_kernel", lambda: "3.10.0-1160.el7.x86_64")
    fake_commands.add(["rpm", "-qf", "/boot/vmlinuz-3.10.0-693.el7.centos.toa",
                       "/usr/src/kernels/3.10.0-693.el7.centos.toa"], rc=1,
                      out="kernel-3.10.0-693.el7.centos.toa.x86_64\n"
                          "file /usr/src/kernels/3.10.0-693.el7.centos.toa is not owned by any package\n")
    result = run_module(toa_boot, {"boot": False}, bins={"dpkg-query": None})
    assert result["packages"] == ["kernel-3.10.0-693.el7.centos.toa.x86_64"]
