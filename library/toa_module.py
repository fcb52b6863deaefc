#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: toa_module
short_description: Load or unload the TOA kernel module and make it load at boot
description:
  - Loads the module with C(modprobe <name> k=v ...) or unloads it with C(modprobe -r).
  - When the module is already loaded with other parameter values, writes the values that are
    writable at runtime to C(/sys/module/<name>/parameters/<p>); for the others it fails
    unless I(reload=true), which unloads and loads the module again.
  - >-
    Persists loading at boot by the init system's own mechanism (I(autoload_method)) and the
    parameters in C(/etc/modprobe.d/<name>.conf). Files it owns start with a comment line
    that says they are managed by toa-fleet and must not be edited; in rc.local it owns exactly one plain
    C(modprobe <name>) line. I(autoload=disabled) removes exactly those and nothing else.
  - Files are written atomically; check mode changes nothing and reports what would change;
    diff mode shows every file's before and after.
options:
  name:
    description: Name of the kernel module.
    type: str
    default: toa
  state:
    description: Whether the module should be loaded now.
    type: str
    choices: [loaded, unloaded]
    default: loaded
  params:
    description:
      - >-
        Module parameters, for example C({ipv4_kinds: "200", ipv6_kinds: "253,254",
        trusted_cidrs: ""}). Values may not contain spaces or quotes (use commas in lists);
        booleans become C(1)/C(0) and lists are joined with commas.
      - Compared with the loaded module's values in the form the kernel reads them back, so
        equivalent spellings are no change (C(254,200) is C(200,254); C(10.1.2.3/8) is
        C(10.0.0.0/8); C(2001:DB8::/32) is C(2001:db8::/32); a bare address is a /32 or /128;
        C(true) is C(Y)). Unknown parameters compare as stripped text.
      - Option kinds the kernel's TCP uses (0-5, 8, 19, 29, 30, 34) and an empty
        C(ipv4_kinds) are refused.
      - Also written to C(/etc/modprobe.d/<name>.conf) when I(autoload=enabled).
    type: dict
    default: {}
  reload:
    description:
      - Allow C(modprobe -r) and a new C(modprobe) when the loaded module has parameter values
        that differ from I(params) and cannot be changed at runtime, or when the loaded code
        is outdated (its srcversion, C(/sys/module/<name>/srcversion), differs from that of
        the file modprobe would load, C(modinfo -F srcversion <name>), as after a rebuild or
        upgrade). Connections accepted before the reload lose their TOA address.
      - Without it an outdated module stays loaded, with a warning and C(reload_pending=true);
        parameters the loaded module does not have yet are left to the reload or next boot.
    type: bool
    default: false
  autoload:
    description:
      - C(enabled) makes the module load at every boot, C(disabled) removes what this module
        wrote for that, C(unchanged) leaves boot configuration alone.
    type: str
    choices: [enabled, disabled, unchanged]
    default: unchanged
  autoload_method:
    description:
      - C(modules-load) writes C(/etc/modules-load.d/<name>.conf) (systemd).
      - C(sysconfig) writes the executable C(/etc/sysconfig/modules/<name>.modules) (EL6).
      - C(rc-local) keeps one C(modprobe <name>) line in rc.local, before a final C(exit 0),
        creating an executable C(#!/bin/sh -e) file when there is none.
      - C(auto) picks C(modules-load) when PID 1 is systemd, C(sysconfig) on RedHat-family
        hosts without systemd (EL6), else C(rc-local).
      - Enabling one method removes what this module wrote for the others.
    type: str
    choices: [auto, modules-load, sysconfig, rc-local]
    default: auto
  rc_local_path:
    description:
      - The rc.local file. C(auto) is C(/etc/rc.d/rc.local) when it exists or on RedHat-family
        hosts, else C(/etc/rc.local). Symbolic links are followed.
    type: str
    default: auto
notes:
  - Needs root (C(become=true)).
  - When loading fails, the message carries modprobe's error and the kernel's last log lines
    that mention the module (from C(dmesg), best effort).
author:
  - toa-fleet contributors (!UNKNOWN)
'''

EXAMPLES = r'''
- name: Load TOA now and at every boot with the vendor's option kind
  toa_module:
    name: toa
    params:
      ipv4_kinds: "200"
      ipv6_kinds: "253,254"
    autoload: enabled

- name: Load TOA at boot from rc.local, as the vendor guide does (without its quote bug)
  toa_module:
    autoload: enabled
    autoload_method: rc-local

- name: Unload TOA and remove its boot configuration
  toa_module:
    state: unloaded
    autoload: disabled
'''

RETURN = r'''
loaded:
  description: Whether the module is loaded after the task (in check mode, would be).
  returned: always
  type: bool
params:
  description: Effective parameter values (read from /sys after the change; in check mode the values that would result).
  returned: always
  type: dict
  sample: {ipv4_kinds: "200", ipv6_kinds: "253,254", trusted_cidrs: ""}
commands:
  description: The modprobe commands run (in check mode, that would run), as argument lists.
  returned: always
  type: list
  elements: list
  sample: [["/usr/sbin/modprobe", "toa", "ipv4_kinds=200"]]
sysfs_writes:
  description: Runtime parameter changes, each C({path, before, after}).
  returned: always
  type: list
  elements: dict
autoload_method:
  description: The boot method used (resolved from C(auto)); null when I(autoload=unchanged).
  returned: always
  type: str
  sample: modules-load
files_written:
  description: Files created or changed (in check mode, that would be).
  returned: always
  type: list
  elements: str
  sample: [/etc/modules-load.d/toa.conf, /etc/modprobe.d/toa.conf]
files_removed:
  description: Files removed (in check mode, that would be).
  returned: always
  type: list
  elements: str
reload_pending:
  description:
    - True when the loaded module's code is not the installed build (srcversions differ) and
      I(reload) was false, so the new build runs only after a reload or reboot.
  returned: always
  type: bool
msg:
  description: What was done, in one line.
  returned: always
  type: str
'''

import os
import re
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils import toa_host
from ansible.module_utils.toa_host import host_path, init_comm, read_text, uname
from ansible.module_utils.toa_params import kinds_problems, same_value
from ansible.module_utils.toa_route import identify_host
from ansible.module_utils.toa_state import read_parameters


HEADER = "# Managed by toa-fleet (Ansible): do not edit"
RC_LOCAL_CREATED = "# Created by toa-fleet (Ansible) to load kernel modules at boot."
MODPROBE_DIRS = ["/sbin", "/usr/sbin", "/bin", "/usr/bin"]

_PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PARAM_BAD_VALUE_RE = re.compile(r"[\s'\"\\`$#\x00]")
_EXIT_RE = re.compile(r"^\s*exit(\s+0)?\s*(#.*)?$")


def module_key(name):
    return name.replace("-", "_")


def param_value(value):
    """The string form the kernel gets for a params value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        return ",".join(param_value(item) for item in value)
    return str(value)


def options_line(name, params):
    return " ".join(["options", name] + ["%s=%s" % (key, params[key]) for key in sorted(params)])


def is_our_rc_line(line, name):
    return line.strip() == "modprobe %s" % name


def rc_local_add(text, name):
    """rc.local text with exactly one `modprobe <name>` line that runs.

    The line goes right before a final `exit 0` (lines after it never run) or
    at the end.  An existing single line of ours before that exit is kept
    where it is, so a rerun changes nothing.
    """
    lines = text.splitlines()
    ours = [index for index, line in enumerate(lines) if is_our_rc_line(line, name)]
    others = [index for index in range(len(lines)) if index not in ours]
    kept = [lines[index] for index in others]
    final_exit = _final_exit(kept)
    if len(ours) == 1 and (final_exit is None or ours[0] < others[final_exit]):
        return text if text.endswith("\n") else text + "\n"
    line = "modprobe %s" % name
    if final_exit is None:
        kept.append(line)
    else:
        kept.insert(final_exit, line)
    return "\n".join(kept) + "\n"


def rc_local_remove(text, name):
    """rc.local text without our `modprobe <name>` lines; nothing else changes."""
    lines = text.splitlines(True)
    return "".join(line for line in lines if not is_our_rc_line(line, name))


def rc_local_new(name):
    return "#!/bin/sh -e\n%s\nmodprobe %s\nexit 0\n" % (RC_LOCAL_CREATED, name)


def _final_exit(lines):
    for index in range(len(lines) - 1, -1, -1):
        stripped = lines[index].strip()
        if not stripped or stripped.startswith("#"):
            continue
        return index if _EXIT_RE.match(lines[index]) else None
    return None


class Toa:
    """One run of the module: does or (check mode) records each change."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.name = module.params["name"]
        self.check = module.check_mode
        self.changed = False
        self.commands = []
        self.sysfs_writes = []
        self.written = []
        self.removed = []
        self.diffs = []
        self.messages = []
        self.reload_pending = False
        self._host = None
        self._modprobe = None

    # -- host ------------------------------------------------------------------

    @property
    def host(self):
        if self._host is None:
            machine, kernel = uname()
            os_release = read_text("/etc/os-release")
            if os_release is None:
                os_release = read_text("/usr/lib/os-release") or ""
            self._host = identify_host(os_release, read_text("/etc/redhat-release") or "",
                                       machine, kernel, init_comm())
        return self._host

    @property
    def modprobe(self):
        if self._modprobe is None:
            path = self.module.get_bin_path("modprobe", opt_dirs=MODPROBE_DIRS)
            if not path:
                self.module.fail_json(msg="modprobe was not found on the host: install the "
                                          "kmod package (module-init-tools on old releases)")
            self._modprobe = path
        return self._modprobe

    def is_loaded(self):
        text = read_text("/proc/modules") or ""
        return module_key(self.name) in [line.split()[0] for line in text.splitlines()
                                         if line.split()]

    def sysfs_param_path(self, key):
        return "/sys/module/%s/parameters/%s" % (module_key(self.name), key)

    def current_params(self):
        return read_parameters(self.name)

    # -- commands ------------------------------------------------------------------

    def run(self, argv, what):
        self.commands.append(argv)
        self.changed = True
        if self.check:
            return 0, "", ""
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            self.fail_command(argv, what, rc, out, err)
        return rc, out, err

    def kernel_log(self):
        dmesg = self.module.get_bin_path("dmesg", opt_dirs=MODPROBE_DIRS)
        if not dmesg:
            return []
        try:
            rc, out, _err = self.module.run_command([dmesg])
        except Exception:  # best effort: never hide the real error
            return []
        if rc != 0:
            return []
        pattern = re.compile(r"\b%s\b" % re.escape(module_key(self.name)), re.IGNORECASE)
        return [line for line in out.splitlines() if pattern.search(line)][-10:]

    def fail_command(self, argv, what, rc, out, err):
        detail = (err or out or "").strip()
        log = self.kernel_log()
        hint = ""
        if "not found" in detail.lower():
            hint = (" The module is not installed for the running kernel %s: boot the TOA "
                    "kernel or install the DKMS module first." % self.host["kernel"])
        elif "in use" in detail.lower():
            hint = " Stop what uses it, or leave it loaded."
        elif "unknown parameter" in detail.lower() or "invalid" in detail.lower():
            hint = " Check the names and values in params."
        msg = "Could not %s %s: `%s` exited %d: %s.%s" % (
            what, self.name, " ".join(argv), rc, detail or "no output", hint)
        if log:
            msg += " Kernel log: %s" % " | ".join(line.strip() for line in log)
        self.module.fail_json(msg=msg, rc=rc, stdout=out, stderr=err, kernel_log=log,
                              commands=self.commands)

    # -- load / unload --------------------------------------------------------------

    def load_argv(self, wanted):
        return [self.modprobe, self.name] + ["%s=%s" % (key, wanted[key])
                                             for key in sorted(wanted)]

    def outdated_code(self):
        """(loaded, installed) srcversions when the loaded code is not what modprobe would load.

        DKMS rebuilds under the same version and a package upgrade replace the
        file but not the running module; only srcversion tells them apart.
        """
        loaded = (read_text("/sys/module/%s/srcversion" % module_key(self.name)) or "").strip()
        modinfo = self.module.get_bin_path("modinfo", opt_dirs=MODPROBE_DIRS)
        if not loaded or not modinfo:
            return None
        rc, out, _err = self.module.run_command([modinfo, "-F", "srcversion", self.name])
        installed = out.strip() if rc == 0 else ""
        if not installed or installed == loaded:
            return None
        return loaded, installed

    def reload(self, wanted, why):
        self.run([self.modprobe, "-r", self.name], "unload")
        self.run(self.load_argv(wanted), "load")
        self.messages.append("reloaded %s: %s" % (self.name, why))

    def ensure_loaded(self, wanted):
        if not self.is_loaded():
            self.run(self.load_argv(wanted), "load")
            self.messages.append("loaded %s" % self.name)
            return
        outdated = self.outdated_code()
        if outdated and self.params["reload"]:
            self.reload(wanted, "the loaded code (srcversion %s) was not the installed "
                                "module's (%s)" % outdated)
            return
        if outdated:
            self.reload_pending = True
            self.module.warn(
                "%s is loaded from other code (srcversion %s) than the installed module "
                "(srcversion %s): the rebuilt or upgraded module runs only after a reload. "
                "Set reload: true (toa_reload=true in the role) to reload it now (connections "
                "accepted before lose their TOA address), or reboot." % ((self.name,) + outdated))
            self.messages.append("reload pending: loaded srcversion %s, installed %s" % outdated)
        current = self.current_params()
        # The kernel reads values back normalised (kinds sorted, host bits
        # cleared, IPv6 compressed): compare like with like.
        differ = [key for key in sorted(wanted)
                  if not same_value(key, wanted[key], current.get(key))]
        if outdated:
            # Parameters only the installed build has wait for its reload.
            later = [key for key in differ if current.get(key) is None]
            if later:
                self.messages.append("%s set at the reload" % ", ".join(later))
            differ = [key for key in differ if key not in later]
        if not differ:
            return
        fixed = []
        for key in differ:
            path = self.sysfs_param_path(key)
            try:
                mode = os.stat(host_path(path)).st_mode
            except OSError:
                mode = None
            if mode is None or not mode & stat.S_IWUSR:
                fixed.append(key)
        if fixed and not self.params["reload"]:
            detail = ", ".join("%s=%s (loaded: %s)" % (
                key, wanted[key], "not visible in sysfs" if current.get(key) is None
                else current[key]) for key in fixed)
            self.module.fail_json(
                msg="%s is loaded with other values for parameters that cannot be changed "
                    "at runtime: %s. Set reload: true to unload and load it again (connections "
                    "accepted before lose their TOA address), or change params."
                    % (self.name, detail), commands=self.commands)
        if fixed:
            self.reload(wanted, "%s cannot change at runtime" % ", ".join(fixed))
            return
        for key in differ:
            self.write_sysfs(key, wanted[key], current.get(key))
        self.messages.append("set %s at runtime" % ", ".join(differ))

    def write_sysfs(self, key, value, before):
        path = self.sysfs_param_path(key)
        self.sysfs_writes.append({"path": path, "before": before, "after": value})
        self.changed = True
        if self.check:
            return
        try:
            with open(host_path(path), "w") as handle:
                handle.write(value)
        except (IOError, OSError) as exc:
            self.module.fail_json(msg="Could not write %s to %s: %s. Set reload: true to "
                                      "load the module again with the new value instead."
                                      % (value, path, exc), commands=self.commands)

    def ensure_unloaded(self):
        if self.is_loaded():
            self.run([self.modprobe, "-r", self.name], "unload")
            self.messages.append("unloaded %s" % self.name)

    # -- files --------------------------------------------------------------------

    def _diff(self, path, before, after):
        self.diffs.append({"before_header": path, "after_header": path,
                           "before": before or "", "after": after or ""})

    def ensure_file(self, path, content, mode=None, add_exec=False):
        """Make a host file hold content; mode exact, or add_exec to add x bits only."""
        real = host_path(path)
        before = read_text(path)
        if before != content:
            self._diff(path, before, content)
            self.written.append(path)
            self.changed = True
            if not self.check:
                self._write(real, content, mode or 0o644)
        if self.check and before is None:
            return
        try:
            current = stat.S_IMODE(os.stat(real).st_mode)
        except OSError:
            return
        target = mode if mode is not None else current
        if add_exec:
            target = current | 0o111
        if target != current:
            if path not in self.written:
                self.written.append(path)
            self.changed = True
            if not self.check:
                os.chmod(real, target)

    def _write(self, real, content, mode):
        directory = os.path.dirname(real)
        try:
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o755)
            handle, temp = tempfile.mkstemp(prefix=".toa-fleet-", dir=directory)
            with os.fdopen(handle, "wb") as stream:
                stream.write(content.encode("utf-8"))
            existed = os.path.exists(real)
            self.module.atomic_move(temp, real)
            if not existed:
                os.chmod(real, mode)
        except (IOError, OSError) as exc:
            self.module.fail_json(msg="Could not write %s: %s. Check that the filesystem is "
                                      "writable and the task runs as root (become: true)."
                                      % (real, exc), commands=self.commands)

    def remove_ours(self, path):
        """Remove a host file only when it carries our header."""
        before = read_text(path)
        if before is None or HEADER not in before.splitlines():
            return
        self._diff(path, before, "")
        self.removed.append(path)
        self.changed = True
        if not self.check:
            try:
                os.remove(host_path(path))
            except OSError as exc:
                self.module.fail_json(msg="Could not remove %s: %s" % (path, exc))

    def rc_local_candidates(self):
        configured = self.params["rc_local_path"]
        if configured != "auto":
            return [configured]
        return ["/etc/rc.d/rc.local", "/etc/rc.local"]

    def rc_local_path(self):
        configured = self.params["rc_local_path"]
        if configured != "auto":
            path = configured
        elif os.path.exists(host_path("/etc/rc.d/rc.local")) or self.host["family"] == "RedHat":
            path = "/etc/rc.d/rc.local"
        else:
            path = "/etc/rc.local"
        return self.follow(path)

    def follow(self, path):
        """The host path a symbolic link points to (rc.local is one on EL7)."""
        real = os.path.realpath(host_path(path))
        root = os.path.realpath(toa_host.ROOT)
        if root != "/" and real.startswith(root + os.sep):
            return real[len(root):]
        return real

    def rc_local_enable(self):
        path = self.rc_local_path()
        before = read_text(path)
        after = rc_local_new(self.name) if before is None else rc_local_add(before, self.name)
        self.ensure_file(path, after, mode=0o755 if before is None else None, add_exec=True)
        return path

    def rc_local_disable(self, skip=None):
        seen = set()
        for candidate in self.rc_local_candidates():
            path = self.follow(candidate)
            if path in seen or path == skip:
                continue
            seen.add(path)
            before = read_text(path)
            if before is None:
                continue
            after = rc_local_remove(before, self.name)
            if after == before:
                continue
            if after == rc_local_remove(rc_local_new(self.name), self.name):
                # Only our scaffold is left: the file was ours from the start.
                self._diff(path, before, "")
                self.removed.append(path)
                self.changed = True
                if not self.check:
                    os.remove(host_path(path))
                continue
            self.ensure_file(path, after)

    def resolve_method(self):
        method = self.params["autoload_method"]
        if method != "auto":
            return method
        if self.host["init"] == "systemd":
            return "modules-load"
        if self.host["family"] == "RedHat":
            return "sysconfig"
        return "rc-local"

    def autoload(self, wanted):
        state = self.params["autoload"]
        if state == "unchanged":
            return None
        name = self.name
        modules_load = "/etc/modules-load.d/%s.conf" % name
        sysconfig = "/etc/sysconfig/modules/%s.modules" % name
        options = "/etc/modprobe.d/%s.conf" % name
        if state == "disabled":
            self.remove_ours(modules_load)
            self.remove_ours(sysconfig)
            self.rc_local_disable()
            self.remove_ours(options)
            return None
        method = self.resolve_method()
        rc_path = None
        if method == "modules-load":
            self.ensure_file(modules_load, "%s\n%s\n" % (HEADER, name), mode=0o644)
        else:
            self.remove_ours(modules_load)
        if method == "sysconfig":
            self.ensure_file(sysconfig, "#!/bin/sh\n%s\nexec /sbin/modprobe %s >/dev/null 2>&1\n"
                             % (HEADER, name), mode=0o755)
        else:
            self.remove_ours(sysconfig)
        if method == "rc-local":
            rc_path = self.rc_local_enable()
        self.rc_local_disable(skip=rc_path)
        if wanted:
            self.ensure_file(options, "%s\n%s\n" % (HEADER, options_line(name, wanted)),
                             mode=0o644)
        else:
            self.remove_ours(options)
        return method


def validate(module):
    name = module.params["name"]
    if not re.match(r"^[A-Za-z0-9_-]+$", name):
        module.fail_json(msg="name %r is not a kernel module name; use letters, digits, _ and "
                             "- only (for example: toa)" % name)
    wanted = {}
    for key, raw in (module.params["params"] or {}).items():
        if not _PARAM_NAME_RE.match(str(key)):
            module.fail_json(msg="params key %r is not a module parameter name; use letters, "
                                 "digits and _ (for example ipv4_kinds)" % (key,))
        value = param_value(raw)
        if _PARAM_BAD_VALUE_RE.search(value):
            module.fail_json(msg="params %s=%r contains a space, quote, $, # or backslash, "
                                 "which modprobe and /etc/modprobe.d cannot carry safely; "
                                 "separate list items with commas" % (key, value))
        wanted[str(key)] = value
    refused = kinds_problems(wanted, label="params")
    if refused:
        module.fail_json(msg=" ".join(refused))
    rc_local = module.params["rc_local_path"]
    if rc_local != "auto" and not rc_local.startswith("/"):
        module.fail_json(msg="rc_local_path %r must be an absolute path or auto" % rc_local)
    return wanted


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", default="toa"),
            state=dict(type="str", default="loaded", choices=["loaded", "unloaded"]),
            params=dict(type="dict", default={}),
            reload=dict(type="bool", default=False),
            autoload=dict(type="str", default="unchanged",
                          choices=["enabled", "disabled", "unchanged"]),
            autoload_method=dict(type="str", default="auto",
                                 choices=["auto", "modules-load", "sysconfig", "rc-local"]),
            rc_local_path=dict(type="str", default="auto"),
        ),
        supports_check_mode=True,
    )
    wanted = validate(module)
    toa = Toa(module)
    if module.params["state"] == "loaded":
        toa.ensure_loaded(wanted)
    else:
        toa.ensure_unloaded()
    method = toa.autoload(wanted)
    if module.params["state"] == "loaded":
        loaded = True if toa.check else toa.is_loaded()
    else:
        loaded = False if toa.check else toa.is_loaded()
    if toa.check:
        effective = toa.current_params() if toa.is_loaded() else {}
        if module.params["state"] == "loaded":
            effective.update(wanted)
        else:
            effective = {}
    else:
        effective = toa.current_params() if loaded else {}
    if toa.written:
        toa.messages.append("wrote %s" % ", ".join(toa.written))
    if toa.removed:
        toa.messages.append("removed %s" % ", ".join(toa.removed))
    msg = "; ".join(toa.messages) if toa.messages else "nothing to change"
    if toa.check and toa.changed:
        msg = "would have: " + msg
    result = dict(changed=toa.changed, loaded=loaded, params=effective, commands=toa.commands,
                  sysfs_writes=toa.sysfs_writes, autoload_method=method,
                  files_written=toa.written, files_removed=toa.removed,
                  reload_pending=toa.reload_pending, msg=msg)
    if module._diff:
        result["diff"] = toa.diffs
    module.exit_json(**result)


if __name__ == "__main__":
    main()
