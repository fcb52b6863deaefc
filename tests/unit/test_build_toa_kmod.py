"""tools/build_toa_kmod.py: release list, header dependencies, compiler check, build key,
package metadata, and one build per release however often it is listed."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import build_toa_kmod as kmod  # noqa: E402
import toa_src_hash  # noqa: E402

# Depends fields as the archives write them (apt-cache show, late 2026).
DEBIAN_61 = ("linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), "
             "linux-compiler-gcc-12-x86")
DEBIAN_612 = ("linux-base (>= 4.12~), linux-headers-6.12.117+deb12-common (= 6.12.117-1~deb12u1), "
              "linux-image-6.12.117+deb12-amd64 (= 6.12.117-1~deb12u1) | "
              "linux-image-6.12.117+deb12-amd64-unsigned (= 6.12.117-1~deb12u1), "
              "linux-kbuild-6.12.117+deb12, gcc-12")
UBUNTU_2204 = ("linux-headers-5.15.0-91, libc6 (>= 2.34), libelf1 (>= 0.142), libssl3 (>= 3.0.0~~alpha1), "
               "zlib1g (>= 1:1.2.3.3)")


def test_releases_are_built_once_each_in_the_order_given():
    assert kmod.unique_releases(["6.1.0-57-amd64", "6.1.0-56-amd64", "6.1.0-57-amd64"]) == \
        ["6.1.0-57-amd64", "6.1.0-56-amd64"]
    # a fleet list pasted as it comes: commas, spaces, newlines, repeats
    assert kmod.unique_releases(["6.1.0-57-amd64, 6.1.0-57-amd64\n5.15.0-91-generic",
                                 "6.12.117+deb12-amd64 6.1.0-57-amd64"]) == \
        ["6.1.0-57-amd64", "5.15.0-91-generic", "6.12.117+deb12-amd64"]
    assert kmod.unique_releases(["", " "]) == []


@pytest.mark.parametrize("bad", ["--force", "/lib/modules/6.1.0-57-amd64", "amd64", "6", "6.1.0;rm -rf /"])
def test_what_is_no_kernel_release_is_refused(bad):
    with pytest.raises(kmod.BuildError, match="not a kernel release"):
        kmod.unique_releases([bad])


def test_source_hash_is_the_one_scripts_toa_src_hash_records():
    src = os.path.join(ROOT, "roles", "toa", "files", "toa-src")
    assert kmod.source_sha256(src) == toa_src_hash.source_hash(src)


def test_source_hash_moves_with_a_source_file_and_ignores_build_products(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "toa.c").write_text("int x;\n")
    (src / "Kbuild").write_text("obj-m := toa.o\n")
    before = kmod.source_sha256(str(src))
    (src / "toa.o").write_bytes(b"\x7fELF")
    (src / ".toa.o.cmd").write_text("cmd")
    assert kmod.source_sha256(str(src)) == before
    (src / "toa.c").write_text("int y;\n")
    assert kmod.source_sha256(str(src)) != before


def test_header_dependencies_debian_61_exact_common_and_candidate_kbuild():
    assert kmod.header_dependencies(DEBIAN_61) == [
        ("linux-headers-6.1.0-56-common", "6.1.192-2"), ("linux-kbuild-6.1", None)]


def test_header_dependencies_backports_kernel_skips_image_and_compiler():
    assert kmod.header_dependencies(DEBIAN_612) == [
        ("linux-headers-6.12.117+deb12-common", "6.12.117-1~deb12u1"),
        ("linux-kbuild-6.12.117+deb12", None)]


def test_header_dependencies_ubuntu_takes_the_abi_headers_only():
    assert kmod.header_dependencies(UBUNTU_2204) == [("linux-headers-5.15.0-91", None)]


def test_unreadable_dependency_is_an_error():
    with pytest.raises(kmod.BuildError, match="cannot read"):
        kmod.parse_depends("linux-kbuild-6.1 (>= ")


def test_compiler_is_read_from_the_kernel_config():
    config = 'CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"\nCONFIG_CC_IS_GCC=y\n'
    assert kmod.compiler_of(config) == ("gcc-12", "12.2.0", "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0")
    ubuntu = 'CONFIG_CC_VERSION_TEXT="x86_64-linux-gnu-gcc-11 (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0"\n'
    assert kmod.compiler_of(ubuntu)[:2] == ("x86_64-linux-gnu-gcc-11", "11.4.0")
    with pytest.raises(kmod.BuildError, match="CONFIG_CC_VERSION_TEXT"):
        kmod.compiler_of("CONFIG_CC_IS_GCC=y\n")


@pytest.mark.parametrize("host, ok", [
    ("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", True),
    ("gcc-12 (Debian 12.2.0-14) 12.2.0", True),           # another Debian revision of the same gcc
    ("gcc-12 (Debian 12.3.0-1) 12.3.0", False),           # another gcc release
    ("gcc (Debian 12.2.0-14+deb12u1) 12.2.0", False),     # another command (may be another gcc)
    ("gcc-13 (Debian 13.2.0-1) 13.2.0", False),
    ("", False),
])
def test_compiler_must_be_the_kernels(host, ok):
    assert kmod.compiler_matches("gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", host) is ok


def test_build_key_follows_every_input_and_nothing_else():
    base = ("a" * 64, "2.0.1", "6.1.0-57-amd64", {"linux-headers-6.1.0-57-amd64": "6.1.192-3"},
            "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", None, "amd64")
    inputs, key = kmod.build_key(*base)
    assert kmod.build_key(*base)[1] == key and len(key) == 16
    assert inputs["release"] == "6.1.0-57-amd64"
    changes = [(0, "b" * 64), (1, "2.0.2"), (2, "6.1.0-56-amd64"),
               (3, {"linux-headers-6.1.0-57-amd64": "6.1.192-4"}), (4, "gcc-12 (Debian 12.2.0-15) 12.2.0"),
               (5, "c" * 64), (6, "arm64")]
    keys = {key}
    for index, value in changes:
        args = list(base)
        args[index] = value
        keys.add(kmod.build_key(*args)[1])
    assert len(keys) == len(changes) + 1


def test_package_name_and_version_are_valid_debian_names(tmp_path):
    assert kmod.package_name("6.1.0-57-amd64") == "toa-kmod-6.1.0-57-amd64"
    assert kmod.package_name("6.12.117+deb12-amd64") == "toa-kmod-6.12.117+deb12-amd64"
    assert kmod.package_name("4.18.0-513.el8.X86_64") == "toa-kmod-4.18.0-513.el8.x86_64"
    assert kmod.package_version("2.0.1", "3fab7e30129cec0a") == "2.0.1+k3fab7e3012"


def test_control_and_maintainer_scripts():
    control = kmod.control_text("toa-kmod-6.1.0-57-amd64", "2.0.1+k3fab7e3012", "amd64", "6.1.0-57-amd64",
                                "2.0.1", "6.1.192-3", 87, True)
    fields = dict(line.split(": ", 1) for line in control.splitlines() if not line.startswith(" "))
    assert fields["Package"] == "toa-kmod-6.1.0-57-amd64"
    assert fields["Version"] == "2.0.1+k3fab7e3012"
    assert fields["Architecture"] == "amd64"
    assert fields["Installed-Size"] == "87"
    assert "Depends" not in fields  # installs on a host with nothing but its kernel
    assert control.endswith("\n") and "signed" in control
    scripts = kmod.maintainer_scripts("6.1.0-57-amd64")
    assert set(scripts) == {"postinst", "postrm"}
    for body in scripts.values():
        assert body.startswith("#!/bin/sh\nset -e\n")
        assert "depmod -a 6.1.0-57-amd64\n" in body
        assert "[ -d /lib/modules/6.1.0-57-amd64/kernel ]" in body


def test_control_text_makes_a_package_dpkg_deb_builds_and_reads(tmp_path):
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(kmod.control_text(
        "toa-kmod-6.1.0-57-amd64", "2.0.1+k3fab7e3012", "amd64", "6.1.0-57-amd64", "2.0.1", "6.1.192-3", 1, False))
    for name, body in kmod.maintainer_scripts("6.1.0-57-amd64").items():
        (root / "DEBIAN" / name).write_text(body)
        (root / "DEBIAN" / name).chmod(0o755)
    deb = tmp_path / "x.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True,
                   stdout=subprocess.DEVNULL)
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version"], check=True,
                         stdout=subprocess.PIPE, universal_newlines=True).stdout
    assert out == "Package: toa-kmod-6.1.0-57-amd64\nVersion: 2.0.1+k3fab7e3012\n"
    for script in ("postinst", "postrm"):
        subprocess.run(["sh", "-n", str(root / "DEBIAN" / script)], check=True)


def test_each_release_is_built_once_and_the_fleet_entry_names_it(monkeypatch, tmp_path, capsys):
    built = []

    def fake_build(args, runner, release, src, src_sha, toa_version, cert_sha):
        built.append(release)
        deb = tmp_path / ("toa-kmod-%s_2.0.1+k1_amd64.deb" % release)
        deb.write_bytes(release.encode())
        return {"release": release, "name": deb.name, "path": str(deb), "sha256": kmod.btk.sha256_file(str(deb)),
                "size": deb.stat().st_size, "package": kmod.package_name(release),
                "package_version": "2.0.1+k1", "toa_version": toa_version}

    monkeypatch.setattr(kmod, "build_one", fake_build)
    rc = kmod.main(["--release", "6.1.0-57-amd64,6.1.0-56-amd64", "--release", "6.1.0-57-amd64",
                    "--release", "6.1.0-56-amd64 6.1.0-57-amd64", "--work", str(tmp_path / "w"),
                    "--mirror", str(tmp_path / "m"), "--subdir", "kmod-x"])
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert rc == 0
    assert built == ["6.1.0-57-amd64", "6.1.0-56-amd64"]
    assert result["requested"] == 5 and result["releases"] == built
    entry = result["toa_module_packages"]["6.1.0-56-amd64"]
    assert entry["file"] == "kmod-x/toa-kmod-6.1.0-56-amd64_2.0.1+k1_amd64.deb"
    assert entry["version"] == open(os.path.join(ROOT, "roles/toa/files/toa-src/VERSION")).read().strip()
    sums = (tmp_path / "m" / "kmod-x" / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split()[1] for line in sums) == sorted(
        "toa-kmod-%s_2.0.1+k1_amd64.deb" % r for r in built)
    assert entry["sha256"] in (tmp_path / "m" / "kmod-x" / "SHA256SUMS").read_text()


def test_signing_needs_key_and_certificate(capsys, tmp_path):
    assert kmod.main(["--release", "6.1.0-57-amd64", "--sign-key", "/k.pem", "--work", str(tmp_path)]) == 1
    assert "both --sign-key and --sign-cert" in json.loads(capsys.readouterr().out)["msg"]
