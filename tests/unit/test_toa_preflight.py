"""Preflight: the pure checks (module_utils/toa_preflight.py) and what toa_facts
reads for them from a fake host tree."""

import os

import pytest
import toa_facts
import toa_preflight as pf
import toa_route
from conftest import debian12_host, fixture_text, load_catalogue, write

GUID = pf.EFI_GLOBAL_GUID

# Realistic /proc/modules lines: Debian 12 guest with our module, and Alibaba
# Cloud Linux's vtoa next to it.
PROC_MODULES_OURS = ("toa 40960 0 - Live 0xffffffffc0a1b000 (OE)\n"
                     "nf_tables 290816 0 - Live 0x0000000000000000\n")
PROC_MODULES_VTOA = "vtoa 28672 0 - Live 0xffffffffc0654000 (OE)\n" + PROC_MODULES_OURS


def disk(boot=4854, root=4854, same=True):
    """Readings as free_space() returns them; one filesystem unless same is False."""
    root_dev, boot_dev = 2049, (2049 if same else 2050)
    return {
        "/boot": {"checked": "/boot", "device": boot_dev, "free_mb": boot},
        "/": {"checked": "/", "device": root_dev, "free_mb": root},
        "/usr/src": {"checked": "/usr/src", "device": root_dev, "free_mb": root},
        "/var/lib/dkms": {"checked": "/var/lib", "device": root_dev, "free_mb": root},
    }


def readings(**over):
    base = {
        "disk": disk(),
        "bootloader": {"kind": "grub2", "missing": []},
        "security": pf.signing_state("none", False, False),
        "loaded": {},
        "signing": {"key": "", "cert": ""},
    }
    base["security"]["secure_boot"] = False
    base.update(over)
    return base


def checks(route, got, **settings):
    settings.setdefault("name", "toa")
    return [(p["check"], p["msg"]) for p in pf.problems(route, got, settings)]


# -- parsers -----------------------------------------------------------------------------

@pytest.mark.parametrize("text, mode", [
    ("[none] integrity confidentiality\n", "none"),
    ("none [integrity] confidentiality\n", "integrity"),
    ("none integrity [confidentiality]\n", "confidentiality"),
    ("", None),
    (None, None),
])
def test_parse_lockdown(text, mode):
    assert pf.parse_lockdown(text) == mode


@pytest.mark.parametrize("data, state", [
    (b"\x06\x00\x00\x00\x01", True),   # attributes NV|BS|RT, value 1
    (b"\x06\x00\x00\x00\x00", False),
    (b"\x06\x00", None),
    (None, None),
])
def test_parse_secure_boot(data, state):
    assert pf.parse_secure_boot(data) is state


def test_signing_state_reasons():
    assert pf.signing_state("none", False, False) == {"required": False, "reasons": []}
    state = pf.signing_state("integrity", True, True)
    assert state["required"]
    assert state["reasons"] == ["Secure Boot is enabled", "kernel lockdown is integrity",
                                "module.sig_enforce is on"]


@pytest.mark.parametrize("bins, cfg, kind, missing", [
    ({"grubby": "/usr/sbin/grubby"}, None, "grubby", []),
    ({"grub-reboot": "/usr/sbin/grub-reboot", "grub-set-default": "/usr/sbin/grub-set-default"},
     "/boot/grub/grub.cfg", "grub2", []),
    ({"grub-reboot": "/usr/sbin/grub-reboot", "grub-set-default": "/usr/sbin/grub-set-default"},
     None, "unknown", ["/boot/grub/grub.cfg"]),
    ({}, None, "unknown", ["grub-reboot", "grub-set-default", "/boot/grub/grub.cfg"]),
])
def test_bootloader_kind(bins, cfg, kind, missing):
    assert pf.bootloader_kind(bins, cfg) == {"kind": kind, "missing": missing}


# -- problems ------------------------------------------------------------------------------

def test_a_healthy_host_has_no_problems():
    for route in ("package", "module", "kernel"):
        assert checks(route, readings()) == []


