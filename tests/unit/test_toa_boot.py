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


def test_grub_entry_at_top_level_without_ids():
    cfg = ("menuentry 'CentOS Linux (3.10.0-1160.el7.x86_64) 7 (Core)' --class centos {\n"
           "  linux16 /vmlinuz-3.10.0-1160.el7.x86_64\n}\n"
           "menuentry \"Debian GNU/Linux, with Linux 6.1.0-18-amd64\" --id 'd-6.1.0-18-amd64' {\n}\n")
    assert toa_boot.grub_entry(cfg, "6.1.0-18-amd64") == "d-6.1.0-18-amd64"


def test_grub_reboot_into_the_newest_distribution_kernel(root, run_module, fake_commands):
    kernels(root, "4.4.87.toa", "4.4.0-210-generic", "4.4.0-21-generic")
    (root / "boot" / "grub").mkdir()
    (root / "boot" / "grub" / "grub.cfg").write_text(fixture_text("grub-ubuntu1604-toa.cfg"))
    fake_commands.add(["grub-editenv", "list"], out="saved_entry=0\n")
    result = run_module(toa_boot, {}, bins={"grubby": None, "grub2-reboot": None})
    entry = SUBMENU + ">gnulinux-4.4.0-210-generic-advanced-" + UUID
    assert result["changed"] and not result.get("failed"), result
    assert result["release"] == "4.4.0-210-generic"
    assert result["kernels"] == ["4.4.87.toa", "4.4.0-210-generic", "4.4.0-21-generic"]
    assert result["toa_kernels"] == ["4.4.87.toa"]
    assert (result["bootloader"], result["entry"]) == ("grub", entry)
    assert result["commands"] == [["/usr/sbin/grub-reboot", entry]]
    assert fake_commands.ran(["grub-reboot", entry])


def test_grub_reboot_already_set_changes_nothing(root, run_module, fake_commands):
    kernels(root, "4.4.87.toa", "4.4.0-210-generic")
    (root / "boot" / "grub").mkdir()
    (root / "boot" / "grub" / "grub.cfg").write_text(fixture_text("grub-ubuntu1604-toa.cfg"))
    entry = SUBMENU + ">gnulinux-4.4.0-210-generic-advanced-" + UUID
    fake_commands.add(["grub-editenv", "list"], out="next_entry=%s\n" % entry)
    fake_commands.add(["dpkg-query", "-S"], prefix=True, out=DPKG_S)
    fake_commands.strict = True
    result = run_module(toa_boot, {}, bins={"grubby": None})
    assert not result["changed"], result
    assert result["commands"] == []


def test_check_mode_runs_no_change(root, run_module, fake_commands):
    kernels(root, "3.10.0-693.el7.centos.toa", "3.10.0-1160.el7.x86_64")
    fake_commands.add(["grubby", "--default-kernel"], out="/boot/vmlinuz-3.10.0-693.el7.centos.toa\n")
    fake_commands.add(["rpm", "-qf"], prefix=True, out="kernel-3.10.0-693.el7.centos.toa.x86_64\n")
    fake_commands.strict = True
    result = run_module(toa_boot, {}, check_mode=True, bins={"dpkg-query": None})
    assert result["changed"]
    assert result["bootloader"] == "grubby"
    assert result["commands"] == [["/usr/sbin/grubby", "--set-default", "/boot/vmlinuz-3.10.0-1160.el7.x86_64"]]
    assert result["msg"].startswith("would make grubby boot kernel 3.10.0-1160.el7.x86_64")


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
    (root / "boot" / "grub").mkdir()
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
