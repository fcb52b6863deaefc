"""tools/build_toa_kernel.py: build key, publishing, and the catalogue row it prints."""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import build_toa_kernel as btk  # noqa: E402
import toa_route  # noqa: E402

OS_RELEASE_DEBIAN12 = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n' \
    'VERSION_ID="12"\nVERSION="12 (bookworm)"\nID=debian\n'


def args(**kw):
    base = dict(localversion="-toa", arch="x86_64", pkgversion=None, src=btk.make_toa_patch.DEFAULT_SRC,
                distribution="debian", major="12", version=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_build_key_follows_every_input():
    a = args()
    base = btk.plan(a, "6.1.192-2", "0" * 64, "patch", "config", "lsmod")
    again = btk.plan(a, "6.1.192-2", "0" * 64, "patch", "config", "lsmod")
    assert base == again
    inputs, key, pkgversion = base
    assert len(key) == 16
    assert pkgversion == "6.1.192-2.toa%s.%s" % (btk.make_toa_patch.read_version(a.src), key[:8])
    changed = [
        btk.plan(a, "6.1.192-3", "0" * 64, "patch", "config", "lsmod"),
        btk.plan(a, "6.1.192-2", "1" * 64, "patch", "config", "lsmod"),
        btk.plan(a, "6.1.192-2", "0" * 64, "patch2", "config", "lsmod"),
        btk.plan(a, "6.1.192-2", "0" * 64, "patch", "config2", "lsmod"),
        btk.plan(a, "6.1.192-2", "0" * 64, "patch", "config", None),
        btk.plan(args(localversion="-toa2"), "6.1.192-2", "0" * 64, "patch", "config", "lsmod"),
    ]
    keys = {key} | {c[1] for c in changed}
    assert len(keys) == len(changed) + 1
    assert btk.plan(args(pkgversion="1.0"), "6.1.192-2", "0" * 64, "p", "c", None)[2] == "1.0"


def fake_result(tmp_path):
    files = []
    for kind, name in (("image", "linux-image-6.1.192-toa_6.1.192-2.toa1.0.0.abcd_amd64.deb"),
                       ("headers", "linux-headers-6.1.192-toa_6.1.192-2.toa1.0.0.abcd_amd64.deb")):
        path = tmp_path / name
        path.write_bytes(kind.encode())
        files.append({"kind": kind, "name": name, "path": str(path),
                      "sha256": hashlib.sha256(kind.encode()).hexdigest(), "size": len(kind)})
    return {"kernel": "6.1.192-toa", "files": files}


def test_publish_writes_files_and_manifest(tmp_path):
    result = fake_result(tmp_path)
    mirror = tmp_path / "mirror"
    dest = btk.publish(result, str(mirror), "debian-12-x86_64")
    assert dest == str(mirror / "debian-12-x86_64")
    sums = (mirror / "debian-12-x86_64" / "SHA256SUMS").read_text().splitlines()
    image, headers = result["files"]
    assert sums == ["%s  %s" % (headers["sha256"], headers["name"]),
                    "%s  %s" % (image["sha256"], image["name"])]  # sorted by file name
    assert btk.publish(result, str(mirror), "debian-12-x86_64") == dest  # again: same content


def test_catalogue_row_is_taken_by_the_package_route(tmp_path):
    result = fake_result(tmp_path)
    row = btk.catalogue_entry(args(), result, "debian-12-x86_64")
    assert row == {
        "id": "debian12-x86_64-toa-built", "distribution": "debian", "major": "12", "arch": "x86_64",
        "kernel": "6.1.192-toa", "format": "deb",
        "image": "debian-12-x86_64/" + result["files"][0]["name"],
        "headers": "debian-12-x86_64/" + result["files"][1]["name"],
        "sha256": {f["name"]: f["sha256"] for f in result["files"]},
        "module_params": True,
    }
    json.dumps(row)  # what the playbook prints
    host = toa_route.identify_host(OS_RELEASE_DEBIAN12, None, "x86_64", "6.1.0-56-amd64", "systemd")
    assert toa_route.is_toa_kernel(row["kernel"])
    route = toa_route.select_route(host, [row], "auto", "http://10.0.2.100:3142/toa-mirror/", {}, False, True)
    assert route["route"] == "package"
    pkg = route["package"]
    assert pkg["kernel"] == "6.1.192-toa" and pkg["verified"]
    assert [(f["kind"], f["name"], f["url"], f["sha256"]) for f in pkg["files"]] == [
        (f["kind"], f["name"], "http://10.0.2.100:3142/toa-mirror/debian-12-x86_64/" + f["name"], f["sha256"])
        for f in result["files"]]


def test_version_rows_for_exact_releases(tmp_path):
    row = btk.catalogue_entry(args(distribution="ubuntu", major=None, version="16.04"),
                              fake_result(tmp_path), "ubuntu-16.04-x86_64")
    assert row["version"] == "16.04" and "major" not in row
    assert row["id"] == "ubuntu16.04-x86_64-toa-built"


def test_missing_config_fails_with_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(btk, "source_tarball", lambda *a, **k: ("x.deb", "6.1.192-2", "x.tar.xz"))
    rc = btk.main(["--series", "6.1", "--config", str(tmp_path / "nope"), "--major", "12",
                   "--work", str(tmp_path / "w"), "--mirror", str(tmp_path / "m")])
    assert rc == 1
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["failed"] is True
    assert out["msg"].startswith("the kernel config %s does not exist" % (tmp_path / "nope"))


@pytest.mark.parametrize("text, want", [
    ("linux-headers-amd64\n  Depends: linux-headers-6.1.0-56-amd64\n", "linux-headers-6.1.0-56-amd64"),
])
def test_headers_meta_package_resolution(text, want):
    class R:
        def run(self, argv, capture=False, **kw):
            assert argv[:3] == ["apt-cache", "depends", "--important"]
            return text
    assert btk.resolve_headers_package(R(), "linux-headers-amd64") == want
    assert btk.resolve_headers_package(R(), "linux-headers-6.1.0-9-amd64") == "linux-headers-6.1.0-9-amd64"


@pytest.mark.parametrize("layout", ["usr/src/linux-source-6.1.tar.xz",
                                    "usr/src/linux-source-4.4.0/linux-source-4.4.0.tar.bz2"])
def test_source_tarball_found_in_debian_and_ubuntu_layouts(tmp_path, layout):
    deb = tmp_path / "linux-source-x_1_all.deb"
    deb.write_bytes(b"")
    tarball = tmp_path / "linux-source-x_1_all.d" / layout
    tarball.parent.mkdir(parents=True)
    tarball.write_bytes(b"")
    if "4.4.0" in layout:
        # Ubuntu's package also links /usr/src/linux-source-4.4.0.tar.bz2 to it: one tarball, not two.
        os.symlink("linux-source-4.4.0/linux-source-4.4.0.tar.bz2",
                   str(tmp_path / "linux-source-x_1_all.d" / "usr" / "src" / "linux-source-4.4.0.tar.bz2"))

    class R:
        def run(self, argv, capture=False, **kw):
            assert argv[:2] == ["dpkg-deb", "-f"]
            return "1.2-3\n"
    assert btk.source_tarball(R(), "x", str(tmp_path), str(deb)) == (str(deb), "1.2-3", str(tarball))


# -- Debian versions and the source package the archive offers now -------------------------

@pytest.mark.parametrize("a, b, want", [
    ("6.1.100-1", "6.1.99-1", 1),          # numbers, not string order
    ("6.1.192-3", "6.1.192-2", 1),
    ("6.1.192-3", "6.1.192-3", 0),
    ("6.1~rc1-1", "6.1-1", -1),            # ~ sorts before everything, even the end
    ("1:6.1.1-1", "6.1.192-3", 1),         # the epoch first
    ("6.1.76-1+deb12u1", "6.1.76-1", 1),
    ("6.1.76-1~bpo11+1", "6.1.76-1", -1),
    ("1.0", "1.0-0", 0),
    ("1.0a", "1.0+b1", -1),                # letters before other characters
    ("4.4.0-210.242", "4.4.0-21.37", 1),
])
def test_compare_versions(a, b, want):
    assert btk.compare_versions(a, b) == want
    assert btk.compare_versions(b, a) == -want


DPKG_PAIRS = ["6.1.99-1", "6.1.100-1", "1:6.1-1", "6.1~rc1-1", "6.1-1", "6.1", "6.1-0",
              "6.1.0-1+deb12u1", "6.1.0-1~bpo11+1", "1.0a", "1.0+b1", "1.0-1.1", "2.0~~", "2.0~",
              "1.0-a", "1.0-A", "1.0-~"]


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is not installed here")
def test_compare_versions_agrees_with_dpkg():
    for a in DPKG_PAIRS:
        for b in DPKG_PAIRS:
            want = btk.compare_versions(a, b)
            op = {-1: "lt", 0: "eq", 1: "gt"}[want]
            assert subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0, (a, op, b)


# apt-cache policy linux-source-6.1 on a Debian 12 build host (bookworm-security).
POLICY = """linux-source-6.1:
  Installed: (none)
  Candidate: %s
  Version table:
     6.1.192-3 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
     6.1.176-1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
"""


class FakeApt(btk.Runner):
    """apt-cache policy answers with `candidate`; apt-get download writes the .deb."""

    def __init__(self, candidate):
        super().__init__()
        self.candidate = candidate
        self.calls = []

    def say(self, text):
        pass

    def run(self, argv, cwd=None, input_text=None, capture=False):
        self.calls.append(argv)
        if argv[:2] == ["apt-cache", "policy"]:
            return POLICY % self.candidate
        if argv[:2] == ["apt-get", "download"]:
            package, _sep, version = argv[2].partition("=")
            version = version or self.candidate
            with open(os.path.join(cwd, "%s_%s_all.deb" % (package, version.replace(":", "%3a"))),
                      "w") as handle:
                handle.write(version)
            return ""
        raise AssertionError("unexpected command %r" % (argv,))


def cache_debs(directory, *versions):
    directory.mkdir(exist_ok=True)
    for version in versions:
        (directory / ("linux-source-6.1_%s_all.deb" % version.replace(":", "%3a"))).write_text(version)


def test_a_newer_source_in_the_archive_is_downloaded_not_the_first_one_reused(tmp_path):
    cache_debs(tmp_path / "sources", "6.1.176-1")
    runner = FakeApt("6.1.192-3")
    deb = btk.fetch_deb(runner, "linux-source-6.1", str(tmp_path / "sources"))
    assert os.path.basename(deb) == "linux-source-6.1_6.1.192-3_all.deb"
    assert ["apt-get", "download", "linux-source-6.1=6.1.192-3"] in runner.calls


def test_the_offered_version_already_at_hand_is_not_downloaded_again(tmp_path):
    cache_debs(tmp_path / "sources", "6.1.192-3", "6.1.176-1")
    runner = FakeApt("6.1.192-3")
    deb = btk.fetch_deb(runner, "linux-source-6.1", str(tmp_path / "sources"))
    assert os.path.basename(deb) == "linux-source-6.1_6.1.192-3_all.deb"
    assert not [call for call in runner.calls if call[:2] == ["apt-get", "download"]]


def test_without_a_candidate_the_newest_cached_copy_by_debian_order_serves(tmp_path):
    cache_debs(tmp_path / "sources", "6.1.99-1", "6.1.100-1", "6.1.100~rc1-1")
    deb = btk.fetch_deb(FakeApt("(none)"), "linux-source-6.1", str(tmp_path / "sources"))
    assert os.path.basename(deb) == "linux-source-6.1_6.1.100-1_all.deb"


def test_an_epoch_in_the_file_name_is_read_back(tmp_path):
    cache_debs(tmp_path / "sources", "1:6.1.1-1")
    runner = FakeApt("1:6.1.1-1")
    deb = btk.fetch_deb(runner, "linux-source-6.1", str(tmp_path / "sources"))
    assert os.path.basename(deb) == "linux-source-6.1_1%3a6.1.1-1_all.deb"
    assert btk.deb_file_version(deb, "linux-source-6.1") == "1:6.1.1-1"
    assert not [call for call in runner.calls if call[:2] == ["apt-get", "download"]]


def test_a_newer_source_changes_the_build_key():
    older = btk.plan(args(), "6.1.176-1", "0" * 64, "patch", "config", "lsmod")[1]
    newer = btk.plan(args(), "6.1.192-3", "1" * 64, "patch", "config", "lsmod")[1]
    assert older != newer


# -- Ubuntu 16.04: kernel release naming and the build in a build root -------------------------

@pytest.mark.parametrize("source, abi", [("4.4.0-210.242", "210"), ("1:4.4.0-9.10", "9"),
                                         ("6.1.192-3", None), ("6.1.76-1+deb12u1", None), ("", None)])
def test_ubuntu_abi(source, abi):
    assert btk.ubuntu_abi(source) == abi


def test_localversion_takes_the_ubuntu_abi_and_refuses_it_elsewhere():
    assert btk.expand_localversion("-{abi}-toa", "4.4.0-210.242") == "-210-toa"
    assert btk.expand_localversion("-toa", "6.1.192-3") == "-toa"
    with pytest.raises(btk.BuildError, match="source version 6.1.192-3 is not an Ubuntu kernel version"):
        btk.expand_localversion("-{abi}-toa", "6.1.192-3")


def test_the_ubuntu_release_is_a_toa_kernel_not_older_than_the_guests():
    # 4.4.262: the sublevel of Ubuntu's 4.4.0-210.242 tree (its Makefile), what `make kernelrelease` gives.
    release = "4.4.262" + btk.expand_localversion("-{abi}-toa", "4.4.0-210.242")
    assert toa_route.is_toa_kernel(release)
    host = {"kernel": "4.4.0-210-generic", "kernel_upstream": "4.4.262"}
    assert toa_route.kernel_is_older(host, {"kernel": release, "format": "deb"}) is False
    sys.path.insert(0, os.path.join(ROOT, "library"))
    import toa_boot
    newest_first = sorted(["4.4.0-210-generic", release, "4.4.0-209-generic"], key=toa_boot.release_key,
                          reverse=True)
    assert newest_first[0] == release
    if shutil.which("dpkg"):
        assert subprocess.run(["dpkg", "--compare-versions", release, "gt", "4.4.0-210-generic"]).returncode == 0


def root_args(tmp_path, **kw):
    base = dict(series="4.4.0", source_deb=None, config=None, config_from_headers="linux-headers-generic",
                lsmod=os.path.join(ROOT, "tools", "kernel-recipes", "ubuntu1604-qemu.lsmod"),
                localversion="-{abi}-toa", pkgversion=None, arch="x86_64", deb_arch="amd64",
                distribution="ubuntu", major=None, version="16.04", src=btk.make_toa_patch.DEFAULT_SRC,
                work=str(tmp_path / "kbuild"), nice=19, jobs=2, keep_tree=False, force=False, debug=False,
                configure_only=True, buildroot=str(tmp_path / "root"))
    base.update(kw)
    return argparse.Namespace(**base)


def test_the_command_in_the_root_is_this_build_unpublished_with_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = root_args(tmp_path, src="toa-src", config="configs/config-4.4.0-210-generic",
                  config_from_headers=None, pkgversion="4.4.0-210.242.toa1")
    argv = btk.inner_argv(a)
    assert argv[:2] == ["python3", os.path.join(ROOT, "tools", "build_toa_kernel.py")]
    assert "--buildroot" not in argv and "--mirror" not in argv
    assert "--no-publish" in argv and "--configure-only" in argv
    assert "--localversion=-{abi}-toa" in argv  # expanded inside, where the source version is known
    pairs = dict(zip(argv, argv[1:]))
    assert pairs["--src"] == str(tmp_path / "toa-src")
    assert pairs["--config"] == str(tmp_path / "configs" / "config-4.4.0-210-generic")
    assert pairs["--version"] == "16.04" and pairs["--series"] == "4.4.0" and pairs["--jobs"] == "2"
    assert pairs["--pkgversion"] == "4.4.0-210.242.toa1"
    full = btk.inner_argv(root_args(tmp_path, configure_only=False, debug=True))
    assert "--configure-only" not in full and "--debug" in full
    assert dict(zip(full, full[1:]))["--config-from-headers"] == "linux-headers-generic"


def test_the_root_sees_the_tools_source_work_and_module_list_at_their_paths(tmp_path):
    binds = btk.root_binds(root_args(tmp_path, config=str(tmp_path / "cfg" / "config")))
    assert binds == [os.path.join(ROOT, "tools"), btk.make_toa_patch.DEFAULT_SRC, str(tmp_path / "kbuild"),
                     str(tmp_path / "cfg"), os.path.join(ROOT, "tools", "kernel-recipes")]


class FakeRoot:
    """toa_buildroot.run_in_root: records the commands and prints `printed` as the build's stdout."""

    def __init__(self, printed, rc=0, update_rc=0):
        self.printed, self.rc, self.update_rc, self.calls = printed, rc, update_rc, []

    def __call__(self, root, argv, binds=(), env=None, stdout=None, say=None):
        self.calls.append((root, list(argv), list(binds)))
        if argv[:2] == ["apt-get", "update"]:
            return self.update_rc
        stdout.write(self.printed)
        return self.rc


def test_the_build_in_the_root_returns_its_result(tmp_path, monkeypatch):
    import toa_buildroot
    result = {"key": "k", "kernel": "4.4.262-210-toa", "files": [], "configured_only": True,
              "log": str(tmp_path / "kbuild" / "builds" / "k" / "build.log"), "catalogue_row": {"x": 1}}
    fake = FakeRoot("progress\n" + json.dumps(result) + "\n", update_rc=100)
    monkeypatch.setattr(toa_buildroot, "run_in_root", fake)
    monkeypatch.setattr(toa_buildroot, "missing_tools", lambda root: [])
    runner = btk.Runner()
    got = btk.build_in_root(root_args(tmp_path), runner)
    assert got["kernel"] == "4.4.262-210-toa" and "catalogue_row" not in got  # made on the host
    assert runner.log_path == result["log"]
    (update_root, update, _), (build_root, inner, binds) = fake.calls
    assert update == ["apt-get", "update", "-qq"] and update_root == build_root == str(tmp_path / "root")
    assert inner == btk.inner_argv(root_args(tmp_path))
    assert binds == btk.root_binds(root_args(tmp_path))


@pytest.mark.parametrize("printed, rc, why", [
    ('{"failed": true, "msg": "patch -p1 --batch exited 1"}\n', 1, "patch -p1 --batch exited 1"),
    ("", 127, "exit 127): no result printed"),
])
def test_a_failed_build_in_the_root_says_why(tmp_path, monkeypatch, printed, rc, why):
    import toa_buildroot
    monkeypatch.setattr(toa_buildroot, "run_in_root", FakeRoot(printed, rc))
    monkeypatch.setattr(toa_buildroot, "missing_tools", lambda root: [])
    with pytest.raises(btk.BuildError) as err:
        btk.build_in_root(root_args(tmp_path), btk.Runner())
    assert why in str(err.value) and str(tmp_path / "root") in str(err.value)


def test_configure_only_neither_publishes_nor_prints_a_catalogue_row(tmp_path, monkeypatch, capsys):
    configured = {"key": "k", "kernel": "4.4.262-210-toa", "configured_only": True, "files": []}
    monkeypatch.setattr(btk, "build_in_root", lambda a, r: dict(configured))
    monkeypatch.setattr(btk, "publish", lambda *a: pytest.fail("published a configure-only run"))
    rc = btk.main(["--series", "4.4.0", "--config-from-headers", "linux-headers-generic", "--version", "16.04",
                   "--buildroot", str(tmp_path), "--configure-only", "--work", str(tmp_path / "w")])
    assert rc == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == configured


def test_the_ubuntu1604_module_list_has_what_the_xenial_guest_boots_with():
    with open(os.path.join(ROOT, "tools", "kernel-recipes", "ubuntu1604-qemu.lsmod")) as f:
        lines = f.read().splitlines()
    assert lines[0].split() == ["Module", "Size", "Used", "by"]
    names = [line.split()[0] for line in lines[1:]]
    assert len(names) == len(set(names))
    for needed in ("virtio_blk", "virtio_net", "virtio_pci", "virtio_rng", "ext4", "e1000", "tun", "veth",
                   "nf_conntrack_ipv4"):
        assert needed in names


def test_the_ubuntu_signature_names_the_toa_flavour_and_keeps_the_upstream_version():
    config = 'CONFIG_X=y\nCONFIG_VERSION_SIGNATURE="Ubuntu 4.4.0-210.242-generic 4.4.262"\n'
    edits = btk.signature_edits(config, "-210-toa")
    assert edits == [["--set-str", "VERSION_SIGNATURE", "Ubuntu 4.4.0-210.242-toa 4.4.262"]]
    signature = edits[0][2]
    assert toa_route.upstream_kernel_version("4.4.262-210-toa", "", signature) == "4.4.262"
    assert btk.signature_edits("CONFIG_X=y\n", "-toa") == []  # Debian: no signature, no edit
    assert btk.signature_edits('CONFIG_VERSION_SIGNATURE=""\n', "-toa") == []


def test_a_root_of_an_older_recipe_is_refused_before_anything_runs(tmp_path, monkeypatch):
    import toa_buildroot
    fake = FakeRoot("")
    monkeypatch.setattr(toa_buildroot, "run_in_root", fake)
    monkeypatch.setattr(toa_buildroot, "missing_tools", lambda root: ["openssl"])
    with pytest.raises(btk.BuildError, match="lacks openssl, which the build runs: .* toa_buildroot.py ensure"):
        btk.build_in_root(root_args(tmp_path), btk.Runner())
    assert fake.calls == []


def test_lower_autogroup_writes_the_nice_only_when_asked(tmp_path):
    path = tmp_path / "autogroup"
    path.write_text("/autogroup-7 nice 0\n")
    assert btk.lower_autogroup(0, str(path)) is False
    assert path.read_text() == "/autogroup-7 nice 0\n"
    assert btk.lower_autogroup(19, str(path)) is True
    assert path.read_text() == "19"
    assert btk.lower_autogroup(25, str(path)) is True
    assert path.read_text() == "19"
    # no autogroup support: nothing to do, no error
    assert btk.lower_autogroup(19, str(tmp_path / "missing")) is False
