#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: toa_dkms
short_description: Register, build and install a kernel module with DKMS, or remove it
description:
  - I(state=present) runs C(dkms add) when the module version is not registered (C(dkms add
    <name>/<version>) for the default I(source), C(dkms add <source>) otherwise), then
    C(dkms build) and C(dkms install) for I(kernel) unless C(dkms status) already says
    C(installed) for it. A second run changes nothing.
  - I(state=absent) runs C(dkms remove <name>/<version> --all) when the version is registered,
    falling back to the older C(-m <name> -v <version> --all) syntax.
  - Understands the C(dkms status) formats of dkms 2.2 (Ubuntu 16.04), 2.8 and 3.x.
  - On a build failure the message carries the last 40 lines of DKMS's C(make.log) and its path.
  - Check mode runs only C(dkms status) and reports the commands that would run.
options:
  name:
    description: DKMS module name (C(PACKAGE_NAME) in dkms.conf).
    type: str
    required: true
  version:
    description: DKMS module version (C(PACKAGE_VERSION) in dkms.conf).
    type: str
    required: true
  source:
    description:
      - Directory on the target holding the module source and its dkms.conf. Defaults to
        C(/usr/src/<name>-<version>), where DKMS expects it.
    type: path
  kernel:
    description: Kernel release to build for; the running kernel when omitted.
    type: str
  state:
    description: Whether the module should be built and installed for I(kernel), or removed.
    type: str
    choices: [present, absent]
    default: present
  rebuild:
    description:
      - With I(state=present), remove every build of this version first (as I(state=absent)
        does) when it is registered, then add, build and install it again. For a source or a
        signing key that changed under the same version, since DKMS would otherwise keep the
        old build. Nothing is removed when the version is not registered.
    type: bool
    default: false
notes:
  - Needs root (C(become=true)) and, for building, the kernel headers of I(kernel)
    (C(/lib/modules/<kernel>/build)).
author:
  - toa-fleet contributors (!UNKNOWN)
'''

EXAMPLES = r'''
- name: Build and install the TOA module for the running kernel
  toa_dkms:
    name: toa
    version: 1.0.0

- name: Build it for a kernel that is installed but not running yet
  toa_dkms:
    name: toa
    version: 1.0.0
    kernel: 6.1.0-20-amd64

- name: Build it again from a source that changed under the same version
  toa_dkms:
    name: toa
    version: 1.0.0
    rebuild: true

- name: Remove every build of that version
  toa_dkms:
    name: toa
    version: 1.0.0
    state: absent
'''

RETURN = r'''
commands:
  description: The dkms commands run (in check mode, that would run) other than C(dkms status).
  returned: always
  type: list
  elements: list
  sample: [["/usr/sbin/dkms", "build", "toa/1.0.0", "-k", "6.1.0-18-amd64"]]
status:
  description: C(dkms status) entries for this module after the task (module, version, kernel, arch, state, notes).
  returned: always
  type: list
  elements: dict
  sample: [{module: toa, version: 1.0.0, kernel: 6.1.0-18-amd64, arch: x86_64, state: installed, notes: ""}]
kernel:
  description: The kernel release the module was built for.
  returned: always
  type: str
state:
  description: The module's DKMS state for I(kernel) after the task (installed, built, added or absent).
  returned: always
  type: str
make_log:
  description: Path of DKMS's make.log, on build failure.
  returned: failure
  type: str
