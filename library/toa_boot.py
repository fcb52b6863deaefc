#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: toa_boot
short_description: Boot a distribution kernel instead of a TOA kernel; name the TOA kernel packages
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
  - Also returns the packages that own the TOA kernels that are not running (C(dpkg-query -S) or
    C(rpm -qf) on their C(/boot/vmlinuz-<release>) and headers directory), for removal.
options:
  release:
    description: Kernel release to boot; empty for the newest installed non-TOA kernel.
    type: str
    default: ""
  boot:
    description: Set the boot entry (true), or only report kernels and packages (false).
    type: bool
    default: true
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
  returned: when I(boot=true)
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
  returned: when I(boot=true)
  type: str
entry:
  description: The GRUB menu entry passed to grub-reboot, or the kernel path passed to grubby.
  returned: when I(boot=true)
  type: str
  sample: gnulinux-advanced-1c2e>gnulinux-4.4.0-210-generic-advanced-1c2e
packages:
  description: Packages owning the TOA kernels that are not running (none for the running one).
  returned: always
  type: list
  elements: str
  sample: [linux-image-4.4.87.toa, linux-headers-4.4.87.toa]
commands:
  description: Commands run (in check mode, that would run), as argument lists.
  returned: always
  type: list
  elements: list
'''

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.toa_host import host_path, read_text
from ansible.module_utils.toa_route import is_toa_kernel

GRUB_CFGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")


def running_kernel():
    return os.uname()[2]


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


_DPKG_OWNER_RE = re.compile(r"^([a-z0-9][a-z0-9+.:-]*(?:, [a-z0-9][a-z0-9+.:-]*)*): /")


def parse_dpkg_owners(text):
    """Package names from `dpkg-query -S` output ("pkg[, pkg]: /path"; diversions skipped)."""
    names = []
    for line in (text or "").splitlines():
        match = _DPKG_OWNER_RE.match(line)
        if match:
            for name in match.group(1).split(", "):
                name = name.split(":")[0]  # drop a multi-arch qualifier
                if name not in names:
                    names.append(name)
    return names


def parse_rpm_owners(text):
    """Package NVRAs from `rpm -qf` output (lines about unowned or missing files skipped)."""
    names = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line and " " not in line and line not in names:
            names.append(line)
    return names


def kernel_packages(module, releases):
    """Packages that own the given kernel releases' files, by dpkg or rpm."""
    if not releases:
        return []
    # (tool, its "who owns this file" flag, where the headers live, output parser)
    for tool, flag, headers, parse in (("dpkg-query", "-S", "/usr/src/linux-headers-%s", parse_dpkg_owners),
                                       ("rpm", "-qf", "/usr/src/kernels/%s", parse_rpm_owners)):
        path = module.get_bin_path(tool)
        if path:
            paths = []
            for release in releases:
                paths += ["/boot/vmlinuz-%s" % release, headers % release]
            _rc, out, _err = module.run_command([path, flag] + paths)
            return parse(out)
    module.fail_json(msg="neither dpkg-query nor rpm was found: cannot tell which packages own "
                         "the TOA kernels %s" % ", ".join(releases))


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
        argument_spec=dict(
            release=dict(type="str", default=""),
            boot=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    kernels = installed_kernels()
    toa_kernels = [release for release in kernels if is_toa_kernel(release)]
    running = running_kernel()
    packages = kernel_packages(module, [release for release in toa_kernels if release != running])
    result = dict(changed=False, kernels=kernels, toa_kernels=toa_kernels, packages=packages,
                  commands=[])
    if not module.params["boot"]:
        module.exit_json(msg="TOA kernels: %s" % (", ".join(toa_kernels) or "none"), **result)
    boot = Boot(module)
    release = module.params["release"]
    if release:
        if release not in kernels:
            module.fail_json(msg="kernel %s is not installed (no /boot/vmlinuz-%s); installed: %s"
                                 % (release, release, ", ".join(kernels) or "none"), **result)
    else:
        others = [candidate for candidate in kernels if not is_toa_kernel(candidate)]
        if not others:
            module.fail_json(msg="no distribution kernel is installed next to the TOA kernel(s) %s: install "
                                 "one (apt-get install linux-image-amd64 / linux-image-generic, or yum "
                                 "install kernel), then run again" % ", ".join(toa_kernels or ["?"]),
                             **result)
        release = others[0]
    grubby = module.get_bin_path("grubby", opt_dirs=["/usr/sbin", "/sbin"])
    if grubby:
        bootloader, entry = boot.with_grubby(grubby, release)
    else:
        bootloader, entry = boot.with_grub(release)
    verb = "would make" if module.check_mode else "made"
    msg = ("%s %s boot kernel %s" % (verb, bootloader, release)) if boot.changed else \
        "%s already boots kernel %s" % (bootloader, release)
    result.update(changed=boot.changed, release=release, bootloader=bootloader, entry=entry,
                  commands=boot.commands, msg=msg)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
