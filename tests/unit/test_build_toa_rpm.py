"""tools/build_toa_rpm.py: runs toa_rpmspec's recipe steps in order (commands faked)."""

import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import build_toa_rpm  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


class Proc:
    def __init__(self, rc):
        self.returncode = rc


def test_runs_every_step_and_edits_spec_and_config(tmp_path, capsys):
    top = tmp_path / "rpmbuild"
    (top / "SPECS").mkdir(parents=True)
    (top / "SOURCES").mkdir()
    shutil.copy(os.path.join(FIXTURES, "kernel-el7.spec"), str(top / "SPECS" / "kernel.spec"))
    (top / "SOURCES" / "config-x86_64-generic").write_text("# x86_64\nCONFIG_IPV6=m\n")
    calls = []

    def fake_run(argv, cwd=None, stdout=None):
        calls.append((argv[0], argv[1] if len(argv) > 1 else None, cwd, bool(stdout)))
        return Proc(1 if argv[0] == "diff" else 0)  # diff: the trees differ

    assert build_toa_rpm.main(["--srpm", "kernel-3.10.0-693.el7.src.rpm", "--topdir", str(top)], fake_run) == 0
    assert [c[0] for c in calls] == ["rpm", "rpmbuild", "rm", "cp", sys.executable, "patch", "rm", "diff",
                                     "rpmbuild"]
    assert calls[-1][1] == "-bb"
    assert calls[7][3], "diff output goes to SOURCES/toa.patch"
    spec = (top / "SPECS" / "kernel.spec").read_text()
    assert "Patch1000000: toa.patch\n" in spec and "ApplyOptionalPatch toa.patch\n" in spec
    assert "%define buildid .toa\n" in spec
    assert (top / "SOURCES" / "config-x86_64-generic").read_text() == "# x86_64\nCONFIG_IPV6=y\n# toa\nCONFIG_TOA=m\n"
    out = capsys.readouterr().out
    assert "[11/11] build the kernel rpm: rpmbuild -bb --with baseonly" in out
    assert out.rstrip().endswith("RPMS/x86_64/kernel-3.10.0-693.el7.toa.x86_64.rpm")


def test_stops_at_the_first_failing_step(tmp_path, capsys):
    calls = []

    def fake_run(argv, cwd=None, stdout=None):
        calls.append(argv[0])
        return Proc(1 if argv[0] == "rpmbuild" else 0)

    assert build_toa_rpm.main(["--srpm", "kernel-3.10.0-693.el7.src.rpm", "--topdir", str(tmp_path)],
                              fake_run) == 1
    assert calls == ["rpm", "rpmbuild"]
    assert "prepare the source tree (%prep): rpmbuild exited 1" in capsys.readouterr().err


def test_dry_run_runs_nothing(capsys):
    def fail(*a, **k):
        raise AssertionError("ran something")
    assert build_toa_rpm.main(["--srpm", "kernel-2.6.32-220.23.1.el6.src.rpm", "--dry-run"], fail) == 0
    assert "kernel-2.6.32-220.23.1.el6.toa.x86_64.rpm" in capsys.readouterr().out
