#!/usr/bin/env python3
"""Run the seed's rpmbuild recipe for a TOA kernel on an EL build host.

The steps and the kernel.spec/config edits come from tools/toa_rpmspec.py
(unit-tested); this script only runs them in order and stops at the first
failure.  NOT PROVEN on a real EL host: none is reachable from the project's
build environment.  --dry-run prints the steps without running anything.

    tools/build_toa_rpm.py --srpm kernel-3.10.0-693.el7.src.rpm --dry-run
    tools/build_toa_rpm.py --srpm kernel-3.10.0-693.el7.src.rpm --topdir ~/rpmbuild
"""

import argparse
import os
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # toa_rpmspec.py lives beside this script

import toa_rpmspec  # noqa: E402


def describe(step):
    if "edit" in step:
        return "edit %s (%s)" % (step["path"], step["edit"])
    text = " ".join(shlex.quote(a) for a in step["argv"])
    if step.get("stdout"):
        text += " > " + shlex.quote(step["stdout"])
    if step.get("cwd"):
        text = "(cd %s && %s)" % (shlex.quote(step["cwd"]), text)
    return text


def run_step(step, run=subprocess.run):
    if "edit" in step:
        with open(step["path"]) as f:
            before = f.read()
        after = getattr(toa_rpmspec, step["edit"])(before)
        if after != before:
            with open(step["path"] + ".tmp", "w") as f:
                f.write(after)
            os.replace(step["path"] + ".tmp", step["path"])
        return
    out = open(step["stdout"], "w") if step.get("stdout") else None
    try:
        proc = run(step["argv"], cwd=step.get("cwd"), stdout=out)
    finally:
        if out:
            out.close()
    if proc.returncode not in step["ok_rc"]:
        raise toa_rpmspec.SpecError("%s: %s exited %d" % (step["name"], step["argv"][0], proc.returncode))


def main(argv=None, run=subprocess.run):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--srpm", required=True, help="kernel-<version>-<release>.src.rpm")
    ap.add_argument("--arch", default="x86_64")
    ap.add_argument("--topdir", default=os.path.join(os.path.expanduser("~"), "rpmbuild"))
    ap.add_argument("--dry-run", action="store_true", help="print the steps, run nothing")
    args = ap.parse_args(argv)
    try:
        steps = toa_rpmspec.recipe(os.path.abspath(args.srpm), args.arch, args.topdir,
                                   os.path.join(HERE, "make_toa_patch.py"), sys.executable)
        for i, step in enumerate(steps, 1):
            print("[%d/%d] %s: %s" % (i, len(steps), step["name"], describe(step)), flush=True)
            if not args.dry_run:
                run_step(step, run)
    except (toa_rpmspec.SpecError, OSError) as exc:
        print("build_toa_rpm: %s" % exc, file=sys.stderr)
        return 1
    print("expected package: %s/RPMS/%s/%s" % (args.topdir, args.arch,
                                               toa_rpmspec.expected_rpm(args.srpm, args.arch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