def test_kinds_the_kernel_uses_stop_every_route_even_when_checks_are_ignored():
    for route in ("package", "module", "kernel"):
        found = checks(route, readings(), params={"ipv4_kinds": "200", "ipv6_kinds": "30"},
                       ignore=list(pf.CHECKS))
        assert [c for c, _m in found] == ["params"]
        assert "toa_params.ipv6_kinds has 30 (MPTCP)" in found[0][1]
    assert checks("module", readings(), params={"ipv4_kinds": ""})[0][0] == "params"
    assert checks("module", readings(), params={"ipv4_kinds": "254,200"}) == []


def test_space_sums_boot_and_root_on_one_filesystem():
    # 600 MB free on a / that holds /boot: 150 + 500 do not fit.
    found = checks("package", readings(disk=disk(boot=600, root=600)))
    assert len(found) == 1 and found[0][0] == "space"
    assert "The filesystem of /boot and / has 600 MB free but the package route needs 650 MB" in found[0][1]
    assert "toa_preflight_free_mb: boot=150, root=500" in found[0][1]


def test_space_separate_boot_partition():
    found = checks("kernel", readings(disk=disk(boot=120, root=4000, same=False)))
    assert [c for c, _m in found] == ["space"]
    assert "The filesystem of /boot has 120 MB free but the kernel route needs 150 MB" in found[0][1]


def test_space_module_route_counts_dkms_once_and_honours_overrides():
    got = readings(disk=disk(boot=10, root=250))
    found = checks("module", got)
    assert len(found) == 1
    assert "The filesystem of /var/lib/dkms and /usr/src has 250 MB free but the module route needs 300 MB" \
        in found[0][1]
    assert checks("module", got, free_mb={"dkms": 200}) == []
    assert checks("module", got, free_mb={"dkms": 0}) == []
    assert checks("module", got, ignore=["space"]) == []


def test_unknown_bootloader_stops_kernel_routes_only():
    got = readings(bootloader={"kind": "unknown", "missing": ["grub-reboot"]})
    found = checks("package", got)
    assert [c for c, _m in found] == ["bootloader"]
    assert "missing: grub-reboot" in found[0][1]
    assert "toa_preflight_ignore: [bootloader]" in found[0][1]
    assert checks("module", got) == []
    assert checks("package", got, ignore=["bootloader"]) == []


def test_conflicting_module_loaded():
    got = readings(loaded={"vtoa": {"parameters": []}})
    found = checks("module", got, conflicting=["vtoa"])
    assert [c for c, _m in found] == ["conflicts"]
    assert "vtoa is loaded" in found[0][1] and "modprobe -r vtoa" in found[0][1]
    assert checks("package", got, conflicting=["vtoa"]) != []
    assert checks("module", got, conflicting=["vtoa"], ignore=["conflicts"]) == []


def test_foreign_toa_stops_the_module_route_but_not_the_package_route():
    foreign = {"toa": {"version": None, "srcversion": "8C1A2B3C4D5E6F708192A3B",
                       "parameters": []}}
    found = checks("module", readings(loaded=foreign))
    assert [c for c, _m in found] == ["conflicts"]
    assert "not this project's" in found[0][1] and "8C1A2B3C4D5E6F708192A3B" in found[0][1]
    assert checks("package", readings(loaded=foreign)) == []
    ours = {"toa": {"version": "1.0.0", "srcversion": "X",
                    "parameters": ["enabled", "ipv4_kinds", "ipv6_kinds", "trusted_cidrs"]}}
    assert checks("module", readings(loaded=ours)) == []


def test_lockdown_needs_a_signing_key_on_the_module_route():
    got = readings(security=dict(pf.signing_state("integrity", False, False),
                                 secure_boot=False))
    found = checks("module", got)
    assert [c for c, _m in found] == ["secure_boot"]
    assert "kernel lockdown is integrity" in found[0][1]
    assert "Set toa_dkms_signing_key and toa_dkms_signing_cert" in found[0][1]
    signed = dict(got, signing={"key": "/root/mok.key", "cert": "/root/mok.der",
                                "key_exists": True, "cert_exists": True})
    assert checks("module", signed) == []
    # lockdown alone does not stop a new kernel from booting
    assert checks("package", got) == []


