#!/usr/bin/env python3
"""Build the TOA eBPF object reproducibly and keep its record honest.

roles/toa/files/toa-bpf/toa.bpf.o is built on the controller or build host,
never on a target, from roles/toa/files/toa-bpf/toa.bpf.c, and committed
beside it with BUILD_SHA256:

    source <sha256 of toa.bpf.c>
    object <sha256 of toa.bpf.o>
    toolchain <clang version> | libbpf-dev <version> | linux-libc-dev <version>

The build is reproducible: the source is compiled in a fresh directory under
a fixed relative name, and DWARF (which names the build directory) is
stripped; BTF, which the kernel needs for the maps, stays.  Same source and
toolchain -> the same bytes, so a rebuild proves that the object in the tree
is the one its source makes.

    python3 tools/build_toa_bpf.py --out FILE  # build to FILE, print its sha256
    python3 tools/build_toa_bpf.py --check     # rebuild twice; both must equal the
                                                 # committed object and record
    python3 tools/build_toa_bpf.py --update    # rebuild, rewrite object and record

Needs clang-14, llvm-14 (llvm-strip-14) and libbpf-dev (scripts/setup.sh).
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "roles", "toa", "files", "toa-bpf")
SOURCE = os.path.join(DIR, "toa.bpf.c")
OBJECT = os.path.join(DIR, "toa.bpf.o")
RECORD = os.path.join(DIR, "BUILD_SHA256")
CLANG = "clang-14"
STRIP = "llvm-strip-14"
# -mcpu=v3: 32-bit jumps and ALU (kernel 5.1+); the target kernels are 5.10+.
CFLAGS = ["-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Wextra", "-Werror",
          "-I/usr/include/x86_64-linux-gnu"]


class BuildError(Exception):
    pass


def sha256_file(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _run(cmd, cwd=None):
    try:
        r = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True)
    except OSError as e:
        raise BuildError("cannot run %s: %s (bash scripts/setup.sh installs it)" % (cmd[0], e))
    if r.returncode != 0:
        raise BuildError("%s failed:\n%s" % (" ".join(cmd), r.stdout))
    return r.stdout


def toolchain():
    """One line naming what the object's bytes depend on besides the source."""
    clang = _run([CLANG, "--version"]).splitlines()[0].strip()
    debs = []
    for pkg in ("libbpf-dev", "linux-libc-dev"):
        try:
            ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                                 stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
        except OSError:
            ver = ""
        debs.append("%s %s" % (pkg, ver or "?"))
    return " | ".join([clang] + debs)


def build(out, source=SOURCE):
    """Compile @source into @out; return the object's sha256."""
    work = tempfile.mkdtemp(prefix="toa-bpf-build.")
    try:
        shutil.copyfile(source, os.path.join(work, "toa.bpf.c"))
        # BTF names the source file by its full path: map the directory away
        _run([CLANG] + CFLAGS + ["-fdebug-prefix-map=%s=." % work,
                                 "-c", "toa.bpf.c", "-o", "toa.full.o"], cwd=work)
        _run([STRIP, "-g", "toa.full.o", "-o", "toa.bpf.o"], cwd=work)
        shutil.copyfile(os.path.join(work, "toa.bpf.o"), out)
    finally:
        shutil.rmtree(work)
    return sha256_file(out)


def read_record(path=RECORD):
    rec = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            key, _, value = line.strip().partition(" ")
            if key:
                rec[key] = value
    return rec


def record_text(source_sha, object_sha, chain):
    return "source %s\nobject %s\ntoolchain %s\n" % (source_sha, object_sha, chain)


def record_problems(rec, source_sha, object_sha):
    """Why the record does not describe this source and object (empty: it does)."""
    out = []
    if rec.get("source") != source_sha:
        out.append("toa.bpf.c hashes to %s, the record says %s: rebuild with --update"
                   % (source_sha, rec.get("source")))
    if rec.get("object") != object_sha:
        out.append("toa.bpf.o hashes to %s, the record says %s"
                   % (object_sha, rec.get("object")))
    return out


def check():
    problems = record_problems(read_record(), sha256_file(SOURCE), sha256_file(OBJECT))
    tmp = tempfile.mkdtemp(prefix="toa-bpf-check.")
    try:
        first = build(os.path.join(tmp, "a.o"))
        second = build(os.path.join(tmp, "b.o"))
    finally:
        shutil.rmtree(tmp)
    if first != second:
        problems.append("two builds of one source differ: %s, %s" % (first, second))
    if first != sha256_file(OBJECT):
        problems.append("the source builds to %s, the committed object is %s (toolchain here: "
                        "%s; recorded: %s)" % (first, sha256_file(OBJECT), toolchain(),
                                               read_record().get("toolchain")))
    return problems, first


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out")
    g.add_argument("--check", action="store_true")
    g.add_argument("--update", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.out:
            print(build(args.out))
        elif args.update:
            obj_sha = build(OBJECT)
            with open(RECORD, "w", encoding="utf-8") as handle:
                handle.write(record_text(sha256_file(SOURCE), obj_sha, toolchain()))
            print("recorded %s" % obj_sha)
        else:
            problems, sha = check()
            for p in problems:
                print("build_toa_bpf: %s" % p, file=sys.stderr)
            if problems:
                return 1
            print("ok: toa.bpf.c builds to the committed toa.bpf.o (%s)" % sha)
    except BuildError as e:
        print("build_toa_bpf: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
