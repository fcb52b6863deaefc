# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a host's TOA state, shared by toa_facts and toa_verify (read-only).

read_state() is what verification needs: the host's identity, the module
(loaded, version, srcversion of the loaded code and of the installed file,
parameters), /proc/net/toa_stats and what it says about lost addresses,
autoload, and the eBPF route's readings and status.  toa_facts adds the route
the role would take, the installed kernels, DKMS and preflight readings.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re

from ansible.module_utils.toa_host import host_path, init_comm, read_text, uname
from ansible.module_utils.toa_params import source_filter
from ansible.module_utils.toa_preflight import parse_lockdown
from ansible.module_utils.toa_route import (
    bpffs_mounted,
    cgroup2_root,
    ebpf_route_problems,
    identify_host,
    parse_mounts,
)
from ansible.module_utils.toa_stats import summarise as summarise_stats


def module_key(name):
    # The kernel reports module names with underscores.
    return name.replace("-", "_")


def parse_proc_modules(text):
    """Names of the modules listed in /proc/modules text."""
    names = []
    for line in (text or "").splitlines():
        fields = line.split()
        if fields:
            names.append(fields[0])
    return names


def parse_toa_stats(text):
    """Counters from /proc/net/toa_stats.

    Accepts "name value" lines, "name: value" lines and per-CPU tables
    ("name  :  1  2  3", summed); header lines without numbers are skipped.
    """
    stats = {}
    for line in (text or "").splitlines():
        fields = line.replace(":", " ").split()
        if len(fields) < 2:
            continue
        values = fields[1:]
        if not all(re.match(r"^-?\d+$", value) for value in values):
            continue
        stats[fields[0]] = sum(int(value) for value in values)
    return stats


def read_parameters(name):
    """Readable parameters under /sys/module/<name>/parameters."""
    directory = "/sys/module/%s/parameters" % module_key(name)
    params = {}
    try:
        entries = sorted(os.listdir(host_path(directory)))
    except OSError:
        return params
    for entry in entries:
        text = read_text(directory + "/" + entry)
        if text is not None:
            params[entry] = text.rstrip("\n")
    return params


def _modprobe_line_re(name):
    return re.compile(r"^\s*(?:/s?bin/|/usr/s?bin/)?modprobe\s+(?:-\S+\s+)*%s(?:\s|;|$)"
                      % re.escape(name))


def module_state(module, name, kernel):
    key = module_key(name)
    loaded = key in parse_proc_modules(read_text("/proc/modules", ""))
    sys_dir = "/sys/module/%s" % key
    version = (read_text(sys_dir + "/version") or "").strip() or None
    srcversion = (read_text(sys_dir + "/srcversion") or "").strip() or None
    builtin = False
    available = False
    path = None
    modinfo = module.get_bin_path("modinfo", opt_dirs=["/sbin", "/usr/sbin"])
    if modinfo:
        rc, out, _err = module.run_command([modinfo, "-k", kernel, "-n", name])
        if rc == 0 and out.strip():
            available = True
            path = out.strip().splitlines()[0]
            builtin = path.startswith("(builtin)")
    if not available:
        # No modinfo (minimal images): look in the kernel's module index.
        base = "/lib/modules/%s/" % kernel
        pattern = re.compile(r"(^|/)%s\.ko(\.[gx]z|\.zst)?$" % re.escape(key))
        for index in ("modules.dep", "modules.builtin"):
            for line in (read_text(base + index, "") or "").splitlines():
                entry = line.split(":", 1)[0].strip()
                if pattern.search(entry.replace("-", "_")):
                    available = True
                    builtin = index == "modules.builtin"
                    path = "(builtin)" if builtin else base + entry
                    break
            if available:
                break
    # The srcversion of the file modprobe would load now: after a rebuild under
    # the same version only this tells the loaded code from the installed.
    file_srcversion = None
    if modinfo and available and not builtin:
        rc, out, _err = module.run_command([modinfo, "-k", kernel, "-F", "srcversion", name])
        if rc == 0:
            file_srcversion = out.strip() or None
    parameters = read_parameters(name) if loaded or builtin else {}
    trusted, any_source = source_filter(parameters) if loaded or builtin else (None, None)
    return {
        "loaded": loaded,
        "version": version,
        "srcversion": srcversion,
        "file_srcversion": file_srcversion,
        "reload_pending": bool(loaded and srcversion and file_srcversion
                               and srcversion != file_srcversion),
        "parameters": parameters,
        "trusted_cidrs": trusted,
        "honours_any_source": any_source,
        "available": available,
        "builtin": builtin,
        "file": path,
    }


