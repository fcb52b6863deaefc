#!/usr/bin/env python3
"""Generate the in-tree TOA kernel patch from the project's module source.

The module source in roles/toa/files/toa-src/ builds out of tree (DKMS,
``make M=...``) and in tree from the same Kbuild and Kconfig.  This script
turns it into a unified diff (``patch -p1``, a/ and b/ prefixes) that

* adds ``net/toa/`` with the C sources and headers, the Kconfig (``config
  TOA``, tristate) and the Kbuild (``obj-$(CONFIG_TOA) += toa.o`` and the
  object list), copied unchanged, and
* wires it into ``net/Kconfig`` (``source "net/toa/Kconfig"`` after the IPv6
  entry, inside ``if INET``) and ``net/Makefile`` (``obj-$(CONFIG_TOA) +=
  toa/`` after the ipv6/ line).

The patch is generated, never kept by hand: the kernel build scripts call this
with the kernel tree they patch.

    tools/make_toa_patch.py --kernel-tree ~/src/linux-6.1 -o toa.patch
    tools/make_toa_patch.py --net-kconfig Kconfig --net-makefile Makefile

A tree that already carries the wiring gets no hunk for that file; a tree that
already has net/toa/ is refused (patch it from a pristine tree).
"""

import argparse
import difflib
import hashlib
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SRC = os.path.join(ROOT, "roles", "toa", "files", "toa-src")

KCONFIG_LINE = 'source "net/toa/Kconfig"\n'
MAKEFILE_LINE = "obj-$(CONFIG_TOA)\t\t+= toa/\n"

# Where the wiring goes, in order of preference; the first anchor found wins.
KCONFIG_ANCHORS = (
    ("the IPv6 entry", re.compile(r'^\s*source\s+"?net/ipv6/Kconfig"?\s*$')),
    ("the IPv4 entry", re.compile(r'^\s*source\s+"?net/ipv4/Kconfig"?\s*$')),
)
MAKEFILE_ANCHORS = (
    ("the ipv6/ line", re.compile(r"^obj-\S+\s*\+?:?=.*\bipv6/")),
    ("the ipv4/ line", re.compile(r"^obj-\S+\s*\+?:?=.*\bipv4/")),
)
KCONFIG_DONE_RE = re.compile(r'^\s*source\s+"?net/toa/Kconfig"?\s*$', re.M)
MAKEFILE_DONE_RE = re.compile(r"^obj-\S+\s*\+?=.*\btoa/", re.M)

# Only these reach the kernel tree: the in-tree build needs nothing else
# (Makefile is the out-of-tree driver, dkms.conf DKMS's, README/VERSION docs).
IN_TREE_FIXED = ("Kconfig", "Kbuild")


class PatchError(Exception):
    """The source or the kernel tree does not fit; the text says what to fix."""


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def module_files(src_dir):
    """Return [(name, text)] of the files that go to net/toa/, sorted by name.

    Checks that Kconfig defines a tristate TOA, that Kbuild builds toa.o for
    CONFIG_TOA and lists objects whose .c files exist, and that every file ends
    with a newline (a diff without one needs a marker patch(1) versions treat
    differently).
    """
    if not os.path.isdir(src_dir):
        raise PatchError("module source directory %s does not exist" % src_dir)
    names = sorted(n for n in os.listdir(src_dir)
                   if n.endswith((".c", ".h")) or n in IN_TREE_FIXED)
    for fixed in IN_TREE_FIXED:
        if fixed not in names:
            raise PatchError("%s has no %s; the in-tree build needs it" % (src_dir, fixed))
    files = [(n, _read(os.path.join(src_dir, n))) for n in names]
    texts = dict(files)
    kconfig = texts["Kconfig"]
    if not re.search(r"^config TOA\s*$", kconfig, re.M):
        raise PatchError("%s/Kconfig does not define 'config TOA'" % src_dir)
    if not re.search(r"^\s+tristate\b", kconfig, re.M):
        raise PatchError("%s/Kconfig: TOA must be a tristate (built as a module)" % src_dir)
    kbuild = texts["Kbuild"]
    if not re.search(r"^\s*obj-\$\(CONFIG_TOA\)\s*\+=\s*toa\.o\s*$", kbuild, re.M):
        raise PatchError("%s/Kbuild has no 'obj-$(CONFIG_TOA) += toa.o' line for the in-tree build"
                         % src_dir)
    objects = []
    for match in re.finditer(r"^\s*toa-(?:y|objs)\s*:?\+?=\s*(.*)$", kbuild, re.M):
        objects.extend(match.group(1).split())
    if not objects:
        raise PatchError("%s/Kbuild lists no objects (toa-y := ...)" % src_dir)
    missing = [o for o in objects if o[:-2] + ".c" not in texts]
    if missing:
        raise PatchError("%s/Kbuild lists %s but there is no matching .c file"
                         % (src_dir, ", ".join(missing)))
    for name, text in files:
        if text and not text.endswith("\n"):
            raise PatchError("%s/%s does not end with a newline" % (src_dir, name))
    return files


