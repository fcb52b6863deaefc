# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The seed's rpmbuild recipe for a TOA kernel, as pure logic (no I/O).

RHEL-family TOA kernels are built the way the vendor guide does it by hand:

1. ``rpm -ivh kernel-<ver>.src.rpm``, ``rpmbuild -bp kernel.spec``
2. copy the prepared tree, apply the TOA patch in the copy
3. ``diff -uNr`` the two trees into ``SOURCES/toa.patch``
4. ``CONFIG_IPV6=y`` and ``CONFIG_TOA=m`` in ``SOURCES/config-<arch>-generic``
5. ``Patch999999: toa.patch`` and ``ApplyOptionalPatch toa.patch`` in
   ``kernel.spec`` (plus ``%define buildid .toa`` so the package names itself
   a TOA kernel)
6. ``rpmbuild -bb --with baseonly --without kabichk --with firmware
   --without debuginfo --target=<arch> kernel.spec``

This module edits text and builds argument lists; the caller runs them.
Every edit is idempotent: applied to its own output it changes nothing.
Not proven on a real EL host (none is reachable from the project's build
environment); unit-tested on an EL7-style kernel.spec excerpt.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import posixpath
import re

PATCH_NAME = "toa.patch"
PATCH_NUMBER = 999999
BUILDID = ".toa"
CONFIG_SETTINGS = (("CONFIG_IPV6", "y"), ("CONFIG_TOA", "m"))
RPMBUILD_OPTIONS = ("--with", "baseonly", "--without", "kabichk", "--with", "firmware",
                    "--without", "debuginfo")

_PATCH_TAG_RE = re.compile(r"^Patch(\d+)\s*:\s*(\S+)\s*$")
_APPLY_RE = re.compile(r"^(\s*)(ApplyOptionalPatch|ApplyPatch)\s+([^\s$][^\s]*)")
_SECTION_RE = re.compile(r"^%(prep|build|install|files|description|package|changelog|clean|check|"
                         r"pre|post|preun|postun|posttrans|triggerin|triggerun)\b")
_BUILDID_RE = re.compile(r"^%(?:define|global)\s+buildid\s+(\S+)\s*$")
_BUILDID_TEMPLATE_RE = re.compile(r"^#\s*%\s*define\s+buildid\b")
_SRPM_RE = re.compile(r"^kernel-(\d[^/]*)\.src\.rpm$")
_CONFIG_KEY_RE = re.compile(r"^CONFIG_[A-Za-z0-9_]+$")


class SpecError(Exception):
    """kernel.spec or a config file lacks what the recipe needs; the text says what."""


def _lines(text):
    return text.splitlines(True)


def _ensure_newline(line):
    return line if line.endswith("\n") else line + "\n"


def add_patch_tag(spec, patch=PATCH_NAME, number=PATCH_NUMBER):
    """Declare the patch after the last PatchNNN: line.

    Returns (text, number used).  A spec that declares the patch already is
    returned unchanged with its number.  When the preferred number is taken by
    another file (EL6 specs use Patch999999 for linux-kernel-test.patch), the
    patch gets the highest number in use plus one.
    """
    lines = _lines(spec)
    last = None
    used = {}
    for i, line in enumerate(lines):
        match = _PATCH_TAG_RE.match(line)
        if match:
            last = i
            used[int(match.group(1))] = match.group(2)
    for num, name in used.items():
        if name == patch:
            return spec, num
    if last is None:
        raise SpecError("kernel.spec has no PatchNNN: line; cannot declare Patch%d: %s. "
                        "Is this the kernel package's spec?" % (number, patch))
    if number in used:
        number = max(used) + 1
    lines[last] = _ensure_newline(lines[last])
    lines.insert(last + 1, "Patch%d: %s\n" % (number, patch))
    return "".join(lines), number


def _prep_range(lines):
    start = None
    for i, line in enumerate(lines):
        if start is None:
            if line.startswith("%prep"):
                start = i
        elif _SECTION_RE.match(line):
            return start, i
    if start is None:
        raise SpecError("kernel.spec has no %prep section; cannot apply the patch there")
    return start, len(lines)


def add_apply(spec, patch=PATCH_NAME):
    """Apply the patch in %prep after the last ApplyOptionalPatch/ApplyPatch line."""
    lines = _lines(spec)
    start, end = _prep_range(lines)
    last = None
    indent = ""
    for i in range(start, end):
        match = _APPLY_RE.match(lines[i])
        if match:
            if match.group(3) == patch:
                return spec
            last = i
            indent = match.group(1)
    if last is None:
        raise SpecError("kernel.spec's %%prep has no ApplyOptionalPatch or ApplyPatch line; cannot "
                        "place 'ApplyOptionalPatch %s' (add it by hand after the distribution's "
                        "patches)" % patch)
    lines[last] = _ensure_newline(lines[last])
    lines.insert(last + 1, "%sApplyOptionalPatch %s\n" % (indent, patch))
    return "".join(lines)


def set_buildid(spec, buildid=BUILDID):
    """Mark the package: ``%define buildid <buildid>``.

    An active buildid definition gets the new value; otherwise the line goes
    after the spec's commented template (``# % define buildid .local``) or,
    without one, at the top.
    """
    if not re.match(r"^\.[A-Za-z0-9_.]+$", buildid or ""):
        raise SpecError("buildid %r must start with a dot and hold only letters, digits, _ and ."
                        % (buildid,))
    lines = _lines(spec)
    wanted = "%%define buildid %s\n" % buildid
    for i, line in enumerate(lines):
        match = _BUILDID_RE.match(line)
        if match:
            if match.group(1) == buildid:
                return spec
            lines[i] = wanted
            return "".join(lines)
    for i, line in enumerate(lines):
        if _BUILDID_TEMPLATE_RE.match(line):
            lines[i] = _ensure_newline(line)
            lines.insert(i + 1, wanted)
            return "".join(lines)
    return wanted + spec


