"""toa_src: one module run writes only the files that differ, check mode writes nothing."""

import os
import stat

import toa_src

FILES = {"Kbuild": "obj-m += toa.o\n", "toa_main.c": "int x;\n", "VERSION": "1.0.0"}


def listing(path):
    return {n: open(os.path.join(str(path), n)).read() for n in sorted(os.listdir(str(path)))}


def mode(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


def test_first_run_creates_the_directory_and_every_file(run_module, tmp_path):
    dest = tmp_path / "toa-1.0.0"
    res = run_module(toa_src, {"dest": str(dest), "files": FILES})
    assert res["changed"] and not res.get("failed")
    assert res["written"] == sorted(FILES)
    assert listing(dest) == FILES
    assert mode(dest) == 0o755
    assert all(mode(dest / n) == 0o644 for n in FILES)
    # content is byte for byte: no newline added to VERSION
    assert (dest / "VERSION").read_bytes() == b"1.0.0"


def test_second_run_changes_nothing(run_module, tmp_path):
    dest = tmp_path / "src"
    run_module(toa_src, {"dest": str(dest), "files": FILES})
    before = {n: os.stat(str(dest / n)).st_mtime_ns for n in FILES}
    res = run_module(toa_src, {"dest": str(dest), "files": FILES})
    assert not res["changed"]
    assert res["written"] == [] and res["attributes_changed"] == []
    assert {n: os.stat(str(dest / n)).st_mtime_ns for n in FILES} == before


def test_only_the_changed_file_is_written_and_others_are_kept(run_module, tmp_path):
    dest = tmp_path / "src"
    run_module(toa_src, {"dest": str(dest), "files": FILES})
    (dest / "extra.txt").write_text("not ours\n")
    new = dict(FILES, **{"toa_main.c": "int y;\n"})
    res = run_module(toa_src, {"dest": str(dest), "files": new}, diff=True)
    assert res["changed"] and res["written"] == ["toa_main.c"]
    assert (dest / "toa_main.c").read_text() == "int y;\n"
    assert (dest / "extra.txt").read_text() == "not ours\n"
    diff = [d for d in res["diff"] if d["after_header"].endswith("toa_main.c")]
    assert diff and diff[0]["before"] == "int x;\n" and diff[0]["after"] == "int y;\n"


def test_a_wrong_mode_alone_is_fixed_without_rewriting(run_module, tmp_path):
    dest = tmp_path / "src"
    run_module(toa_src, {"dest": str(dest), "files": FILES})
    os.chmod(str(dest / "Kbuild"), 0o600)
    res = run_module(toa_src, {"dest": str(dest), "files": FILES})
    assert res["changed"] and res["written"] == []
    assert res["attributes_changed"] == [str(dest / "Kbuild")]
    assert mode(dest / "Kbuild") == 0o644


def test_check_mode_writes_nothing(run_module, tmp_path):
    dest = tmp_path / "src"
    res = run_module(toa_src, {"dest": str(dest), "files": FILES}, check_mode=True)
    assert res["changed"] and res["written"] == sorted(FILES)
    assert not dest.exists()
    run_module(toa_src, {"dest": str(dest), "files": FILES})
    new = dict(FILES, Kbuild="changed\n")
    res = run_module(toa_src, {"dest": str(dest), "files": new}, check_mode=True)
    assert res["changed"] and res["written"] == ["Kbuild"]
    assert (dest / "Kbuild").read_text() == FILES["Kbuild"]


def test_a_file_name_with_a_directory_is_refused(run_module, tmp_path):
    res = run_module(toa_src, {"dest": str(tmp_path), "files": {"../etc/passwd": "x"}})
    assert res["failed"] and "plain file names" in res["msg"] and "../etc/passwd" in res["msg"]


def test_a_relative_dest_is_refused(run_module):
    res = run_module(toa_src, {"dest": "usr/src/toa", "files": FILES})
    assert res["failed"] and "absolute" in res["msg"]


def test_dest_that_is_a_file_is_refused(run_module, tmp_path):
    target = tmp_path / "plain"
    target.write_text("")
    res = run_module(toa_src, {"dest": str(target), "files": FILES})
    assert res["failed"] and "not a directory" in res["msg"]


def test_non_text_content_is_refused(run_module, tmp_path):
    res = run_module(toa_src, {"dest": str(tmp_path / "d"), "files": {"a": ["x"]}})
    assert res["failed"] and "'a'" in res["msg"]