def test_secure_boot_stops_the_package_route():
    got = readings(security=dict(pf.signing_state("integrity", True, False), secure_boot=True))
    found = checks("package", got, row_id="ubuntu1604-x86_64")
    assert [c for c, _m in found] == ["secure_boot"]
    assert "ubuntu1604-x86_64 is not signed" in found[0][1]
    assert checks("package", got, ignore=["secure_boot"]) == []


@pytest.mark.parametrize("signing, phrase", [
    ({"key": "/root/mok.key", "cert": ""}, "Set both toa_dkms_signing_key and"),
    ({"key": "", "cert": "/root/mok.der"}, "set is the certificate"),
    ({"key": "mok.key", "cert": "/root/mok.der", "cert_exists": True},
     "toa_dkms_signing_key must be an absolute path"),
    ({"key": "/root/mok.key", "cert": "/root/mok.der", "key_exists": True,
      "cert_exists": False}, "toa_dkms_signing_cert is /root/mok.der, which does not exist"),
])
def test_signing_settings(signing, phrase):
    found = checks("module", readings(signing=signing), ignore=list(pf.CHECKS))
    assert len(found) == 1 and found[0][0] == "signing"
    assert phrase in found[0][1]
    # the package route does not build a module: nothing to sign
    assert checks("package", readings(signing=signing)) == []


# -- unsupported OS and arch: the route selection refuses them -----------------------------

def _host(os_release, machine, kernel):
    return toa_route.identify_host(os_release, "", machine, kernel, "systemd")


def test_unsupported_arch_has_no_route():
    host = _host(fixture_text("os-release", "debian12"), "riscv64", "6.1.0-18-riscv64")
    with pytest.raises(toa_route.RouteError) as err:
        toa_route.select_route(host, load_catalogue(), strategy="package")
    assert "no catalogue row matches Debian 12 on riscv64" in str(err.value)


def test_unsupported_os_has_no_route():
    text = 'ID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME="Alpine Linux v3.19"\n'
    host = _host(text, "x86_64", "6.6.14-0-lts")
    with pytest.raises(toa_route.RouteError) as err:
        toa_route.select_route(host, load_catalogue(), strategy="auto")
    assert "No TOA route for" in str(err.value) and "Alpine" in str(err.value)


# -- what toa_facts reads ------------------------------------------------------------------

@pytest.fixture
def fakehost(tmp_path, monkeypatch):
    debian12_host(tmp_path, monkeypatch, PROC_MODULES_OURS)
    for directory in ("boot", "usr/src"):
        os.makedirs(str(tmp_path / directory))
    write(tmp_path, "/boot/grub/grub.cfg", "menuentry 'Debian GNU/Linux' {\n}\n")
    write(tmp_path, "/sys/kernel/security/lockdown", "[none] integrity confidentiality\n")
    write(tmp_path, "/sys/module/module/parameters/sig_enforce", "N\n")
    return tmp_path


def preflight(run_module, args=None, bins=None):
    full = {"strategy": "module"}
    full.update(args or {})
    bins = dict({"grubby": None, "grub2-reboot": None, "grub2-set-default": None},
                **(bins or {}))
    result = run_module(toa_facts, full, bins=bins)
    assert not result.get("failed"), result.get("msg")
    return result["ansible_facts"]["toa"]["preflight"]


def test_facts_on_a_bios_debian_guest(fakehost, run_module):
    got = preflight(run_module)
    assert got["bootloader"]["kind"] == "grub2"
    assert got["bootloader"]["grub_cfg"] == "/boot/grub/grub.cfg"
    assert got["security"] == {"efi": False, "secure_boot": False, "lockdown": "none",
                               "sig_enforce": False, "required": False, "reasons": []}
    # /var/lib/dkms does not exist yet: counted on the filesystem of the nearest parent
    assert got["disk"]["/var/lib/dkms"]["checked"] == "/"
    assert got["disk"]["/boot"]["free_mb"] > 0
    assert got["loaded"] == {"toa": {"version": None, "srcversion": None, "parameters": [],
                                     "ours": False}}
    assert got["problems"] and got["problems"][0]["check"] == "conflicts"


