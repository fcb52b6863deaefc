"""The xenial build root for real: made with debootstrap (once; cached under
$TOA_CACHE/buildroots), its own gcc-5 and Python 3.5, commands run in it with
everything unmounted afterwards, and the Ubuntu 16.04 TOA kernel recipe
configured in it (--configure-only: xenial's linux-source-4.4.0 and the
guest's headers from the archive, the TOA patch applied, the config trimmed;
no compile).

Opt-in (about 5 min cold, 3 min cached: too long for the default suite):
`scripts/test.sh --kernel` runs it, or TOA_TEST_BUILDROOT=1 with pytest.
Needs root (debootstrap, mount, chroot) and the Ubuntu archive;
scripts/setup.sh installs debootstrap.  First run: the debootstrap
and packages (about 1.5 min here) and the source (110 MB); later runs about
3 min, mostly unpacking the source.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import build_toa_kernel as btk  # noqa: E402
import toa_buildroot as tb  # noqa: E402


def archive_answers():
    recipe = tb.RECIPES["xenial"]
    url = "%s/dists/%s/Release" % (recipe["mirror"], recipe["suite"])
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=20) as resp:
            return resp.status == 200
    except Exception:  # noqa: BLE001 - any failure means "does not answer"
        return False


pytestmark = [
    pytest.mark.skipif(os.environ.get("TOA_TEST_BUILDROOT") != "1",
                       reason="opt-in, about 5 min: TOA_TEST_BUILDROOT=1 or scripts/test.sh --kernel"),
    pytest.mark.skipif(os.geteuid() != 0, reason="not root: a build root needs debootstrap, mount and chroot "
                                                 "(CI runs as root)"),
]


@pytest.fixture(scope="module")
def root():
    assert shutil.which("debootstrap"), "debootstrap is missing: run scripts/setup.sh (it installs it)"
    if not os.path.isfile(os.path.join(tb.root_path("xenial"), tb.INFO)) and not archive_answers():
        pytest.skip("the Ubuntu archive (%s) does not answer from here, and no xenial root is cached"
                    % tb.RECIPES["xenial"]["mirror"])
    path = tb.ensure_root("xenial")
    yield path
    assert tb.mounts_under(path) == [], "mounts left in the build root"


def run_captured(root, argv, binds=(), tmp_path=None):
    out_path = os.path.join(str(tmp_path), "out")
    with open(out_path, "w+") as out:
        rc = tb.run_in_root(root, argv, binds, stdout=out)
        out.seek(0)
        return rc, out.read()


def test_the_root_has_xenials_compiler_and_python(root, tmp_path):
    info = tb.read_info(root)
    assert info["key"] == tb.recipe_key("xenial") and info["suite"] == "xenial"
    assert re.search(r"\) 5\.4\.", info["versions"]["gcc"])
    assert tb.missing_tools(root) == []  # everything the full build runs, openssl for the signing key too
    rc, out = run_captured(root, ["python3", "-c", "import sys; print(sys.version_info[:2])"], tmp_path=tmp_path)
    assert (rc, out.strip()) == (0, "(3, 5)")
    rc, out = run_captured(root, ["sh", "-c", "grep -h ^deb /etc/apt/sources.list; test -e /proc/self/status "
                                              "&& test -c /dev/null && echo mounted"], tmp_path=tmp_path)
    assert rc == 0 and out.splitlines() == tb.sources_list(tb.RECIPES["xenial"]).splitlines() + ["mounted"]
    assert tb.mounts_under(root) == []


def test_a_bound_directory_is_at_the_same_path_and_a_failure_still_unmounts(root, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from the host\n")
    rc, out = run_captured(root, ["sh", "-c", "cat %s/in.txt; echo from the root > %s/out.txt; exit 7"
                                  % (shared, shared)], [str(shared)], tmp_path)
    assert rc == 7 and out == "from the host\n"
    assert (shared / "out.txt").read_text() == "from the root\n"
    assert tb.mounts_under(root) == []
    assert os.listdir(root + str(shared)) == []  # the mount point only, now empty


def test_the_ubuntu1604_recipe_configures_in_the_root(root, capsys):
    work = os.path.join(tb.CACHE, "kbuild-hosttest-xenial")
    rc = btk.main(["--buildroot", root, "--series", "4.4.0", "--config-from-headers", "linux-headers-generic",
                   "--lsmod", os.path.join(ROOT, "tools", "kernel-recipes", "ubuntu1604-qemu.lsmod"),
                   "--localversion=-{abi}-toa", "--distribution", "ubuntu", "--version", "16.04",
                   "--work", work, "--configure-only"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0, result
    assert result["configured_only"] is True
    abi = btk.ubuntu_abi(result["source_version"])
    assert abi and re.match(r"^4\.4\.\d+-%s-toa$" % abi, result["kernel"]), result["kernel"]
    assert result["options"]["CONFIG_TOA"] == "m" and result["options"]["CONFIG_IPV6"] == "y"
    assert result["options"]["CONFIG_KPROBES"] == "y"
    # Trimmed to the module list: a few dozen modules, not Ubuntu's thousands.
    assert 20 < result["modules"] < 400
    with open(result["config"]) as f:
        config = f.read().splitlines()
    for builtin_or_module in ("CONFIG_VIRTIO_BLK", "CONFIG_VIRTIO_NET", "CONFIG_EXT4_FS", "CONFIG_TUN"):
        assert [line for line in config if re.match(r"^%s=[ym]$" % builtin_or_module, line)], builtin_or_module
    # The patch applied to Ubuntu's tree: it wired TOA in after IPv6.
    with open(os.path.join(os.path.dirname(result["config"]), "toa.patch")) as f:
        assert '+source "net/toa/Kconfig"' in f.read()
    assert tb.mounts_under(root) == []
    assert subprocess.run(["findmnt", "-rn", "-o", "TARGET"], stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.count(root) == 0
