#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: toa_boot
short_description: Make the host boot a distribution kernel instead of a TOA kernel
description:
  - Lists the kernels in C(/boot) (C(vmlinuz-<release>)), picks I(release) or else the newest
    kernel that is not a TOA build (a release with a C(toa) component, such as C(4.4.87.toa)),
    and makes the bootloader start it.
  - With C(grubby) (the RHEL family) it runs C(grubby --set-default /boot/vmlinuz-<release>)
    unless that is the default already.
  - Otherwise (Debian, Ubuntu) it finds the kernel's menu entry in C(/boot/grub/grub.cfg)
    (inside the "Advanced options" submenu, as C(<submenu id>><entry id>)) and runs
    C(grub-reboot) with it, so the next boot starts that kernel once. GRUB's stock
    configuration honours this without C(GRUB_DEFAULT=saved); once the TOA kernel package
    is removed, GRUB's first entry is a distribution kernel again. Nothing is run when
    C(grub-editenv list) already shows that C(next_entry).
  - Check mode reports the command that would run. Reboots nothing itself.
options:
  release:
    description: Kernel release to boot; empty for the newest installed non-TOA kernel.
    type: str
    default: ""
notes:
  - Needs root (C(become=true)).
  - Fails, saying what to install, when no non-TOA kernel is installed.
author:
  - toa-fleet contributors
'''

EXAMPLES = r'''
- name: Boot the newest distribution kernel next time
  toa_boot:
  register: boot

- name: Reboot into it
  ansible.builtin.reboot:
    test_command: '[ "$(uname -r)" = {{ boot.release | quote }} ]'
'''

RETURN = r'''
release:
  description: The kernel release the host will boot.
  returned: success
  type: str
  sample: 4.4.0-210-generic
kernels:
  description: Kernel releases found in /boot, newest first.
  returned: always
  type: list
  elements: str
  sample: [4.4.87.toa, 4.4.0-210-generic]
toa_kernels:
  description: The TOA builds among I(kernels).
  returned: always
  type: list
  elements: str
bootloader:
  description: C(grubby) or C(grub) (grub-reboot).
  returned: success
  type: str
entry:
  description: The GRUB menu entry passed to grub-reboot, or the kernel path passed to grubby.
  returned: success
  type: str
  sample: gnulinux-advanced-1c2e>gnulinux-4.4.0-210-generic-advanced-1c2e
commands:
  description: Commands run (in check mode, that would run), as argument lists.
  returned: always
  type: list
  elements: list
