#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: toa_boot
short_description: Choose the kernel a host boots next (once, or as the default); name the TOA kernel packages
description:
  - Lists the kernels in C(/boot) (C(vmlinuz-<release>)) and picks I(release), or else the newest
    kernel that is not a TOA build (a release with a C(toa) component, such as C(4.4.87.toa)).
  - I(mode=once) boots I(release) at the next boot only and keeps the kernel that runs now as the
    default, so a kernel that does not come up healthy is left behind by a power cycle.
    I(mode=default) makes I(release) the default boot entry (after the new kernel was verified, or
    to return to a distribution kernel before removing a TOA kernel).
  - GRUB 2 on Debian and Ubuntu (C(/boot/grub/grub.cfg), C(grub-reboot), C(grub-set-default)).
    The default must be GRUB's saved entry, so when C(GRUB_DEFAULT) (from C(/etc/default/grub) and
    C(/etc/default/grub.d/*.cfg)) is not C(saved) the module writes
    C(/etc/default/grub.d/99-toa-fleet.cfg) with C(GRUB_DEFAULT=saved) and regenerates
    C(grub.cfg). Entries inside the "Advanced options" submenu are addressed as
    C(<submenu id>><entry id>).
  - On the RHEL family (C(grubby)), I(mode=default) runs C(grubby --set-default); I(mode=once) sets the
    running kernel as the default (installing a kernel rpm makes the new kernel the default) and
    runs C(grub2-reboot) with the new kernel's entry. GRUB legacy (CentOS 6) has no one-time boot
    here, so the kernel becomes the default at once and the result says so (I(once=false)).
  - Nothing is run when the bootloader already says what is asked. Check mode reports the commands
    that would run. Reboots nothing itself.
  - Also returns the packages that own the TOA kernels that are not running (C(dpkg-query -S) or
    C(rpm -qf) on their C(/boot/vmlinuz-<release>) and headers directory), for removal.
options:
  release:
    description: Kernel release to boot; empty for the newest installed non-TOA kernel.
    type: str
    default: ""
  mode:
    description: C(once) (next boot only, the running kernel stays the default) or C(default).
    type: str
    choices: [once, default]
    default: default
  boot:
    description: Set the boot entry (true), or only report kernels and packages (false).
    type: bool
    default: true
notes:
  - Needs root (C(become=true)).
  - Fails, saying what to install, when no non-TOA kernel is installed.
author:
  - toa-fleet contributors (!UNKNOWN)
"""

EXAMPLES = r"""
- name: Boot the TOA kernel once; the running kernel stays the default
  toa_boot:
    release: 6.1.192-toa
    mode: once
  register: boot

- name: Reboot into it
  ansible.builtin.reboot:
    test_command: '[ "$(uname -r)" = {{ boot.release | quote }} ]'

- name: After verification, make it the default
  toa_boot:
    release: 6.1.192-toa
"""

RETURN = r"""
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
  description: C(grubby) or C(grub).
  returned: when I(boot=true)
  type: str
entry:
  description: The GRUB menu entry (or, with grubby, the kernel path) of I(release).
  returned: when I(boot=true)
  type: str
  sample: gnulinux-advanced-1c2e>gnulinux-4.4.0-210-generic-advanced-1c2e
once:
  description: True when I(release) boots once and I(default_release) stays the default.
  returned: when I(boot=true)
  type: bool
default_release:
  description: The kernel the host boots after the next boot (or a power cycle during it).
  returned: when I(boot=true)
  type: str
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
"""

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
    # GRUB's ids are "gnulinux-<release>-advanced-<uuid>" and titles end in the release;
    # "6.1.192-toa" must not pick the entry of "6.1.192-toa-broken".
    pattern = re.compile(r"(^|-)%s(-advanced-|-simple-|$)" % re.escape(release))
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
            if pattern.search(ident) or title.endswith(" " + release) or title.endswith("(%s)" % release):
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


GRUB_DROPIN = "/etc/default/grub.d/99-toa-fleet.cfg"
GRUB_DROPIN_TEXT = ("# Written by the toa role (toa_boot): a new kernel boots once (grub-reboot) and\n"
                    "# becomes the default (grub-set-default) only after it was verified.\n"
                    "GRUB_DEFAULT=saved\n")

_GRUB_DEFAULT_RE = re.compile(r"^\s*(?:export\s+)?GRUB_DEFAULT=([\"']?)(.*?)\1\s*(?:#.*)?$")


def grub_default_setting(texts):
    """The effective GRUB_DEFAULT of shell snippets sourced in order (the last one wins)."""
    value = None
    for text in texts:
        for line in (text or "").splitlines():
            match = _GRUB_DEFAULT_RE.match(line)
            if match:
                value = match.group(2)
    return value


def grub_default_files():
    """/etc/default/grub, then /etc/default/grub.d/*.cfg in the order grub-mkconfig sources them."""
    paths = ["/etc/default/grub"]
    try:
        names = sorted(os.listdir(host_path("/etc/default/grub.d")))
    except OSError:
        names = []
    paths += ["/etc/default/grub.d/" + name for name in names if name.endswith(".cfg")]
    return paths


def parse_env(text):
    """grub-editenv list output -> dict."""
    env = {}
    for line in (text or "").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def parse_grubby_info(text):
    """grubby --info output -> dict of its first entry (index, kernel, title, id ...)."""
    info = {}
    for line in (text or "").splitlines():
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if key == "index" and "index" in info:
            break  # a second entry starts
        info[key] = value.strip().strip('"')
    return info


class Boot:
    def __init__(self, module):
        self.module = module
        self.check = module.check_mode
        self.commands = []
        self.changed = False

    def fail(self, msg):
        self.module.fail_json(msg=msg, commands=self.commands)

    def tool(self, *names):
        for name in names:
            path = self.module.get_bin_path(name, opt_dirs=["/usr/sbin", "/sbin", "/usr/bin"])
            if path:
                return path
        return None

    def run(self, argv, change=False):
        """Run a read-only query, or a change (recorded, and skipped in check mode)."""
        if change:
            self.commands.append(argv)
            self.changed = True
            if self.check:
                return 0, "", ""
        rc, out, err = self.module.run_command(argv)
        if change and rc != 0:
            self.fail("%s failed (rc %d): %s" % (" ".join(argv), rc, (err or out).strip()))
        return rc, out, err

    def editenv(self):
        tool = self.tool("grub-editenv", "grub2-editenv")
        if not tool:
            return None, {}
        rc, out, _err = self.run([tool, "list"])
        return tool, (parse_env(out) if rc == 0 else {})

    # -- RHEL family: grubby (+ grub2-reboot for a one-time boot) -----------------------------
    def with_grubby(self, grubby, release, mode, running):
        path = "/boot/vmlinuz-%s" % release
        rc, out, _err = self.run([grubby, "--default-kernel"])
        default = out.strip() if rc == 0 else ""
        reboot_tool = self.tool("grub2-reboot", "grub-reboot")
        if mode == "default" or release == running or not reboot_tool:
            if default != path:
                self.run([grubby, "--set-default", path], change=True)
            once = False
            default_release = release
        else:
            keep = "/boot/vmlinuz-%s" % running
            if default != keep:
                self.run([grubby, "--set-default", keep], change=True)
            rc, out, _err = self.run([grubby, "--info", path])
            info = parse_grubby_info(out) if rc == 0 else {}
            target = info.get("id") or info.get("index")
            if not target:
                self.fail("grubby --info %s names no boot entry: is kernel %s installed with its "
                          "boot entry? Reinstall its package and run again" % (path, release))
            _tool, env = self.editenv()
            if env.get("next_entry") != target:
                self.run([reboot_tool, target], change=True)
            once = True
            default_release = running
        return dict(bootloader="grubby", entry=path, once=once, default_release=default_release)

    # -- Debian and Ubuntu: GRUB 2 with a saved default -------------------------------------
    def grub_cfg(self):
        for candidate in GRUB_CFGS:
            text = read_text(candidate)
            if text is not None:
                return candidate, text
        self.fail("neither grubby nor %s was found: this role drives GRUB 2 and grubby only; set the "
                  "boot default yourself, reboot, and run again" % " nor ".join(GRUB_CFGS))
        return None, None

    def grub_saved_default(self, cfg_path):
        """Make GRUB_DEFAULT=saved effective (a drop-in file + a regenerated grub.cfg)."""
        texts = [read_text(path, "") for path in grub_default_files()]
        if grub_default_setting(texts) == "saved":
            return False
        self.commands.append(["write", GRUB_DROPIN, "GRUB_DEFAULT=saved"])
        self.changed = True
        if not self.check:
            directory = host_path(os.path.dirname(GRUB_DROPIN))
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o755)
            with open(host_path(GRUB_DROPIN), "w") as handle:
                handle.write(GRUB_DROPIN_TEXT)
        mkconfig = self.tool("update-grub", "update-grub2")
        if mkconfig:
            self.run([mkconfig], change=True)
        else:
            mkconfig = self.tool("grub-mkconfig", "grub2-mkconfig")
            if not mkconfig:
                self.fail("neither update-grub nor grub-mkconfig was found: cannot regenerate %s"
                          % cfg_path)
            self.run([mkconfig, "-o", cfg_path], change=True)
        return True

    def grub_entry_of(self, cfg_path, text, release):
        entry = grub_entry(text, release)
        if entry is None:
            self.fail("%s has no menu entry for kernel %s: run update-grub (or grub-mkconfig -o %s) "
                      "and try again" % (cfg_path, release, cfg_path))
        return entry

    def with_grub(self, release, mode, running):
        cfg_path, text = self.grub_cfg()
        entry = self.grub_entry_of(cfg_path, text, release)
        set_default = self.tool("grub-set-default", "grub2-set-default")
        reboot_tool = self.tool("grub-reboot", "grub2-reboot")
        if not set_default or not reboot_tool:
            self.fail("grub-set-default or grub-reboot was not found: install GRUB's tools "
                      "(grub2-common)")
        if self.grub_saved_default(cfg_path) and not self.check:
            cfg_path, text = self.grub_cfg()
            entry = self.grub_entry_of(cfg_path, text, release)
        editenv, env = self.editenv()
        if mode == "default" or release == running:
            if env.get("saved_entry") != entry:
                self.run([set_default, entry], change=True)
            if env.get("next_entry") and env.get("next_entry") != entry and editenv:
                self.run([editenv, "-", "unset", "next_entry"], change=True)
            return dict(bootloader="grub", entry=entry, once=False, default_release=release)
        keep = grub_entry(text, running)
        if keep is None:
            self.fail("%s has no menu entry for the running kernel %s, so it cannot stay the default "
                      "while %s boots once: run update-grub and try again" % (cfg_path, running, release))
        if env.get("saved_entry") != keep:
            self.run([set_default, keep], change=True)
        if env.get("next_entry") != entry:
            self.run([reboot_tool, entry], change=True)
        return dict(bootloader="grub", entry=entry, once=True, default_release=running)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            release=dict(type="str", default=""),
            mode=dict(type="str", default="default", choices=["once", "default"]),
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
    mode = module.params["mode"]
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
        plan = boot.with_grubby(grubby, release, mode, running)
    else:
        plan = boot.with_grub(release, mode, running)
    verb = "would make" if module.check_mode else "made"
    if plan["once"]:
        what = "boot kernel %s once (the default stays %s)" % (release, plan["default_release"])
    else:
        what = "boot kernel %s by default" % release
    if mode == "once" and not plan["once"] and release != running:
        what += "; this bootloader has no one-time boot here, so %s is the default at once" % release
    msg = ("%s %s %s" % (verb, plan["bootloader"], what)) if boot.changed else \
        "%s already set to %s" % (plan["bootloader"], what)
    result.update(plan)
    result.update(changed=boot.changed, release=release, commands=boot.commands, msg=msg)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