def _insert_after(text, line, anchors, what):
    lines = text.splitlines(True)
    for _label, anchor in anchors:
        for i, existing in enumerate(lines):
            if anchor.match(existing):
                if not existing.endswith("\n"):
                    lines[i] = existing + "\n"
                lines.insert(i + 1, line)
                return "".join(lines)
    raise PatchError("%s has none of the expected anchors (%s); cannot wire TOA in"
                     % (what, ", ".join(label for label, _ in anchors)))


def wire_kconfig(text):
    """net/Kconfig with TOA's Kconfig sourced after IPv6's (unchanged when present)."""
    if KCONFIG_DONE_RE.search(text):
        return text
    return _insert_after(text, KCONFIG_LINE, KCONFIG_ANCHORS, "net/Kconfig")


def wire_makefile(text):
    """net/Makefile descending into toa/ for CONFIG_TOA (unchanged when present)."""
    if MAKEFILE_DONE_RE.search(text):
        return text
    return _insert_after(text, MAKEFILE_LINE, MAKEFILE_ANCHORS, "net/Makefile")


def file_diff(path, old, new):
    """Unified diff text of one file; old None means the file is created."""
    if old == new:
        return ""
    old_lines = [] if old is None else old.splitlines(True)
    new_lines = new.splitlines(True)
    diff = list(difflib.unified_diff(
        old_lines, new_lines,
        fromfile="/dev/null" if old is None else "a/" + path,
        tofile="b/" + path, n=3))
    for i, line in enumerate(diff):
        if not line.endswith("\n"):
            diff[i] = line + "\n\\ No newline at end of file\n"
    return "".join(diff)


def source_digest(files):
    h = hashlib.sha256()
    for name, text in files:
        h.update(name.encode() + b"\0" + text.encode("utf-8") + b"\0")
    return h.hexdigest()


def make_patch(net_kconfig, net_makefile, files, version=None):
    """The whole patch as text, deterministic for the same inputs."""
    header = [
        "TOA (TCP Option Address) in-tree: net/toa/ from toa-src%s\n"
        % ((" " + version) if version else ""),
        "Generated by tools/make_toa_patch.py; source sha256 %s\n" % source_digest(files),
        "\n",
    ]
    parts = [file_diff("net/Kconfig", net_kconfig, wire_kconfig(net_kconfig)),
             file_diff("net/Makefile", net_makefile, wire_makefile(net_makefile))]
    for name, text in files:
        parts.append(file_diff("net/toa/" + name, None, text))
    return "".join(header) + "".join(parts)


def patch_for_tree(tree, src_dir=DEFAULT_SRC):
    """Read net/Kconfig and net/Makefile of a kernel tree and return the patch."""
    for rel in ("net/Kconfig", "net/Makefile"):
        if not os.path.isfile(os.path.join(tree, rel)):
            raise PatchError("%s is not a kernel source tree: %s is missing" % (tree, rel))
    if os.path.exists(os.path.join(tree, "net", "toa")):
        raise PatchError("%s already has net/toa/; generate the patch against a pristine tree" % tree)
    return make_patch(_read(os.path.join(tree, "net", "Kconfig")),
                      _read(os.path.join(tree, "net", "Makefile")),
                      module_files(src_dir), read_version(src_dir))


def read_version(src_dir):
    path = os.path.join(src_dir, "VERSION")
    return _read(path).strip() if os.path.isfile(path) else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=DEFAULT_SRC, help="TOA module source (default: %(default)s)")
    ap.add_argument("--kernel-tree", help="kernel source tree to patch (reads net/Kconfig, net/Makefile)")
    ap.add_argument("--net-kconfig", help="net/Kconfig of the target tree (instead of --kernel-tree)")
    ap.add_argument("--net-makefile", help="net/Makefile of the target tree (instead of --kernel-tree)")
    ap.add_argument("-o", "--output", help="write the patch here (default: stdout)")
    args = ap.parse_args(argv)
    try:
        if args.kernel_tree:
            text = patch_for_tree(args.kernel_tree, args.src)
        elif args.net_kconfig and args.net_makefile:
            text = make_patch(_read(args.net_kconfig), _read(args.net_makefile),
                              module_files(args.src), read_version(args.src))
        else:
            ap.error("give --kernel-tree, or both --net-kconfig and --net-makefile")
    except (PatchError, OSError) as exc:
        print("make_toa_patch: %s" % exc, file=sys.stderr)
        return 1
    if args.output:
        tmp = args.output + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, args.output)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