def edit_spec(spec, patch=PATCH_NAME, number=PATCH_NUMBER, buildid=BUILDID):
    """All kernel.spec edits of the recipe; buildid None leaves the release alone."""
    text, _num = add_patch_tag(spec, patch, number)
    text = add_apply(text, patch)
    if buildid:
        text = set_buildid(text, buildid)
    return text


def set_config(text, settings=CONFIG_SETTINGS):
    """Set CONFIG_ symbols in a kernel config (full .config or a config-<arch>-generic fragment).

    An existing ``KEY=...`` or ``# KEY is not set`` line is replaced in place;
    missing keys are appended under a ``# toa`` comment.
    """
    lines = _lines(text)
    appended = []
    for key, value in settings:
        if not _CONFIG_KEY_RE.match(key):
            raise SpecError("%r is not a CONFIG_ symbol" % (key,))
        wanted = "%s=%s\n" % (key, value)
        pattern = re.compile(r"^(?:%s=.*|# %s is not set)\s*$" % (key, key))
        found = False
        for i, line in enumerate(lines):
            if pattern.match(line):
                lines[i] = wanted
                found = True
        if not found:
            appended.append(wanted)
    if appended:
        if lines:
            lines[-1] = _ensure_newline(lines[-1])
        if "# toa\n" not in lines:
            appended.insert(0, "# toa\n")
        lines.extend(appended)
    return "".join(lines)


def srpm_version(srpm):
    """'kernel-3.10.0-693.el7.src.rpm' -> '3.10.0-693.el7'."""
    match = _SRPM_RE.match(posixpath.basename(srpm or ""))
    if not match:
        raise SpecError("%r is not a kernel source rpm name (kernel-<version>-<release>.src.rpm)"
                        % (srpm,))
    return match.group(1)


def recipe(srpm, arch="x86_64", topdir="/root/rpmbuild", patch_tool="make_toa_patch.py",
           python="python3"):
    """The whole recipe as steps: dicts with name and argv (commands) or edit.

    Steps run in order; ``cwd`` is where a command runs, ``ok_rc`` the exit
    codes that mean success (diff exits 1 when the trees differ) and
    ``stdout`` the file a command's output goes to.  ``edit`` steps name the
    function of this module to apply to ``path``.
    """
    version = srpm_version(srpm)
    define = ["--define", "_topdir %s" % topdir]
    spec = posixpath.join(topdir, "SPECS", "kernel.spec")
    sources = posixpath.join(topdir, "SOURCES")
    build = posixpath.join(topdir, "BUILD", "kernel-%s" % version)
    tree = "linux-%s.%s" % (version, arch)
    new = tree + "_toa"
    tree_path = posixpath.join(build, tree)
    new_path = posixpath.join(build, new)
    generated = posixpath.join(build, "toa-in-tree.patch")

    def step(name, argv, cwd=None, ok_rc=(0,), stdout=None):
        return {"name": name, "argv": list(argv), "cwd": cwd, "ok_rc": list(ok_rc), "stdout": stdout}

    return [
        step("install the source rpm", ["rpm", "-ivh"] + define + [srpm]),
        step("prepare the source tree (%prep)", ["rpmbuild", "-bp", "--target=%s" % arch] + define + [spec]),
        step("start from a fresh copy of the prepared tree", ["rm", "-rf", new_path]),
        step("copy the prepared tree", ["cp", "-a", tree, new], cwd=build),
        step("generate the TOA patch for this tree",
             [python, patch_tool, "--kernel-tree", new_path, "-o", generated]),
        step("apply the TOA patch in the copy",
             ["patch", "-p1", "--batch", "--forward", "-i", generated], cwd=new_path),
        step("drop the configs rpmbuild -bp left in both trees",
             ["rm", "-f", posixpath.join(tree_path, ".config"), posixpath.join(new_path, ".config")]),
        step("diff the trees into SOURCES/%s" % PATCH_NAME, ["diff", "-uNr", tree, new], cwd=build,
             ok_rc=(0, 1), stdout=posixpath.join(sources, PATCH_NAME)),
        {"name": "CONFIG_IPV6=y, CONFIG_TOA=m", "edit": "set_config",
         "path": posixpath.join(sources, "config-%s-generic" % arch)},
        {"name": "declare and apply %s in kernel.spec, buildid %s" % (PATCH_NAME, BUILDID),
         "edit": "edit_spec", "path": spec},
        step("build the kernel rpm", ["rpmbuild", "-bb"] + list(RPMBUILD_OPTIONS)
             + ["--target=%s" % arch] + define + [spec]),
    ]


def expected_rpm(srpm, arch="x86_64", buildid=BUILDID):
    """File name of the kernel rpm the recipe produces (Release gains the buildid).

    CentOS debranding can add to the release (the vendor's EL7 kernel is
    3.10.0-693.el7.centos.toa): check the name against RPMS/<arch>/ after the build.
    """
    return "kernel-%s%s.%s.rpm" % (srpm_version(srpm), buildid or "", arch)
