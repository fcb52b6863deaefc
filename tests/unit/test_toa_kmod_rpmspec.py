"""tools/toa_kmod_rpmspec.py: the EL kmod spec for one kernel release (generated, not built)."""

import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import toa_kmod_rpmspec as spec  # noqa: E402

EL8 = "4.18.0-513.5.1.el8_9.x86_64"


def tags(text):
    out = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9()]+):\s+(.*)$", line)
        if match:
            out.setdefault(match.group(1), []).append(match.group(2))
    return out


def sections(text):
    """%section -> its body lines (up to the next section)."""
    out, current = {}, None
    for line in text.splitlines():
        match = re.match(r"^%(description|prep|build|install|post|postun|files)\s*$", line)
        if match:
            current = match.group(1)
            out[current] = []
        elif current and line:
            out[current].append(line)
    return out


@pytest.mark.parametrize("release, arch", [
    ("3.10.0-1160.el7.x86_64", "x86_64"), (EL8, "x86_64"), ("5.14.0-362.8.1.el9_3.aarch64", "aarch64")])
def test_el_releases_are_read(release, arch):
    assert spec.parse_release(release)[2] == arch


@pytest.mark.parametrize("bad", ["6.1.0-57-amd64", "5.15.0-91-generic", "4.18.0-513.el8", "", None])
def test_other_releases_are_refused(bad):
    with pytest.raises(spec.SpecError, match="not an EL kernel release"):
        spec.kmod_spec(bad, "2.0.1")


def test_spec_pins_the_kernel_and_installs_one_module():
    text = spec.kmod_spec(EL8, "2.0.1")
    t = tags(text)
    assert "%%global kver %s" % EL8 in text.splitlines()
    assert t["Name"] == ["kmod-toa-%{kver}"]
    assert t["Version"] == ["2.0.1"] and t["Release"] == ["1%{?dist}"]
    assert t["Requires"] == ["kernel-uname-r = %{kver}"]
    assert "kernel-devel-uname-r = %{kver}" in t["BuildRequires"]
    assert t["ExclusiveArch"] == ["x86_64"]
    assert t["Source0"] == ["toa-%{version}.tar.gz"]
    assert t["License"] == ["GPL-2.0-only"]
    body = sections(text)
    assert body["build"] == ["make -C /usr/src/kernels/%{kver} M=$PWD CONFIG_DEBUG_INFO_BTF_MODULES= modules",
                             "strip --strip-debug toa.ko"]
    assert body["install"] == ["install -D -m 0644 toa.ko %{buildroot}/lib/modules/%{kver}/extra/toa/toa.ko"]
    assert body["post"] == body["postun"] == ["/usr/sbin/depmod -a %{kver}"]
    assert body["files"] == ["/lib/modules/%{kver}/extra/toa/toa.ko"]
    assert "sign-file" not in text and "Signed" not in text


def test_every_release_gets_its_own_package_name():
    names = {spec.package_name(r) for r in ("3.10.0-1160.el7.x86_64", EL8)}
    assert names == {"kmod-toa-3.10.0-1160.el7.x86_64", "kmod-toa-%s" % EL8}


def test_signing_runs_after_rpms_own_post_processing():
    text = spec.kmod_spec(EL8, "2.0.1", sign_key="/etc/pki/toa/key.pem", sign_cert="/etc/pki/toa/cert.der")
    lines = text.splitlines()
    assert ("%global toa_sign /usr/src/kernels/%{kver}/scripts/sign-file sha256 "
            "/etc/pki/toa/key.pem /etc/pki/toa/cert.der") in lines
    start = lines.index("%define __spec_install_post \\")
    block = lines[start:lines.index("%{nil}", start) + 1]
    assert [b.strip() for b in block[1:3]] == ["%{__arch_install_post} \\", "%{__os_install_post} \\"]
    assert block[3].strip() == "%{toa_sign} %{buildroot}/lib/modules/%{kver}/extra/toa/toa.ko \\"
    assert all(b.endswith("\\") for b in block[:-1])
    assert "Signed with the fleet's module signing key." in text


@pytest.mark.parametrize("kw, match", [
    ({"sign_key": "/k.pem"}, "both"),
    ({"sign_cert": "/c.pem"}, "both"),
    ({"sign_key": "k.pem", "sign_cert": "/c.pem"}, "absolute"),
    ({"sign_key": "/my key.pem", "sign_cert": "/c.pem"}, "absolute"),
    ({"pkg_release": "1-2"}, "RPM release"),
])
def test_bad_inputs_are_refused(kw, match):
    with pytest.raises(spec.SpecError, match=match):
        spec.kmod_spec(EL8, "2.0.1", **kw)


def test_module_version_is_checked():
    with pytest.raises(spec.SpecError, match="module version"):
        spec.kmod_spec(EL8, "2.0.1-rc1")


def test_spec_version_is_the_module_source_version():
    with open(os.path.join(ROOT, "roles", "toa", "files", "toa-src", "VERSION")) as f:
        version = f.read().strip()
    assert tags(spec.kmod_spec(EL8, version))["Version"] == [version]


def test_rpmbuild_argv():
    assert spec.rpmbuild_argv("/b/kmod-toa.spec", "/b/src", "/b/rpms") == [
        "rpmbuild", "-bb", "--define", "_sourcedir /b/src", "--define", "_rpmdir /b/rpms", "/b/kmod-toa.spec"]


@pytest.mark.skipif(not shutil.which("rpmspec"), reason="rpmspec not installed (Debian package rpm)")
def test_rpmspec_parses_it(tmp_path):  # pragma: no cover - only where rpm is installed
    path = tmp_path / "kmod-toa.spec"
    path.write_text(spec.kmod_spec(EL8, "2.0.1", sign_key="/k.pem", sign_cert="/c.der"))
    out = subprocess.run(["rpmspec", "-q", "--qf", "%{NAME} %{VERSION}\n", str(path)], check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    assert out.split()[:2] == ["kmod-toa-%s" % EL8, "2.0.1"]