def autoload_state(name):
    methods = []
    files = []
    problems = []
    options = {}
    options_file = None
    line_re = re.compile(r"^\s*%s\s*(#.*)?$" % re.escape(name))

    def listed(path):
        text = read_text(path)
        if text is None:
            return None
        return any(line_re.match(line) for line in text.splitlines())

    for path in ("/etc/modules-load.d/%s.conf" % name, "/usr/lib/modules-load.d/%s.conf" % name):
        found = listed(path)
        if found is not None:
            files.append(path)
            if found and "modules-load" not in methods:
                methods.append("modules-load")
    if listed("/etc/modules"):
        methods.append("etc-modules")
        files.append("/etc/modules")

    conf = "/etc/modprobe.d/%s.conf" % name
    text = read_text(conf)
    if text is not None:
        files.append(conf)
        options_file = conf
        for line in text.splitlines():
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 2 and fields[0] == "options" and fields[1] in (
                    name, module_key(name)):
                for item in fields[2:]:
                    key, _sep, value = item.partition("=")
                    options[key] = value

    sysconfig = "/etc/sysconfig/modules/%s.modules" % name
    if os.path.exists(host_path(sysconfig)):
        files.append(sysconfig)
        if os.access(host_path(sysconfig), os.X_OK):
            methods.append("sysconfig")
        else:
            problems.append("%s is not executable, so rc.sysinit skips it" % sysconfig)

    modprobe_re = _modprobe_line_re(name)
    seen = set()
    for path in ("/etc/rc.d/rc.local", "/etc/rc.local"):
        real = os.path.realpath(host_path(path))
        if real in seen or not os.path.isfile(real):
            continue
        seen.add(real)
        text = read_text(path, "")
        effective = False
        for line in text.splitlines():
            stripped = line.strip()
            if stripped.startswith("#"):
                continue
            if modprobe_re.match(line):
                effective = True
            elif "modprobe" in stripped and name in stripped and (
                    u"\u201c" in stripped or u"\u201d" in stripped):
                problems.append("%s has the line %s with typographic quotes (copied from the "
                                "vendor guide): it does not load %s; replace it with a plain "
                                "`modprobe %s` line" % (path, stripped, name, name))
        if effective:
            files.append(path)
            if os.access(real, os.X_OK):
                methods.append("rc-local")
            else:
                problems.append("%s loads %s but is not executable, so it never runs"
                                % (path, name))
    return {
        "enabled": bool(methods),
        "methods": methods,
        "files": files,
        "options": options,
        "options_file": options_file,
        "problems": problems,
    }


EBPF_LOADER = "/usr/local/lib/toa/toa-bpf"
EBPF_UNIT = "/etc/systemd/system/toa-bpf.service"


def ebpf_readings(name):
    """What the eBPF route needs from this host (toa_route.ebpf_route_problems reads it)."""
    mounts = parse_mounts(read_text("/proc/self/mounts", ""))
    bpffs = bpffs_mounted(mounts) or os.path.isdir(host_path("/sys/fs/bpf"))  # mountable
    return {
        "btf": os.path.exists(host_path("/sys/kernel/btf/vmlinux")),
        "cgroup2": cgroup2_root(mounts),
        "bpffs": bool(bpffs),
        "lockdown": parse_lockdown(read_text("/sys/kernel/security/lockdown")) or "",
        "module_loaded": os.path.isdir(host_path("/sys/module/%s" % name)),
    }


def ebpf_state(module, host):
    """The route's readings, problems and what the role installed (read-only)."""
    problems = ebpf_route_problems(host)
    state = dict(host.get("ebpf") or {})
    state.update({"possible": not problems, "problems": problems,
                  "installed": os.path.exists(host_path(EBPF_LOADER))
                  and os.path.exists(host_path(EBPF_UNIT)),
                  "status": None, "status_error": None})
    if os.path.exists(host_path(EBPF_LOADER)):
        python3 = module.get_bin_path("python3") or "/usr/bin/python3"
        rc, out, err = module.run_command([python3, EBPF_LOADER, "status"])
        if rc == 0:
            try:
                state["status"] = json.loads(out)
            except ValueError:
                state["status_error"] = "toa-bpf status printed no JSON: %r" % out[:200]
        else:
            state["status_error"] = (err or out).strip()[-500:]
    return state


def read_host(name):
    """(host identity with the eBPF route's readings, running kernel release)."""
    machine, running = uname()
    kernel = (read_text("/proc/sys/kernel/osrelease") or running).strip()
    os_release = read_text("/etc/os-release")
    if os_release is None:
        os_release = read_text("/usr/lib/os-release", "")
    redhat_release = read_text("/etc/redhat-release", "")
    host = identify_host(os_release, redhat_release, machine, kernel, init_comm(),
                         kernel_version=read_text("/proc/sys/kernel/version", ""),
                         version_signature=read_text("/proc/version_signature", ""))
    host["ebpf"] = ebpf_readings(name)
    return host, kernel


def read_state(module, name):
    """The TOA state of the host under the keys toa_facts returns them: host, module,
    stats, counters, autoload, kernels (running only) and ebpf."""
    host, kernel = read_host(name)
    stats = parse_toa_stats(read_text("/proc/net/toa_stats", ""))
    return {
        "host": host,
        "module": module_state(module, name, kernel),
        "stats": stats,
        "counters": summarise_stats(stats),
        "autoload": autoload_state(name),
        "kernels": {"running": kernel},
        "ebpf": ebpf_state(module, host),
    }
