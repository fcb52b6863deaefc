"""The TOA module's version moves with its source (scripts/toa_src_hash.py).

The role tells a rebuilt module from the loaded one by srcversion, but DKMS
installs it under /usr/src/toa-<VERSION>, and people read the version: a
source change must come with a new VERSION and a new SOURCE_SHA256 record.
"""

import os
import shutil
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import toa_src_hash as tsh  # noqa: E402


# -- the tree as committed --------------------------------------------------------------

def test_source_matches_its_record():
    assert tsh.problems() == [], "\n".join(tsh.problems())


def test_version_is_the_same_in_every_file_that_carries_it():
    seen = tsh.versions()
    assert seen["VERSION"] and seen["VERSION"] == seen["toa.h"] == seen["dkms.conf"], seen


# -- the check and the update on a copy ---------------------------------------------------

@pytest.fixture
def src(tmp_path):
    copy = tmp_path / "toa-src"
    shutil.copytree(tsh.SRC, str(copy))
    tsh.update(str(copy), force=True)
    return copy


def bump(src, old, new):
    (src / "VERSION").write_text(new + "\n")
    for name in ("toa.h", "dkms.conf"):
        (src / name).write_text((src / name).read_text().replace(old, new))


def test_files_covered_are_the_module_source():
    names = tsh.source_files()
    assert names == sorted(names)
    assert {"Kbuild", "Kconfig", "Makefile", "dkms.conf", "toa.h", "toa_main.c"} <= set(names)
    assert "README.md" not in names and "VERSION" not in names and tsh.RECORD not in names


def test_a_source_change_without_an_update_fails(src):
    assert tsh.problems(str(src)) == []
    with open(str(src / "toa_cfg.c"), "a") as handle:
        handle.write("/* changed */\n")
    found = tsh.problems(str(src))
    assert len(found) == 1 and "The module source changed since SOURCE_SHA256" in found[0]
    assert "bump VERSION" in found[0]


@pytest.mark.parametrize("name", ["Kbuild", "dkms.conf", "toa.h"])
def test_every_covered_file_counts(src, name):
    before = tsh.source_hash(str(src))
    with open(str(src / name), "a") as handle:
        handle.write("\n")
    assert tsh.source_hash(str(src)) != before


def test_docs_do_not_count(src):
    before = tsh.source_hash(str(src))
    with open(str(src / "README.md"), "a") as handle:
        handle.write("more words\n")
    assert tsh.source_hash(str(src)) == before


def test_update_refuses_a_change_under_the_same_version(src):
    with open(str(src / "toa_main.c"), "a") as handle:
        handle.write("\n")
    version = tsh.versions(str(src))["VERSION"]
    with pytest.raises(SystemExit, match="VERSION is still %s: bump it" % version):
        tsh.update(str(src))
    bump(src, version, "9.9.9")
    assert tsh.update(str(src)) == ("9.9.9", tsh.source_hash(str(src)))
    assert (src / tsh.RECORD).read_text().startswith("9.9.9 ")
    assert tsh.problems(str(src)) == []


def test_record_for_another_version_fails(src):
    record = (src / tsh.RECORD).read_text().split()
    (src / tsh.RECORD).write_text("0.9.0 %s\n" % record[1])
    found = tsh.problems(str(src))
    assert len(found) == 1 and "recorded for version 0.9.0 but VERSION is" in found[0]


def test_versions_that_disagree_fail(src):
    # a version no file carries, whatever the tree's own version is
    other = "%s.1" % (src / "VERSION").read_text().strip()
    (src / "VERSION").write_text(other + "\n")
    found = tsh.problems(str(src))
    assert any("The version differs between the files that carry it" in line
               and "VERSION %s" % other in line for line in found), found


def test_missing_record_fails(src):
    os.remove(str(src / tsh.RECORD))
    assert "SOURCE_SHA256 is missing or malformed" in tsh.problems(str(src))[0]


def test_command_line(src, capsys):
    assert tsh.main(["--check", "--src", str(src)]) == 0
    with open(str(src / "toa_opt.c"), "a") as handle:
        handle.write("\n")
    assert tsh.main(["--check", "--src", str(src)]) == 1
    assert "--update" in capsys.readouterr().err
    assert tsh.main(["--update", "--force", "--src", str(src)]) == 0
    assert tsh.main(["--check", "--src", str(src)]) == 0
