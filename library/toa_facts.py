#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: toa_facts
short_description: Report the TOA state of a host and the route the toa role would take
description:
  - Read-only. Reads C(/etc/os-release) (or C(/etc/redhat-release) on CentOS 6),
    C(/proc/modules), C(/sys/module/<name>), C(/proc/net/toa_stats), the autoload files,
    the installed kernels and C(dkms status), and returns them as C(ansible_facts.toa).
  - Chooses the install route for the host from the vendor catalogue (see I(catalogue) and
    I(strategy)). When no route fits, C(route) is null and C(route_error) says why; the
    module itself does not fail, so the caller decides.
  - Never changes anything; C(changed) is always false. Check mode is supported.
options:
  name:
    description: Name of the kernel module.
    type: str
    default: toa
  catalogue:
    description:
      - Vendor package rows, each a dict with C(id), C(distribution), C(version) (exact, for
        example C("16.04")) or C(major) (for example C("7")), C(arch), C(format) (C(rpm) or
        C(deb)), C(kernel) (the release C(uname -r) prints once booted), C(image),
        C(headers) (file name or null) and C(sha256) (file name to sha256 hex).
      - Rows with an exact C(version) beat C(major) rows; among equals, later rows win and a
        later row with the same C(id) replaces an earlier one.
    type: list
    elements: dict
    default: []
  strategy:
    description:
      - C(auto) takes C(package) when a catalogue row matches and may be installed (every file
        has a sha256 or I(allow_unverified), and its kernel is not older than the running one or
        I(allow_older_kernel)), else C(module) (DKMS build) when possible, else C(kernel)
        (patched kernel built from source). A matching row that may not be installed and a host
        the module route cannot serve make C(route_error) say what to set.
      - C(ebpf) (opt-in) attaches the TOA eBPF programs instead of a module; C(route_error) lists
        every reason the host cannot take it (see C(ebpf.problems)).
    type: str
    choices: [auto, package, module, kernel, ebpf]
    default: auto
  package_base_url:
    description: Where the vendor packages are downloaded from (http, https or file://).
    type: str
    default: http://toakernel-1253438722.cossh.myqcloud.com/
  package_checksums:
    description: File name to sha256 hex; takes precedence over the catalogue's C(sha256).
    type: dict
    default: {}
  allow_unverified:
    description: Accept package files with no known sha256 (reported as C(verified=false)).
    type: bool
    default: false
  install_headers:
    description: Include the catalogue row's headers package in the route's files.
    type: bool
    default: false
  allow_older_kernel:
    description:
      - Let the package route install a kernel older than the running one (rpm rows by
        version and release, deb rows by the upstream version the running kernel is based on,
        from C(uname -v) on Debian and C(/proc/version_signature) on Ubuntu).
      - When false, such a row is refused with I(strategy=package), and I(strategy=auto)
        takes the module route instead.
    type: bool
    default: false
  conflicting_modules:
    description:
      - Names of other TOA-like modules; one loaded is a preflight problem (they rewrite the
        same peer addresses).
    type: list
    elements: str
    default: []
  free_mb:
    description:
      - MB the route needs free, by key C(boot) (/boot, package and kernel routes), C(root)
        (/, package and kernel routes) and C(dkms) (/usr/src and /var/lib/dkms, module route);
        missing keys take the defaults 150, 500 and 300; 0 skips a key.
    type: dict
    default: {}
  preflight_ignore:
    description: Preflight checks not to report (C(space), C(bootloader), C(conflicts), C(secure_boot)).
    type: list
    elements: str
    default: []
  signing_key:
    description: Path on the host of the private key DKMS signs the module with (module route).
    type: str
    default: ""
  signing_cert:
    description: Path on the host of the certificate of I(signing_key).
    type: str
    default: ""
  params:
    description:
      - The module parameters the role will load TOA with (toa_params), only checked. Option
        kinds the kernel's TCP uses and an empty C(ipv4_kinds) are preflight problems
        (check C(params)).
      - When given, the module warns while the TOA module the route loads will honour TOA from
        any source (an empty C(trusted_cidrs), or a vendor kernel's module, which has no
        filter).
    type: dict
  module_source:
    description:
      - How the module route gets the module (C(module_plan)). C(auto) installs the package
        I(module_packages) has for the running kernel, else builds under DKMS; C(prebuilt)
        makes C(route_error) say what to build instead of falling back; C(dkms) always builds.
    type: str
    choices: [auto, prebuilt, dkms]
    default: auto
  module_packages:
    description:
      - Prebuilt TOA module packages by kernel release (what C(playbooks/build.yml) prints),
        each C({file, sha256, version}) with C(file) relative to I(module_package_base_url),
        optionally C(package) and C(package_version) (else read from the file name).
    type: dict
    default: {}
  module_package_base_url:
    description: Where the files of I(module_packages) are downloaded from (http, https or file://).
    type: str
    default: ""
  src_version:
    description: The module version the role installs; a prebuilt package of another version is not used.
    type: str
    default: ""
  gather_dkms:
    description:
      - Run C(dkms status) for C(dkms). C(dkms) is a shell script that takes seconds on a small
        host; a caller that does not use C(dkms) (playbooks/verify.yml) sets false, and then
        C(dkms) and C(dkms_installed) are null.
    type: bool
    default: true
  ebpf_auto_releases:
    description:
      - Releases (C(<os-release ID> <VERSION_ID>), for example C(debian 12)) where I(strategy=auto)
        takes the eBPF route when no catalogue row matches, the host can take it, the module
        route is not on the host yet and I(module_source) and I(module_packages) do not ask for
        the module. A host where the eBPF route is installed keeps it under I(strategy=auto).
    type: list
    elements: str
    default: []
notes:
  - Runs C(modinfo), and C(dkms status) when it is installed and I(gather_dkms) is true; nothing
    else is executed.
author:
  - toa-fleet contributors (!UNKNOWN)
'''

EXAMPLES = r'''
- name: Read the TOA state and choose the route
  toa_facts:
    catalogue: "{{ toa_catalogue + toa_catalogue_extra }}"
    strategy: "{{ toa_strategy }}"
    package_base_url: "{{ toa_package_base_url }}"
    package_checksums: "{{ toa_package_checksums }}"
    allow_unverified: "{{ toa_allow_unverified_packages }}"

- name: Say whether TOA is loaded
  ansible.builtin.debug:
    msg: >-
      toa loaded: {{ ansible_facts.toa.module.loaded }},
      route: {{ ansible_facts.toa.route.route if ansible_facts.toa.route else ansible_facts.toa.route_error }}
'''

RETURN = r'''
ansible_facts:
  description: Facts under the key C(toa).
  returned: always
  type: dict
  contains:
    toa:
      description: TOA state of the host.
      type: dict
      contains:
        host:
          description:
            - Host identity with keys C(distribution), C(id), C(like), C(version),
              C(full_version), C(major), C(codename), C(pretty_name), C(family) (Debian, RedHat
              or Unknown), C(arch) (x86_64, aarch64, ...), C(kernel), C(kernel_upstream) (the
              upstream version the running kernel is based on, "" when unknown), C(init)
              (systemd, upstart, sysvinit or unknown), C(init_comm).
          type: dict
          sample: {distribution: Debian, version: "12", major: "12", family: Debian,
                   arch: x86_64, kernel: 6.1.0-18-amd64, init: systemd}
        module:
          description:
            - C(loaded) (in /proc/modules), C(version) and C(srcversion) (from /sys/module),
              C(parameters) (name to value, readable ones), C(available) (modinfo finds it for
              the running kernel), C(file) (its path), C(builtin) (compiled into the kernel).
            - C(trusted_cidrs) is the loaded module's source filter as the kernel reads it back
              ("" for none, null when the module has no such parameter, as the vendor's);
              C(honours_any_source) is true when it honours TOA from any source (no filter),
              false when it filters, null when no TOA module is loaded.
            - C(file_srcversion) is the srcversion of that file (C(modinfo -F srcversion)), null
              when unknown; C(reload_pending) is true when the module is loaded and both
              srcversions are known and differ, that is the loaded code is not the installed
              build (rebuilt or upgraded since it was loaded) until a reload or reboot.
          type: dict
          sample: {loaded: true, version: 1.0.0, srcversion: 5E0A6A1F4F2D3C1B0A998877,
                   file_srcversion: 5E0A6A1F4F2D3C1B0A998877, reload_pending: false,
                   trusted_cidrs: 10.20.0.0/16, honours_any_source: false,
                   parameters: {ipv4_kinds: "200"}, available: true,
                   file: /lib/modules/6.1.0-18-amd64/updates/dkms/toa.ko}
        stats:
          description: Counters from /proc/net/toa_stats (per-CPU columns summed); {} when absent.
          type: dict
          sample: {accepted: 12, getname_rewrites: 10, entries_dropped_full: 0}
        counters:
          description:
            - What the counters say about lost client addresses (module_utils/toa_stats.py).
            - C(lost) is true when a counter that means a connection showed the proxy instead of
              its client is above 0 (C(entries_dropped_full), C(entries_nomem),
              C(syn_stash_dropped_full), every C(missed_*), and their C(global_*) totals),
              false when all of those the module prints are 0, null when it prints none.
            - C(lost_counters) maps each of them to its value, null when the module does not
              print it (an older module); C(lost_nonzero) holds those above 0,
              C(lost_unknown) names the null ones; C(advice) says what they mean and what to
              do (empty when nothing was lost).
            - C(refusals) maps C(rejected_*), C(getname_stale), C(entries_replaced) and
              C(fastopen_without_toa) to their values (null when not printed), refusals by
              design and not a failure.
            - C(hooks_ftrace) is true when the module hooks with ftrace (cannot miss), false for
              kprobes (can miss under load), null when the module does not say.
          type: dict
          sample: {lost: false, lost_counters: {entries_dropped_full: 0, global_missed: null},
                   lost_nonzero: {}, lost_unknown: [global_missed], advice: "",
                   refusals: {rejected_multiple: 0}, hooks_ftrace: true}
        autoload:
          description:
            - C(enabled) (some boot-time method loads the module), C(methods) (modules-load,
              etc-modules, sysconfig, rc-local), C(files) (files that mention the module),
              C(options) (parameters from modprobe.d), C(options_file), C(problems) (findings
              such as the vendor guide's typographic-quote rc.local line).
          type: dict
        kernels:
          description:
            - C(running), C(installed_toa) (TOA kernel releases in /lib/modules or /boot),
              C(running_is_toa), C(installed) (every kernel release with a C(/boot/vmlinuz-<release>)
              or C(/lib/modules/<release>/vmlinuz)).
          type: dict
        module_plan:
          description:
            - Module route only (else null). C(source) (C(prebuilt) or C(dkms)), C(reason),
              C(install) (C({kernel, name, url, sha256, version, package, package_version}), the
              running kernel first, then every installed kernel with a usable package),
              C(without) (installed kernels without one), C(unusable) (release to why its
              package cannot be used). With C(source) C(prebuilt), each C(install) item also has
              C(installed) (dpkg has its package at its version) and the plan C(dkms_left) (the
              versions of the module DKMS still has a tree for under /var/lib/dkms).
          type: dict
        dkms:
          description:
            - C(dkms status) entries for the module (module, version, kernel, arch, state, notes);
              null when I(gather_dkms) is false.
          type: list
          elements: dict
        dkms_installed:
          description: Whether the dkms command exists; null when I(gather_dkms) is false.
          type: bool
        src_recorded:
          description:
            - The module source directories the role recorded as installed by it, in
              C(/var/lib/toa-fleet/installed-src) (C(/usr/src/<name>-<version>) lines; others are
              ignored). Removal deletes these and no other C(/usr/src/<name>-*).
          type: list
          elements: str
          sample: [/usr/src/toa-2.0.0]
        route:
          description:
            - The chosen route, C({route, strategy, reason, package}); C(package) is null unless
              C(route) is C(package), else C({id, kernel, format, files, verified, unverified,
              running, headers_available}) with C(files) a list of C({name, url, sha256, kind})
              and C(unverified) the names of the files without a sha256.
            - Null when no route fits.
          type: dict
        route_error:
          description: Why no route fits and what to set; null when a route was chosen.
          type: str
        preflight:
          description:
            - C(disk) (path to C({checked, free_mb, device})), C(bootloader) (C({kind, missing,
              grub_cfg}); kind grubby, grub2 or unknown), C(security) (C({lockdown, secure_boot,
              efi, sig_enforce, required, reasons})), C(loaded) (loaded TOA-like modules with
              version, srcversion, parameter names and C(ours)), C(signing) (key, cert,
              whether they exist, C(conf_exists) for the role's DKMS signing file) and
              C(problems) (C({check, msg}) that stop the chosen route; empty when it may go
              ahead).
          type: dict
        ebpf:
          description:
            - The eBPF route on this host. C(possible) and C(problems) (why it cannot be taken,
              kernel older than 5.10, no BTF, no cgroup v2, no bpffs, lockdown in
              confidentiality mode, the TOA module loaded); the readings C(btf), C(cgroup2) (the
              cgroup2 root, empty when none), C(bpffs), C(lockdown), C(module_loaded); and what
              the role installed, C(installed) (the loader and the systemd unit exist) and
              C(status) (what C(toa-bpf status) prints, with C(loaded), C(attached) per hook and C(counters)),
              null when the loader is absent or failed (C(status_error) says why).
          type: dict
'''

import os
import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.toa_host import host_path, read_text
from ansible.module_utils.toa_preflight import (
    CHECKS,
    EFI_GLOBAL_GUID,
    bootloader_kind,
    is_ours,
    parse_lockdown,
    parse_secure_boot,
    parse_sig_enforce,
    problems as preflight_problems,
    signing_state,
)
from ansible.module_utils.toa_params import any_source_warning
from ansible.module_utils.toa_route import (
    SEED_BASE_URL,
    STRATEGIES,
    RouteError,
    is_toa_kernel,
    mark_installed,
    module_package_plan,
    parse_dkms_status,
    parse_dpkg_status,
    select_route,
)
from ansible.module_utils.toa_state import (
    module_key,
    parse_proc_modules,
    read_parameters,
    read_state,
)


def installed_toa_kernels():
    releases = set()
    try:
        for entry in os.listdir(host_path("/lib/modules")):
            if is_toa_kernel(entry):
                releases.add(entry)
    except OSError:
        pass
    try:
        for entry in os.listdir(host_path("/boot")):
            if entry.startswith("vmlinuz-") and is_toa_kernel(entry[len("vmlinuz-"):]):
                releases.add(entry[len("vmlinuz-"):])
    except OSError:
        pass
    return sorted(releases)


def installed_kernels():
    """Every installed kernel release: a /boot/vmlinuz-<release>, or /lib/modules/<release>/vmlinuz
    (Fedora and EL 9 keep it there); a /lib/modules directory alone may be a leftover."""
    releases = set()
    try:
        for entry in os.listdir(host_path("/boot")):
            if entry.startswith("vmlinuz-") and len(entry) > len("vmlinuz-"):
                releases.add(entry[len("vmlinuz-"):])
    except OSError:
        pass
    try:
        for entry in os.listdir(host_path("/lib/modules")):
            if os.path.isfile(host_path("/lib/modules/%s/vmlinuz" % entry)):
                releases.add(entry)
    except OSError:
        pass
    return sorted(releases)


def dkms_registered(name):
    """Versions of the module DKMS has a tree for (/var/lib/dkms/<name>/<version>), without running dkms."""
    base = host_path("/var/lib/dkms/%s" % name)
    try:
        entries = os.listdir(base)
    except OSError:
        return []
    return sorted(e for e in entries if e[:1].isdigit() and os.path.isdir(os.path.join(base, e)))


def dkms_state(module, name):
    dkms = module.get_bin_path("dkms", opt_dirs=["/sbin", "/usr/sbin"])
    if not dkms:
        return False, []
    rc, out, _err = module.run_command([dkms, "status"])
    if rc != 0:
        return True, []
    return True, [entry for entry in parse_dkms_status(out) if entry["module"] == name]


# Filesystems the routes write to; each reading names the existing directory
# it was taken on (a path not created yet counts on its parent's filesystem).
SPACE_PATHS = ("/boot", "/", "/usr/src", "/var/lib/dkms")
GRUB_CFGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")
# The DKMS signing setting the role writes (tasks/dkms_signing.yml).
SIGNING_CONF = "/etc/dkms/framework.conf.d/toa-signing.conf"
# The module source directories the role installed (tasks/route_module.yml), one
# a line: removal deletes these, not whatever else matches /usr/src/toa-*.
INSTALLED_SRC = "/var/lib/toa-fleet/installed-src"


def recorded_src(name):
    """The /usr/src/<name>-<version> directories INSTALLED_SRC lists, in order, once each."""
    pattern = re.compile(r"^/usr/src/%s-[A-Za-z0-9][A-Za-z0-9._+~-]*$" % re.escape(name))
    found = []
    for line in (read_text(INSTALLED_SRC, "") or "").splitlines():
        path = line.strip()
        if pattern.match(path) and ".." not in path and path not in found:
            found.append(path)
    return found


def free_space(path):
    checked = path
    while not os.path.isdir(host_path(checked)) and checked != "/":
        checked = os.path.dirname(checked.rstrip("/")) or "/"
    try:
        info = os.statvfs(host_path(checked))
        device = os.stat(host_path(checked)).st_dev
    except OSError:
        return None
    return {"checked": checked, "device": device,
            "free_mb": int(info.f_bavail * info.f_frsize // (1024 * 1024))}


def read_bytes(path):
    try:
        with open(host_path(path), "rb") as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def bootloader_state(module):
    dirs = ["/sbin", "/usr/sbin"]
    bins = {}
    for tool in ("grubby", "grub-reboot", "grub-set-default"):
        bins[tool] = module.get_bin_path(tool, opt_dirs=dirs)
        if not bins[tool] and tool != "grubby":
            bins[tool] = module.get_bin_path(tool.replace("grub-", "grub2-"), opt_dirs=dirs)
    grub_cfg = None
    for path in GRUB_CFGS:
        if os.path.isfile(host_path(path)):
            grub_cfg = path
            break
    state = bootloader_kind(bins, grub_cfg)
    state["grub_cfg"] = grub_cfg
    return state


def security_state():
    efi = os.path.isdir(host_path("/sys/firmware/efi"))
    secure_boot = parse_secure_boot(
        read_bytes("/sys/firmware/efi/efivars/SecureBoot-%s" % EFI_GLOBAL_GUID))
    if secure_boot is None and not efi:
        secure_boot = False  # BIOS boot has no Secure Boot
    lockdown = parse_lockdown(read_text("/sys/kernel/security/lockdown"))
    sig_enforce = parse_sig_enforce(read_text("/sys/module/module/parameters/sig_enforce"))
    state = {"efi": efi, "secure_boot": secure_boot, "lockdown": lockdown,
             "sig_enforce": sig_enforce}
    state.update(signing_state(lockdown, secure_boot, sig_enforce))
    return state


def loaded_toa_like(names):
    loaded = set(parse_proc_modules(read_text("/proc/modules", "")))
    found = {}
    for name in names:
        key = module_key(name)
        if key not in loaded:
            continue
        sys_dir = "/sys/module/%s" % key
        info = {
            "version": (read_text(sys_dir + "/version") or "").strip() or None,
            "srcversion": (read_text(sys_dir + "/srcversion") or "").strip() or None,
            "parameters": sorted(read_parameters(name)),
        }
        info["ours"] = is_ours(info)
        found[name] = info
    return found


def preflight_state(module, route, module_plan=None):
    params = module.params
    key, cert = params["signing_key"] or "", params["signing_cert"] or ""
    readings = {
        "disk": dict((path, free_space(path)) for path in SPACE_PATHS),
        "bootloader": bootloader_state(module),
        "security": security_state(),
        "loaded": loaded_toa_like([params["name"]] + list(params["conflicting_modules"])),
        "signing": {
            "key": key, "cert": cert,
            "key_exists": bool(key) and os.path.isfile(host_path(key)),
            "cert_exists": bool(cert) and os.path.isfile(host_path(cert)),
            "conf_exists": os.path.isfile(host_path(SIGNING_CONF)),
        },
    }
    found = []
    if route:
        package = route.get("package") or {}
        found = preflight_problems(route["route"], readings, {
            "name": params["name"],
            "free_mb": params["free_mb"],
            "ignore": params["preflight_ignore"],
            "conflicting": params["conflicting_modules"],
            "row_id": package.get("id"),
            "params": params["params"] or {},
            "module_source": (module_plan or {}).get("source"),
        })
    readings["problems"] = found
    return readings


def module_present(toa, name):
    """What shows that the module route is on this host ("" for nothing): auto
    does not move such a host to the eBPF route by itself."""
    found = []
    if toa["module"].get("loaded"):
        found.append("the %s module is loaded" % name)
    elif toa["module"].get("available") and not toa["module"].get("builtin"):
        found.append("%s is installed" % toa["module"].get("file"))
    if toa["autoload"].get("methods"):
        found.append("autoload is configured (%s)" % ", ".join(toa["autoload"].get("files") or []))
    dkms_versions = dkms_registered(name)
    if dkms_versions:
        found.append("DKMS has %s %s" % (name, ", ".join(dkms_versions)))
    return "; ".join(found)


def module_wanted(params, kernel):
    """Why the user's settings ask for the module route ("" when they do not)."""
    if params["module_source"] != "auto":
        return "toa_module_source is %s" % params["module_source"]
    if kernel in (params["module_packages"] or {}):
        return "toa_module_packages has a package for kernel %s" % kernel
    return ""


def gather(module):
    params = module.params
    name = params["name"]
    toa = read_state(module, name)
    host, kernel = toa["host"], toa["kernels"]["running"]
    route = None
    route_error = None
    try:
        route = select_route(host, params["catalogue"], strategy=params["strategy"],
                             base_url=params["package_base_url"],
                             checksums=params["package_checksums"],
                             allow_unverified=params["allow_unverified"],
                             install_headers=params["install_headers"],
                             allow_older_kernel=params["allow_older_kernel"],
                             ebpf_auto_releases=params["ebpf_auto_releases"],
                             module_present=module_present(toa, name),
                             module_wanted=module_wanted(params, kernel),
                             ebpf_present=bool(toa["ebpf"].get("installed")))
    except RouteError as exc:
        route_error = str(exc)
    installed = installed_kernels()
    module_plan = None
    if route and route.get("route") == "module":
        try:
            module_plan = module_package_plan(
                params["module_source"], kernel, installed, params["module_packages"],
                src_version=params["src_version"], base_url=params["module_package_base_url"])
        except RouteError as exc:
            route, route_error = None, str(exc)
    if module_plan and module_plan["source"] == "prebuilt":
        # What the prebuilt path would otherwise ask in two remote tasks: which
        # packages dpkg has at their version, and which DKMS builds of TOA an
        # earlier DKMS run left (read from dpkg's database and DKMS's tree).
        mark_installed(module_plan, parse_dpkg_status(
            read_text("/var/lib/dpkg/status") or "",
            [item["package"] for item in module_plan["install"]]))
        module_plan["dkms_left"] = dkms_registered(name)
    dkms_installed, dkms = dkms_state(module, name) if params["gather_dkms"] else (None, None)
    toa["kernels"].update({
        "installed_toa": installed_toa_kernels(),
        "running_is_toa": is_toa_kernel(kernel),
        "installed": installed,
    })
    toa.update({
        "module_plan": module_plan,
        "dkms": dkms,
        "dkms_installed": dkms_installed,
        "src_recorded": recorded_src(name),
        "route": route,
        "route_error": route_error,
        "preflight": preflight_state(module, route, module_plan),
    })
    return toa


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", default="toa"),
            catalogue=dict(type="list", elements="dict", default=[]),
            strategy=dict(type="str", default="auto", choices=list(STRATEGIES)),
            package_base_url=dict(type="str", default=SEED_BASE_URL),
            package_checksums=dict(type="dict", default={}),
            allow_unverified=dict(type="bool", default=False),
            install_headers=dict(type="bool", default=False),
            allow_older_kernel=dict(type="bool", default=False),
            conflicting_modules=dict(type="list", elements="str", default=[]),
            free_mb=dict(type="dict", default={}),
            preflight_ignore=dict(type="list", elements="str", default=[]),
            signing_key=dict(type="str", default="", no_log=False),
            signing_cert=dict(type="str", default=""),
            params=dict(type="dict"),
            module_source=dict(type="str", default="auto", choices=["auto", "prebuilt", "dkms"]),
            module_packages=dict(type="dict", default={}),
            module_package_base_url=dict(type="str", default=""),
            src_version=dict(type="str", default=""),
            gather_dkms=dict(type="bool", default=True),
            ebpf_auto_releases=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    if not re.match(r"^[A-Za-z0-9_-]+$", module.params["name"]):
        module.fail_json(msg="name %r is not a kernel module name; use letters, digits, _ "
                             "and - only (for example: toa)" % module.params["name"])
    unknown = [check for check in module.params["preflight_ignore"] if check not in CHECKS]
    if unknown:
        module.fail_json(msg="preflight_ignore has %s; the checks are %s"
                             % (", ".join(unknown), ", ".join(CHECKS)))
    for key, value in module.params["free_mb"].items():
        if key not in ("boot", "root", "dkms") or not (
                value is None or re.match(r"^\d+$", str(value))):
            module.fail_json(msg="free_mb takes boot, root and dkms with whole MB (0 skips "
                                 "one), got %s=%r" % (key, value))
    toa = gather(module)
    if module.params["params"] is not None:
        package = (toa["route"] or {}).get("package") or {}
        warning = any_source_warning(
            module.params["params"],
            vendor_row=package.get("id") if package and not package.get("module_params", True)
            else None)
        if warning:
            module.warn(warning)
    module.exit_json(changed=False, ansible_facts={"toa": toa})


if __name__ == "__main__":
    main()