'''

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.toa_route import is_toa_kernel

# Prefix for every absolute path read; unit tests point it at a tmp tree.
ROOT = "/"
GRUB_CFGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")


def host_path(path):
    return os.path.join(ROOT, path.lstrip("/"))


def read_text(path):
    try:
        with open(host_path(path), "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return None


def release_key(release):
    """Sort key that orders kernel releases as versions: 4.19.0-9 < 4.19.0-10 < 5.10.0-1."""
    key = []
    for part in re.findall(r"\d+|[A-Za-z]+", release):
        key.append((1, int(part), "") if part.isdigit() else (0, 0, part))
    return key


def installed_kernels():
    """Releases with a /boot/vmlinuz-<release>, newest first."""
    try:
        names = os.listdir(host_path("/boot"))
    except OSError:
        return []
    releases = [name[len("vmlinuz-"):] for name in names
                if name.startswith("vmlinuz-") and not name.endswith((".old", ".bak", ".rpmsave"))]
    return sorted(set(releases), key=release_key, reverse=True)


_ENTRY_RE = re.compile(r"^\s*(menuentry|submenu)\s+(['\"])(.*?)\2.*?"
                       r"(?:\$menuentry_id_option|--id)\s+['\"]?([^'\"\s]+)['\"]?.*\{\s*$")


def grub_entry(text, release):
    """The grub-reboot argument that boots `release` from a grub.cfg, or None.

    A normal (not recovery) entry whose id or title names the release; inside a
    submenu it is addressed as "<submenu id>><entry id>".
    """
    stack = []  # ids of the submenus we are in
    depth = 0
    submenu_depths = []
    pattern = re.compile(r"(^|[-\s])%s($|[-\s])" % re.escape(release))
    for line in (text or "").splitlines():
        stripped = line.strip()
        match = _ENTRY_RE.match(line)
        if match:
            kind, _quote, title, ident = match.groups()
            depth += 1
            if kind == "submenu":
                stack.append(ident)
                submenu_depths.append(depth)
                continue
            if "recovery" in ident or "recovery" in title.lower():
                continue
            if pattern.search(ident) or title.endswith(" " + release):
                return ">".join(stack + [ident])
            continue
        if stripped.endswith("{"):
            depth += 1
        elif stripped == "}":
            if submenu_depths and submenu_depths[-1] == depth:
                submenu_depths.pop()
                stack.pop()
            depth -= 1
    return None


class Boot:
    def __init__(self, module):
        self.module = module
        self.check = module.check_mode
        self.commands = []
        self.changed = False

    def run(self, argv, change=False):
        """Run a read-only query, or a change (recorded, and skipped in check mode)."""
        if change:
            self.commands.append(argv)
            self.changed = True
            if self.check:
                return 0, "", ""
        rc, out, err = self.module.run_command(argv)
        if change and rc != 0:
            self.module.fail_json(msg="%s failed (rc %d): %s" % (" ".join(argv), rc, (err or out).strip()),
                                  commands=self.commands)
        return rc, out, err

    def with_grubby(self, grubby, release):
        path = "/boot/vmlinuz-%s" % release
        rc, out, _err = self.run([grubby, "--default-kernel"])
        if rc != 0 or out.strip() != path:
            self.run([grubby, "--set-default", path], change=True)
        return "grubby", path

    def with_grub(self, release):
        cfg_path = None
        text = None
        for candidate in GRUB_CFGS:
            text = read_text(candidate)
            if text is not None:
                cfg_path = candidate
                break
        if text is None:
            self.module.fail_json(msg="neither grubby nor %s was found: cannot make the host boot "
                                      "kernel %s; set it as the boot default yourself, reboot, and run "
                                      "again" % (" nor ".join(GRUB_CFGS), release), commands=self.commands)
        entry = grub_entry(text, release)
        if entry is None:
            self.module.fail_json(msg="%s has no menu entry for kernel %s: run update-grub (or "
                                      "grub-mkconfig -o %s) and try again" % (cfg_path, release, cfg_path),
                                  commands=self.commands)
        tool = None
        for name in ("grub-reboot", "grub2-reboot"):
            tool = self.module.get_bin_path(name, opt_dirs=["/usr/sbin", "/sbin"])
            if tool:
                break
        if not tool:
            self.module.fail_json(msg="grub-reboot was not found: install GRUB's tools (grub2-common)",
                                  commands=self.commands)
        editenv = self.module.get_bin_path("grub-editenv", opt_dirs=["/usr/bin", "/usr/sbin"]) or \
            self.module.get_bin_path("grub2-editenv", opt_dirs=["/usr/bin", "/usr/sbin"])
        current = None
        if editenv:
            rc, out, _err = self.run([editenv, "list"])
            if rc == 0:
                for line in out.splitlines():
                    if line.startswith("next_entry="):
                        current = line[len("next_entry="):].strip()
        if current != entry:
            self.run([tool, entry], change=True)
        return "grub", entry


def main():
    module = AnsibleModule(
        argument_spec=dict(release=dict(type="str", default="")),
        supports_check_mode=True,
    )
    kernels = installed_kernels()
    toa_kernels = [release for release in kernels if is_toa_kernel(release)]
    boot = Boot(module)
    release = module.params["release"]
    if release:
        if release not in kernels:
            module.fail_json(msg="kernel %s is not installed (no /boot/vmlinuz-%s); installed: %s"
                                 % (release, release, ", ".join(kernels) or "none"),
                             kernels=kernels, toa_kernels=toa_kernels, commands=[])
    else:
        others = [candidate for candidate in kernels if not is_toa_kernel(candidate)]
        if not others:
            module.fail_json(msg="no distribution kernel is installed next to the TOA kernel(s) %s: install "
                                 "one (apt-get install linux-image-amd64 / linux-image-generic, or yum "
                                 "install kernel), then run again" % ", ".join(toa_kernels or ["?"]),
                             kernels=kernels, toa_kernels=toa_kernels, commands=[])
        release = others[0]
    grubby = module.get_bin_path("grubby", opt_dirs=["/usr/sbin", "/sbin"])
    if grubby:
        bootloader, entry = boot.with_grubby(grubby, release)
    else:
        bootloader, entry = boot.with_grub(release)
    verb = "would make" if module.check_mode else "made"
    msg = ("%s %s boot kernel %s" % (verb, bootloader, release)) if boot.changed else \
        "%s already boots kernel %s" % (bootloader, release)
    module.exit_json(changed=boot.changed, release=release, kernels=kernels, toa_kernels=toa_kernels,
                     bootloader=bootloader, entry=entry, commands=boot.commands, msg=msg)


if __name__ == "__main__":
    main()
