"""The generated TOA patch on a real kernel tree: Debian 12's linux-source-6.1.

Downloads linux-source-6.1 once (apt-get download, ~140 MB) and unpacks it
under $TOA_CACHE/ksrc; each run works on a hard-linked copy, so the cached
tree stays pristine.  Checks that the patch applies with patch -p1 (dry run,
then for real), that Kconfig offers TOA (defconfig + scripts/config --module
TOA + olddefconfig gives CONFIG_TOA=m) and that net/toa builds in tree
(modules_prepare, then make M=net/toa: about 40 s on 2 cores).
"""

import glob
import os
import shutil
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import make_toa_patch as mtp  # noqa: E402

CACHE = os.environ.get("TOA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "toa-fleet")
KSRC = os.path.join(CACHE, "ksrc")
SERIES = "6.1"
TREE = os.path.join(KSRC, "linux-source-" + SERIES)

pytestmark = pytest.mark.skipif(shutil.which("apt-get") is None or shutil.which("patch") is None,
                                reason="needs a Debian host with apt-get and patch")


def run(argv, cwd, **kw):
    return subprocess.run(argv, cwd=cwd, check=True, **kw)


@pytest.fixture(scope="module")
def pristine():
    """The unpacked linux-source tree, downloaded and unpacked once."""
    if not os.path.isfile(os.path.join(TREE, "Makefile")):
        os.makedirs(KSRC, exist_ok=True)
        debs = glob.glob(os.path.join(KSRC, "linux-source-%s_*_all.deb" % SERIES))
        if not debs:
            run(["apt-get", "download", "linux-source-" + SERIES], KSRC)
            debs = glob.glob(os.path.join(KSRC, "linux-source-%s_*_all.deb" % SERIES))
        run(["dpkg-deb", "-x", sorted(debs)[-1], "deb"], KSRC)
        tmp = TREE + ".unpacking"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        run(["tar", "-xf", os.path.join(KSRC, "deb", "usr", "src", "linux-source-%s.tar.xz" % SERIES),
             "--strip-components=1", "-C", tmp], KSRC)
        os.rename(tmp, TREE)
    return TREE


@pytest.fixture(scope="module")
def patched(pristine, tmp_path_factory):
    work = tmp_path_factory.mktemp("ktree")
    tree = str(work / "linux")
    run(["cp", "-al", pristine, tree], str(work))
    # patch(1) replaces the files it changes, but be sure the cache is never written.
    for rel in ("net/Kconfig", "net/Makefile"):
        path = os.path.join(tree, rel)
        shutil.copyfile(path, path + ".tmp")
        os.replace(path + ".tmp", path)
    patch = str(work / "toa.patch")
    assert mtp.main(["--kernel-tree", tree, "-o", patch]) == 0
    run(["patch", "-p1", "--batch", "--forward", "--dry-run", "-i", patch], tree, stdout=subprocess.DEVNULL)
    run(["patch", "-p1", "--batch", "--forward", "-i", patch], tree, stdout=subprocess.DEVNULL)
    return tree


def test_patch_adds_net_toa_and_leaves_the_cache_pristine(patched, pristine):
    for name, body in mtp.module_files(mtp.DEFAULT_SRC):
        with open(os.path.join(patched, "net", "toa", name)) as f:
            assert f.read() == body
    assert not os.path.exists(os.path.join(pristine, "net", "toa"))
    with open(os.path.join(pristine, "net", "Kconfig")) as f:
        assert "net/toa" not in f.read()


def test_kconfig_offers_toa_as_a_module(patched):
    run(["make", "-s", "ARCH=x86_64", "defconfig"], patched, stdout=subprocess.DEVNULL)
    run(["scripts/config", "--enable", "KPROBES", "--module", "TOA"], patched)
    run(["make", "-s", "ARCH=x86_64", "olddefconfig"], patched, stdout=subprocess.DEVNULL)
    with open(os.path.join(patched, ".config")) as f:
        config = f.read().splitlines()
    assert "CONFIG_TOA=m" in config
    assert "CONFIG_IPV6=y" in config


def test_net_toa_builds_in_tree(patched):
    if not os.path.isfile(os.path.join(patched, ".config")):
        pytest.skip("needs the .config of test_kconfig_offers_toa_as_a_module")
    jobs = str(os.cpu_count() or 1)
    start = time.time()
    nice = ["nice", "-n", "19"]
    run(nice + ["make", "-s", "-j" + jobs, "ARCH=x86_64", "modules_prepare"], patched,
        stdout=subprocess.DEVNULL)
    run(nice + ["make", "-s", "-j" + jobs, "ARCH=x86_64", "M=net/toa", "modules"], patched,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print("in-tree net/toa build: %.0f s" % (time.time() - start))
    ko = os.path.join(patched, "net", "toa", "toa.ko")
    assert os.path.isfile(ko)
    info = subprocess.run(["modinfo", "-F", "version", ko], capture_output=True, text=True)
    if info.returncode == 0:
        assert info.stdout.strip() == mtp.read_version(mtp.DEFAULT_SRC)
