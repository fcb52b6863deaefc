"""tools/make_toa_patch.py: the in-tree TOA patch from the module source."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import make_toa_patch as mtp  # noqa: E402

SRC = os.path.join(ROOT, "roles", "toa", "files", "toa-src")

# Excerpts of Linux 6.1's net/Kconfig and net/Makefile around the anchors.
KCONFIG_61 = """\
config NET_HANDSHAKE
	bool
	depends on NET

if INET
source "net/ipv4/Kconfig"
source "net/ipv6/Kconfig"
source "net/netlabel/Kconfig"
source "net/mptcp/Kconfig"

endif # if INET
"""

MAKEFILE_61 = """\
obj-$(CONFIG_NETFILTER)		+= netfilter/
obj-$(CONFIG_INET)		+= ipv4/
obj-$(CONFIG_TLS)		+= tls/
obj-$(CONFIG_XFRM)		+= xfrm/
obj-$(CONFIG_UNIX)		+= unix/
obj-y				+= ipv6/
obj-$(CONFIG_BPFILTER)		+= bpfilter/
obj-$(CONFIG_PACKET)		+= packet/
"""

# 2.6.32 (the seed's EL6 kernel) builds ipv6/ only for CONFIG_IPV6.
MAKEFILE_2632 = """\
obj-$(CONFIG_INET)		+= ipv4/
obj-$(CONFIG_XFRM)		+= xfrm/
obj-$(CONFIG_UNIX)		+= unix/
obj-$(CONFIG_NET)		+= ipv6/
obj-$(CONFIG_PACKET)		+= packet/
"""


def test_kconfig_sources_toa_after_ipv6_inside_if_inet():
    out = mtp.wire_kconfig(KCONFIG_61)
    lines = out.splitlines()
    i = lines.index('source "net/ipv6/Kconfig"')
    assert lines[i + 1] == 'source "net/toa/Kconfig"'
    assert lines.index("if INET") < i + 1 < lines.index("endif # if INET")
    assert out.replace('source "net/toa/Kconfig"\n', "") == KCONFIG_61


def test_makefile_descends_into_toa_after_ipv6():
    out = mtp.wire_makefile(MAKEFILE_61)
    assert "obj-y\t\t\t\t+= ipv6/\nobj-$(CONFIG_TOA)\t\t+= toa/\nobj-$(CONFIG_BPFILTER)" in out
    out = mtp.wire_makefile(MAKEFILE_2632)
    assert "+= ipv6/\nobj-$(CONFIG_TOA)\t\t+= toa/\nobj-$(CONFIG_PACKET)" in out


def test_wiring_falls_back_to_ipv4_anchor():
    out = mtp.wire_makefile("obj-$(CONFIG_INET)\t\t+= ipv4/\nobj-y += x/\n")
    assert out == "obj-$(CONFIG_INET)\t\t+= ipv4/\nobj-$(CONFIG_TOA)\t\t+= toa/\nobj-y += x/\n"
    out = mtp.wire_kconfig('if INET\nsource "net/ipv4/Kconfig"\nendif\n')
    assert out == 'if INET\nsource "net/ipv4/Kconfig"\nsource "net/toa/Kconfig"\nendif\n'


def test_wiring_is_idempotent():
    once = mtp.wire_kconfig(KCONFIG_61)
    assert mtp.wire_kconfig(once) == once
    once = mtp.wire_makefile(MAKEFILE_61)
    assert mtp.wire_makefile(once) == once


def test_missing_anchor_is_an_error_naming_the_file():
    with pytest.raises(mtp.PatchError, match=r"net/Kconfig has none of the expected anchors "
                                             r"\(the IPv6 entry, the IPv4 entry\)"):
        mtp.wire_kconfig("menu foo\nendmenu\n")
    with pytest.raises(mtp.PatchError, match=r"net/Makefile has none of the expected anchors"):
        mtp.wire_makefile("obj-y := socket.o\n")


def test_module_files_are_the_in_tree_set():
    names = [n for n, _ in mtp.module_files(SRC)]
    assert names == sorted(names)
    assert "Kconfig" in names and "Kbuild" in names and "toa_main.c" in names and "toa.h" in names
    # The out-of-tree driver, DKMS's file and the docs stay out of the kernel.
    for name in ("Makefile", "dkms.conf", "README.md", "VERSION"):
        assert name not in names


def _src_copy(tmp_path):
    dst = tmp_path / "src"
    shutil.copytree(SRC, str(dst))
    return dst


def test_module_source_checks(tmp_path):
    src = _src_copy(tmp_path)
    kbuild = (src / "Kbuild").read_text()
    (src / "Kbuild").write_text(kbuild + "toa-y += toa_missing.o\n")
    with pytest.raises(mtp.PatchError, match="lists toa_missing.o but there is no matching .c file"):
        mtp.module_files(str(src))
    (src / "Kbuild").write_text(kbuild.replace("obj-$(CONFIG_TOA) += toa.o", "obj-m += toa.o"))
    with pytest.raises(mtp.PatchError, match=r"no 'obj-\$\(CONFIG_TOA\) \+= toa.o' line"):
        mtp.module_files(str(src))
    (src / "Kbuild").write_text(kbuild)
    kconfig = (src / "Kconfig").read_text()
    (src / "Kconfig").write_text(kconfig.replace("tristate", "bool"))
    with pytest.raises(mtp.PatchError, match="TOA must be a tristate"):
        mtp.module_files(str(src))
    (src / "Kconfig").write_text(kconfig)
    (src / "toa.h").write_text("/* no newline */")
    with pytest.raises(mtp.PatchError, match="toa.h does not end with a newline"):
        mtp.module_files(str(src))


def test_patch_text_shape():
    files = mtp.module_files(SRC)
    text = mtp.make_patch(KCONFIG_61, MAKEFILE_61, files, "1.0.0")
    assert text == mtp.make_patch(KCONFIG_61, MAKEFILE_61, files, "1.0.0")  # deterministic
    assert text.startswith("TOA (TCP Option Address) in-tree: net/toa/ from toa-src 1.0.0\n")
    assert "--- a/net/Kconfig\n+++ b/net/Kconfig\n" in text
    assert "--- a/net/Makefile\n+++ b/net/Makefile\n" in text
    assert '+source "net/toa/Kconfig"\n' in text
    assert "+obj-$(CONFIG_TOA)\t\t+= toa/\n" in text
    for name, body in files:
        n = len(body.splitlines())
        assert "--- /dev/null\n+++ b/net/toa/%s\n@@ -0,0 +1,%d @@\n" % (name, n) in text
    # Already wired trees get no hunk for the wired file.
    wired = mtp.make_patch(mtp.wire_kconfig(KCONFIG_61), MAKEFILE_61, files)
    assert "a/net/Kconfig" not in wired and "a/net/Makefile" in wired


@pytest.mark.skipif(shutil.which("patch") is None, reason="patch(1) is not installed")
def test_patch_applies_with_patch_p1_to_a_mini_tree(tmp_path):
    tree = tmp_path / "linux"
    (tree / "net").mkdir(parents=True)
    (tree / "net" / "Kconfig").write_text(KCONFIG_61)
    (tree / "net" / "Makefile").write_text(MAKEFILE_61)
    out = tmp_path / "toa.patch"
    assert mtp.main(["--kernel-tree", str(tree), "-o", str(out)]) == 0
    for extra in (["--dry-run"], []):
        subprocess.run(["patch", "-p1", "--batch", "--forward", "-i", str(out)] + extra,
                       cwd=str(tree), check=True, stdout=subprocess.DEVNULL)
    for name, body in mtp.module_files(SRC):
        assert (tree / "net" / "toa" / name).read_text() == body
    assert (tree / "net" / "Kconfig").read_text() == mtp.wire_kconfig(KCONFIG_61)
    assert (tree / "net" / "Makefile").read_text() == mtp.wire_makefile(MAKEFILE_61)
    # A patched tree is refused: the patch is made against pristine sources.
    assert mtp.main(["--kernel-tree", str(tree), "-o", str(out)]) == 1


def test_cli_errors(tmp_path, capsys):
    assert mtp.main(["--kernel-tree", str(tmp_path)]) == 1
    assert "is not a kernel source tree: net/Kconfig is missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mtp.main([])