def test_facts_secure_boot_on_efi(fakehost, run_module):
    write(fakehost, "/proc/modules", "nf_tables 290816 0 - Live 0x0000000000000000\n")
    efivar = str(fakehost / ("sys/firmware/efi/efivars/SecureBoot-" + GUID))
    os.makedirs(os.path.dirname(efivar))
    with open(efivar, "wb") as handle:
        handle.write(b"\x06\x00\x00\x00\x01")
    write(fakehost, "/sys/kernel/security/lockdown", "none [integrity] confidentiality\n")
    got = preflight(run_module)
    assert got["security"]["secure_boot"] is True and got["security"]["efi"] is True
    assert [p["check"] for p in got["problems"]] == ["secure_boot"]
    write(fakehost, "/root/mok.key", "key")
    write(fakehost, "/root/mok.der", "cert")
    signed = preflight(run_module, {"signing_key": "/root/mok.key",
                                    "signing_cert": "/root/mok.der"})
    assert signed["problems"] == []
    assert signed["signing"]["key_exists"] and signed["signing"]["cert_exists"]


def test_facts_vtoa_loaded_and_ours(fakehost, run_module):
    write(fakehost, "/proc/modules", PROC_MODULES_VTOA)
    for param in ("ipv4_kinds", "ipv6_kinds", "trusted_cidrs"):
        write(fakehost, "/sys/module/toa/parameters/" + param, "\n")
    write(fakehost, "/sys/module/toa/version", "1.0.0\n")
    got = preflight(run_module, {"conflicting_modules": ["vtoa"]})
    assert got["loaded"]["toa"]["ours"] is True
    assert [p["msg"][:40] for p in got["problems"]] == [
        "The TOA-like module vtoa is loaded; it r"]


def test_facts_free_mb_keys_left_unset_take_the_defaults(fakehost, run_module):
    # Role argument validation may hand over suboptions it was not given as None.
    got = preflight(run_module, {"free_mb": {"boot": None, "root": None, "dkms": 999999999}})
    assert [p["check"] for p in got["problems"]] == ["space", "conflicts"]
    assert "dkms=999999999" in got["problems"][0]["msg"]


def test_facts_no_bootloader_for_the_package_route(fakehost, run_module):
    os.remove(str(fakehost / "boot/grub/grub.cfg"))
    catalogue = load_catalogue() + [{
        "id": "d12", "distribution": "debian", "major": "12", "arch": "x86_64",
        "kernel": "6.1.0-99-toa", "format": "deb", "image": "linux-image-6.1.0-99-toa_1_amd64.deb",
        "headers": None, "sha256": {"linux-image-6.1.0-99-toa_1_amd64.deb": "a" * 64}}]
    write(fakehost, "/proc/modules", "nf_tables 290816 0 - Live 0x0000000000000000\n")
    got = preflight(run_module, {"strategy": "package", "catalogue": catalogue},
                    bins={"grub-reboot": None, "grub-set-default": None})
    assert got["bootloader"] == {"kind": "unknown", "grub_cfg": None,
                                 "missing": ["grub-reboot", "grub-set-default",
                                             "/boot/grub/grub.cfg"]}
    assert [p["check"] for p in got["problems"]] == ["bootloader"]


@pytest.mark.parametrize("args, phrase", [
    ({"preflight_ignore": ["speed"]}, "preflight_ignore has speed"),
    ({"free_mb": {"boot": "lots"}}, "free_mb takes boot, root and dkms"),
    ({"free_mb": {"tmp": 5}}, "free_mb takes boot, root and dkms"),
])
def test_facts_refuse_bad_preflight_options(fakehost, run_module, args, phrase):
    result = run_module(toa_facts, args)
    assert result["failed"] and phrase in result["msg"]


def test_facts_refuse_a_timestamp_kind(fakehost, run_module):
    got = preflight(run_module, {"params": {"ipv4_kinds": "8", "trusted_cidrs": ""}})
    assert [p["check"] for p in got["problems"]] == ["conflicts", "params"]
    assert "toa_params.ipv4_kinds has 8 (timestamps)" in got["problems"][1]["msg"]
