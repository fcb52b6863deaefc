"""tools/toa_rpmspec.py: the seed's rpmbuild recipe (spec/config edits, commands)."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import toa_rpmspec as rs  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
with open(os.path.join(FIXTURES, "kernel-el7.spec")) as _f:
    SPEC = _f.read()

# The same spec without the empty test patch: Patch999999 is free.
SPEC_FREE = SPEC.replace("# empty final patch to facilitate testing of kernel patches\n"
                         "Patch999999: linux-kernel-test.patch\n\n", "").replace(
    "ApplyOptionalPatch linux-kernel-test.patch\n", "")


def _inserted(before, after):
    """Lines of after that are not in before, with their index in after."""
    b = before.splitlines()
    a = after.splitlines()
    assert len(a) >= len(b)
    out = []
    j = 0
    for i, line in enumerate(a):
        if j < len(b) and b[j] == line:
            j += 1
        else:
            out.append((i, line))
    assert j == len(b), "lines were changed, not only inserted"
    return out


def test_edit_spec_exact_output_with_a_free_patch_number():
    out = rs.edit_spec(SPEC_FREE)
    lines = out.splitlines()
    added = [line for _i, line in _inserted(SPEC_FREE, out)]
    assert added == ["%define buildid .toa", "Patch999999: toa.patch", "ApplyOptionalPatch toa.patch"]
    i = lines.index("Patch999999: toa.patch")
    assert lines[i - 1] == "Patch1002: debrand-rh-i686-cpu.patch"
    i = lines.index("ApplyOptionalPatch toa.patch")
    assert lines[i - 1] == "ApplyOptionalPatch debrand-rh-i686-cpu.patch"
    assert lines[i + 1] == ""
    i = lines.index("%define buildid .toa")
    assert lines[i - 1] == "# % define buildid .local"


def test_taken_patch_number_gets_the_next_free_one():
    out, number = rs.add_patch_tag(SPEC)
    assert number == 1000000
    assert "Patch1002: debrand-rh-i686-cpu.patch\nPatch1000000: toa.patch\n" in out
    assert "Patch999999: linux-kernel-test.patch\n" in out


def test_apply_goes_after_the_last_apply_line_of_prep_not_into_the_helpers():
    out = rs.add_apply(SPEC)
    assert "ApplyOptionalPatch linux-kernel-test.patch\nApplyOptionalPatch toa.patch\n" in out
    # The helper functions' own ApplyPatch $patch line is not an anchor.
    assert out.count("ApplyOptionalPatch toa.patch") == 1


def test_apply_keeps_the_anchor_indentation():
    spec = "%prep\nfor x in y; do\n  ApplyPatch one.patch\ndone\n%build\n"
    assert rs.add_apply(spec) == ("%prep\nfor x in y; do\n  ApplyPatch one.patch\n"
                                  "  ApplyOptionalPatch toa.patch\ndone\n%build\n")


def test_edits_are_idempotent():
    for spec in (SPEC, SPEC_FREE):
        once = rs.edit_spec(spec)
        assert rs.edit_spec(once) == once
    config = "CONFIG_IPV6=m\n"
    once = rs.set_config(config)
    assert rs.set_config(once) == once


def test_existing_patch_keeps_its_number():
    spec = SPEC_FREE.replace("Patch1002: debrand-rh-i686-cpu.patch\n",
                             "Patch1002: debrand-rh-i686-cpu.patch\nPatch4242: toa.patch\n")
    out, number = rs.add_patch_tag(spec)
    assert (out, number) == (spec, 4242)


def test_buildid_replaces_an_active_definition_and_can_be_left_alone():
    spec = "%define buildid .local\nName: kernel\n"
    assert rs.set_buildid(spec) == "%define buildid .toa\nName: kernel\n"
    assert rs.set_buildid("Name: kernel\n") == "%define buildid .toa\nName: kernel\n"
    out = rs.edit_spec(SPEC_FREE, buildid=None)
    assert "%define buildid" not in out
    with pytest.raises(rs.SpecError, match="must start with a dot"):
        rs.set_buildid(spec, "toa")


@pytest.mark.parametrize("spec, message", [
    ("Name: kernel\n%prep\nApplyPatch a.patch\n%build\n",
     "kernel.spec has no PatchNNN: line; cannot declare Patch999999: toa.patch. "
     "Is this the kernel package's spec?"),
    ("Patch1: a.patch\n%build\nmake\n",
     "kernel.spec has no %prep section; cannot apply the patch there"),
    ("Patch1: a.patch\n%prep\n%setup -q\n%build\nApplyPatch a.patch\n",
     "kernel.spec's %prep has no ApplyOptionalPatch or ApplyPatch line; cannot place "
     "'ApplyOptionalPatch toa.patch' (add it by hand after the distribution's patches)"),
])
def test_missing_anchors_say_what_is_missing(spec, message):
    with pytest.raises(rs.SpecError) as err:
        rs.edit_spec(spec)
    assert str(err.value) == message


def test_config_fragment_edits():
    fragment = ("# x86_64\nCONFIG_64BIT=y\nCONFIG_IPV6=m\n# CONFIG_TOA is not set\n"
                "CONFIG_IPV6_SIT=m\n")
    assert rs.set_config(fragment) == ("# x86_64\nCONFIG_64BIT=y\nCONFIG_IPV6=y\nCONFIG_TOA=m\n"
                                       "CONFIG_IPV6_SIT=m\n")
    assert rs.set_config("# x86_64\nCONFIG_IPV6=m") == "# x86_64\nCONFIG_IPV6=y\n# toa\nCONFIG_TOA=m\n"
    assert rs.set_config("") == "# toa\nCONFIG_IPV6=y\nCONFIG_TOA=m\n"
    with pytest.raises(rs.SpecError, match="'IPV6' is not a CONFIG_ symbol"):
        rs.set_config("", (("IPV6", "y"),))


def test_recipe_commands():
    steps = rs.recipe("/root/kernel-3.10.0-693.el7.src.rpm", topdir="/root/rpmbuild",
                      patch_tool="/opt/toa/make_toa_patch.py")
    build = "/root/rpmbuild/BUILD/kernel-3.10.0-693.el7"
    define = ["--define", "_topdir /root/rpmbuild"]
    spec = "/root/rpmbuild/SPECS/kernel.spec"
    got = [(s["name"], s.get("argv"), s.get("cwd"), s.get("edit"), s.get("path")) for s in steps]
    assert got == [
        ("install the source rpm", ["rpm", "-ivh"] + define + ["/root/kernel-3.10.0-693.el7.src.rpm"],
         None, None, None),
        ("prepare the source tree (%prep)", ["rpmbuild", "-bp", "--target=x86_64"] + define + [spec],
         None, None, None),
        ("start from a fresh copy of the prepared tree",
         ["rm", "-rf", build + "/linux-3.10.0-693.el7.x86_64_toa"], None, None, None),
        ("copy the prepared tree", ["cp", "-a", "linux-3.10.0-693.el7.x86_64", "linux-3.10.0-693.el7.x86_64_toa"],
         build, None, None),
        ("generate the TOA patch for this tree",
         ["python3", "/opt/toa/make_toa_patch.py", "--kernel-tree", build + "/linux-3.10.0-693.el7.x86_64_toa",
          "-o", build + "/toa-in-tree.patch"], None, None, None),
        ("apply the TOA patch in the copy",
         ["patch", "-p1", "--batch", "--forward", "-i", build + "/toa-in-tree.patch"],
         build + "/linux-3.10.0-693.el7.x86_64_toa", None, None),
        ("drop the configs rpmbuild -bp left in both trees",
         ["rm", "-f", build + "/linux-3.10.0-693.el7.x86_64/.config",
          build + "/linux-3.10.0-693.el7.x86_64_toa/.config"], None, None, None),
        ("diff the trees into SOURCES/toa.patch",
         ["diff", "-uNr", "linux-3.10.0-693.el7.x86_64", "linux-3.10.0-693.el7.x86_64_toa"], build, None, None),
        ("CONFIG_IPV6=y, CONFIG_TOA=m", None, None, "set_config", "/root/rpmbuild/SOURCES/config-x86_64-generic"),
        ("declare and apply toa.patch in kernel.spec, buildid .toa", None, None, "edit_spec", spec),
        ("build the kernel rpm",
         ["rpmbuild", "-bb", "--with", "baseonly", "--without", "kabichk", "--with", "firmware",
          "--without", "debuginfo", "--target=x86_64"] + define + [spec], None, None, None),
    ]
    diff = [s for s in steps if s.get("argv") and s["argv"][0] == "diff"][0]
    assert diff["ok_rc"] == [0, 1]
    assert diff["stdout"] == "/root/rpmbuild/SOURCES/toa.patch"
    for s in steps:
        for edit in [s.get("edit")] if s.get("edit") else []:
            assert callable(getattr(rs, edit))


def test_names():
    assert rs.srpm_version("kernel-2.6.32-220.23.1.el6.src.rpm") == "2.6.32-220.23.1.el6"
    assert rs.expected_rpm("kernel-2.6.32-220.23.1.el6.src.rpm") == "kernel-2.6.32-220.23.1.el6.toa.x86_64.rpm"
    assert rs.expected_rpm("kernel-4.18.0-553.el8_10.src.rpm", "aarch64") == \
        "kernel-4.18.0-553.el8_10.toa.aarch64.rpm"
    with pytest.raises(rs.SpecError, match="is not a kernel source rpm name"):
        rs.srpm_version("linux-6.1.tar.xz")