'''

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.toa_host import host_path
from ansible.module_utils.toa_route import parse_dkms_status

LOG_LINES = 40


def running_kernel():
    return os.uname()[2]


def tail(path, count=LOG_LINES):
    try:
        with open(host_path(path), "rb") as handle:
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except (IOError, OSError):
        return None
    return lines[-count:]


class Dkms:
    def __init__(self, module):
        self.module = module
        self.name = module.params["name"]
        self.version = module.params["version"]
        self.kernel = module.params["kernel"] or running_kernel()
        self.check = module.check_mode
        self.commands = []
        self.changed = False
        self.dkms = module.get_bin_path("dkms", opt_dirs=["/usr/sbin", "/sbin"])
        if not self.dkms:
            module.fail_json(msg="dkms was not found on the host: install the dkms package "
                                 "(EPEL on CentOS/RHEL) before building the %s module" % self.name)
        self.ref = "%s/%s" % (self.name, self.version)
        self.entries = []

    def status(self):
        rc, out, err = self.module.run_command([self.dkms, "status"])
        if rc != 0:
            self.module.fail_json(msg="`dkms status` failed (rc %d): %s" % (rc, (err or out).strip()),
                                  commands=self.commands)
        return [entry for entry in parse_dkms_status(out)
                if entry["module"] == self.name and entry["version"] == self.version]

    def kernel_state(self, entries):
        """installed > built > added > absent, for this kernel."""
        states = [entry["state"] for entry in entries
                  if entry["kernel"] in (None, self.kernel)]
        for wanted in ("installed", "built", "added"):
            if any(state == wanted or state.startswith(wanted + "-") for state in states):
                return wanted
        if entries:
            return "added"
        return "added" if self.registered() else "absent"

    def run(self, argv):
        self.commands.append(argv)
        self.changed = True
        if self.check:
            return 0, "", ""
        return self.module.run_command(argv)

    def must(self, argv, what):
        rc, out, err = self.run(argv)
        if rc != 0:
            self.fail(argv, what, rc, out, err)

    def fail(self, argv, what, rc, out, err):
        output = (err or out or "").strip().splitlines()[-LOG_LINES:]
        msg = "`%s` failed (rc %d) while trying to %s %s %s for kernel %s." % (
            " ".join(argv), rc, what, self.name, self.version, self.kernel)
        extra = {"rc": rc, "stdout": out, "stderr": err, "commands": self.commands}
        if what == "build":
            log = "/var/lib/dkms/%s/%s/build/make.log" % (self.name, self.version)
            lines = tail(log)
            extra["make_log"] = log
            if lines is not None:
                extra["make_log_tail"] = lines
                msg += " Last lines of %s:\n%s" % (log, "\n".join(lines))
            elif output:
                msg += " %s has no log; dkms said:\n%s" % (log, "\n".join(output))
            if not os.path.isdir(host_path("/lib/modules/%s/build" % self.kernel)):
                msg += ("\nThe headers of kernel %s are missing (/lib/modules/%s/build): install "
                        "linux-headers-%s (Debian/Ubuntu) or kernel-devel-%s (RedHat family)."
                        % (self.kernel, self.kernel, self.kernel, self.kernel))
        elif output:
            msg += " dkms said:\n%s" % "\n".join(output)
        self.module.fail_json(msg=msg, **extra)

    def registered(self):
        """Whether the DKMS tree holds this version (what `dkms status` lists)."""
        return os.path.isdir(host_path("/var/lib/dkms/%s/%s" % (self.name, self.version)))

    def present(self):
        if self.module.params["rebuild"] and self.registered():
            self.absent()
        if self.registered() and not (self.check and self.changed):
            entries = self.entries = self.status()
            state = self.kernel_state(entries)
        else:
            # Nothing registered (or, in check mode, just "removed"): no
            # `dkms status` run, a slow shell script on a small host.
            self.entries = []
            state = "absent"
        if state == "absent":
            source = self.module.params["source"] or "/usr/src/%s-%s" % (self.name, self.version)
            if not os.path.isfile(host_path(os.path.join(source, "dkms.conf"))):
                if self.check:
                    self.module.warn("%s/dkms.conf does not exist yet; assuming an earlier task "
                                     "puts the source there" % source)
                else:
                    self.module.fail_json(
                        msg="%s has no dkms.conf: copy the %s %s module source there first "
                            "(the toa role copies it to /usr/src/%s-%s), or set source."
                            % (source, self.name, self.version, self.name, self.version),
                        commands=self.commands)
            if source.rstrip("/") == "/usr/src/%s-%s" % (self.name, self.version):
                # Source already where DKMS looks: the module/version form works on
                # dkms 2.2 to 3.x without copying the tree onto itself.
                self.must([self.dkms, "add", self.ref], "add")
            else:
                # A path form: dkms copies the tree to /usr/src/<name>-<version>.
                self.must([self.dkms, "add", source], "add")
            state = "added"
        if state == "added":
            self.must([self.dkms, "build", self.ref, "-k", self.kernel], "build")
            state = "built"
        if state == "built":
            self.must([self.dkms, "install", self.ref, "-k", self.kernel], "install")
            state = "installed"
        return state

    def absent(self):
        # `dkms status` lists what the DKMS tree holds: no directory there, nothing
        # to remove, and no dkms run (a slow shell script on a small host).
        if not self.registered():
            return "absent"
        argv = [self.dkms, "remove", self.ref, "--all"]
        rc, out, err = self.run(argv)
        if rc != 0:
            # dkms before 2.2 only knows the -m/-v form.
            old = [self.dkms, "remove", "-m", self.name, "-v", self.version, "--all"]
            rc2, out2, err2 = self.run(old)
            if rc2 != 0:
                self.fail(old, "remove", rc2, out2, (err2 or out2) + "\n" + (err or out))
        return "absent"


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            version=dict(type="str", required=True),
            source=dict(type="path"),
            kernel=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            rebuild=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    for key in ("name", "version"):
        if not re.match(r"^[A-Za-z0-9_.+~-]+$", module.params[key]):
            module.fail_json(msg="%s %r may only contain letters, digits and . _ + ~ -, as "
                                 "in dkms.conf" % (key, module.params[key]))
    kernel = module.params["kernel"]
    if kernel is not None and not re.match(r"^[A-Za-z0-9_.+~-]+$", kernel):
        module.fail_json(msg="kernel %r is not a kernel release (as `uname -r` prints it)"
                             % kernel)
    dkms = Dkms(module)
    if module.params["state"] == "present":
        state = dkms.present()
    else:
        state = dkms.absent()
    if dkms.changed:
        status = dkms.status()
    else:
        # Nothing ran: what `dkms status` said at the start still holds
        # (one dkms run less on every rerun; dkms is a slow shell script).
        status = dkms.entries if module.params["state"] == "present" else []
    if not dkms.check:
        if module.params["state"] == "present":
            state = dkms.kernel_state(status)
            if state != "installed":
                module.fail_json(msg="dkms reports %s as %s for kernel %s after `dkms install`; "
                                     "see `dkms status` and /var/lib/dkms/%s/%s"
                                     % (dkms.ref, state, dkms.kernel, dkms.name, dkms.version),
                                 commands=dkms.commands, status=status)
        elif status:
            state = status[0]["state"]
    if dkms.changed:
        msg = "%s %s %s for kernel %s" % ("would run" if dkms.check else "ran",
                                          ", ".join(argv[1] for argv in dkms.commands),
                                          dkms.ref, dkms.kernel)
    else:
        msg = "%s is already %s for kernel %s" % (dkms.ref, state, dkms.kernel)
    module.exit_json(changed=dkms.changed, commands=dkms.commands, status=status,
                     kernel=dkms.kernel, state=state, msg=msg)


if __name__ == "__main__":
    main()
