# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight checks of the toa role: pure logic, no I/O.

toa_facts reads the host (free space, bootloader tools, loaded modules,
Secure Boot and lockdown) and hands the readings to problems(), which says
what stops the chosen route before anything on the host changes.  Every
message names what to change.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.toa_params import kinds_problems

# Checks a user may skip with toa_preflight_ignore.
CHECKS = ("space", "bootloader", "conflicts", "secure_boot")

# MB wanted per route when toa_preflight_free_mb leaves a key out.  A TOA
# kernel package unpacks a vmlinuz, System.map and config into /boot and
# update-initramfs adds an initrd there: about three times a ~50 MB package.
# Its modules tree lands under / (/lib/modules) next to the package cache.
# The module route installs headers and a toolchain under / and builds in
# /var/lib/dkms from a copy in /usr/src.
DEFAULT_FREE_MB = {"boot": 150, "root": 500, "dkms": 300}

EFI_GLOBAL_GUID = "8be4df61-93ca-11d2-aa0d-e98c0c1cd9b9"

# Our module's parameters: a loaded module with these is this project's.
OUR_PARAMETERS = ("ipv4_kinds", "trusted_cidrs")


def parse_lockdown(text):
    """The selected mode of /sys/kernel/security/lockdown ("[none] integrity
    confidentiality" -> "none"); None when the file is absent or unreadable."""
    if not text:
        return None
    for word in text.split():
        if word.startswith("[") and word.endswith("]"):
            return word[1:-1]
    return None


def parse_secure_boot(data):
    """State of the EFI SecureBoot variable from its efivarfs bytes (4 bytes of
    attributes, then one byte 1 or 0); None when unknown."""
    if data is None or len(data) < 5:
        return None
    value = data[4:5]
    return value == b"\x01"


def parse_sig_enforce(text):
    """/sys/module/module/parameters/sig_enforce: "Y" when the kernel loads
    only signed modules; None when the file is absent."""
    if text is None:
        return None
    return text.strip().upper() in ("Y", "1")


def signing_state(lockdown, secure_boot, sig_enforce):
    """Whether the running kernel refuses unsigned modules, and the reasons."""
    reasons = []
    if secure_boot:
        reasons.append("Secure Boot is enabled")
    if lockdown in ("integrity", "confidentiality"):
        reasons.append("kernel lockdown is %s" % lockdown)
    if sig_enforce:
        reasons.append("module.sig_enforce is on")
    return {"required": bool(reasons), "reasons": reasons}


def bootloader_kind(bins, grub_cfg):
    """Which bootloader the role can drive: grubby, grub2 or unknown.

    bins maps grubby, grub-reboot and grub-set-default to a path or None
    (grub2-* names count too); grub_cfg is the GRUB 2 configuration file found
    or None.  Returns {kind, missing}: missing names what GRUB 2 lacks.
    """
    if bins.get("grubby"):
        return {"kind": "grubby", "missing": []}
    missing = []
    if not bins.get("grub-reboot"):
        missing.append("grub-reboot")
    if not bins.get("grub-set-default"):
        missing.append("grub-set-default")
    if not grub_cfg:
        missing.append("/boot/grub/grub.cfg")
    if not missing:
        return {"kind": "grub2", "missing": []}
    return {"kind": "unknown", "missing": missing}


def is_ours(info):
    """True when a loaded module's parameters are those of this project's module."""
    params = info.get("parameters") or []
    return all(name in params for name in OUR_PARAMETERS)


def _space_problems(route, disk, free_mb):
    """Sum what the route needs per filesystem (a / holding /boot needs both)."""
    wanted = dict(DEFAULT_FREE_MB)
    for key, value in (free_mb or {}).items():
        if value is not None:
            wanted[key] = int(value)
    if route in ("package", "kernel"):
        needs = [("/boot", "boot"), ("/", "root")]
    else:
        needs = [("/var/lib/dkms", "dkms"), ("/usr/src", "dkms")]
    per_device = {}
    order = []
    for path, key in needs:
        info = disk.get(path)
        if not info or wanted.get(key, 0) <= 0:
            continue
        device = info.get("device")
        if device not in per_device:
            per_device[device] = {"free_mb": info["free_mb"], "paths": [], "need": 0,
                                  "keys": []}
            order.append(device)
        entry = per_device[device]
        entry["paths"].append(path)
        if key not in entry["keys"]:
            entry["keys"].append(key)
            entry["need"] += wanted[key]
    problems = []
    for device in order:
        entry = per_device[device]
        if entry["free_mb"] >= entry["need"]:
            continue
        problems.append(
            "The filesystem of %s has %d MB free but the %s route needs %d MB there "
            "(toa_preflight_free_mb: %s). "
            "Free space there (for example remove old kernels with apt autoremove or "
            "package-cleanup), or lower toa_preflight_free_mb, or add space to "
            "toa_preflight_ignore."
            % (" and ".join(entry["paths"]), entry["free_mb"], route, entry["need"],
               ", ".join("%s=%d" % (key, wanted[key]) for key in entry["keys"])))
    return problems


def _bootloader_problems(route, bootloader):
    if route not in ("package", "kernel") or bootloader.get("kind") != "unknown":
        return []
    return ["The %s route boots a new kernel, but the host has no bootloader the role can "
            "drive: neither grubby nor GRUB 2 (missing: %s). Install GRUB 2 or grubby, or set "
            "toa_preflight_ignore: [bootloader] and make the TOA kernel the default boot "
            "entry yourself." % (route, ", ".join(bootloader.get("missing") or []))]


def _conflict_problems(route, name, loaded, conflicting):
    problems = []
    for other in conflicting or []:
        if other == name or other not in loaded:
            continue
        problems.append(
            "The TOA-like module %s is loaded; it rewrites the same peer addresses as %s "
            "would. Unload it (modprobe -r %s) and remove its autoload, or add conflicts to "
            "toa_preflight_ignore if you know they coexist." % (other, name, other))
    info = loaded.get(name)
    if route == "module" and info and not is_ours(info):
        problems.append(
            "A %s module that is not this project's is loaded (version %s, srcversion %s, "
            "parameters: %s): loading ours needs it gone. Unload it (modprobe -r %s) and "
            "remove its autoload, or use toa_strategy: package if it is the vendor's TOA "
            "kernel, or add conflicts to toa_preflight_ignore."
            % (name, info.get("version") or "none", info.get("srcversion") or "none",
               ", ".join(info.get("parameters") or []) or "none", name))
    return problems


def _secure_boot_problems(route, security, signing_key, row_id):
    reasons = security.get("reasons") or []
    if route == "module" and security.get("required") and not signing_key:
        return ["The kernel loads only signed modules (%s), and the DKMS build of the TOA "
                "module would be unsigned. Set toa_dkms_signing_key and toa_dkms_signing_cert "
                "to a key pair on the host whose certificate is enrolled (mokutil --import), "
                "or disable Secure Boot, or add secure_boot to toa_preflight_ignore."
                % ", ".join(reasons)]
    if route in ("package", "kernel") and security.get("secure_boot"):
        return ["Secure Boot is enabled, and the TOA kernel of catalogue row %s is not signed "
                "by a key the firmware trusts: the host would not boot it, or would boot it "
                "without loading its unsigned TOA module. Disable Secure Boot in the firmware, "
                "or use toa_strategy: module with toa_dkms_signing_key, or add secure_boot to "
                "toa_preflight_ignore if that kernel is signed for your firmware."
                % (row_id or "?")]
    return []


def _signing_problems(route, signing):
    if route != "module":
        return []
    key, cert = signing.get("key") or "", signing.get("cert") or ""
    if not key and not cert:
        return []
    if not key or not cert:
        return ["Set both toa_dkms_signing_key and toa_dkms_signing_cert (one without the "
                "other signs nothing); set is %s." % ("the key" if key else "the certificate")]
    problems = []
    for label, path, present in (("toa_dkms_signing_key", key, signing.get("key_exists")),
                                 ("toa_dkms_signing_cert", cert, signing.get("cert_exists"))):
        if not path.startswith("/"):
            problems.append("%s must be an absolute path on the host, got %r." % (label, path))
        elif not present:
            problems.append("%s is %s, which does not exist on the host: copy the file there "
                            "first or correct the path." % (label, path))
    return problems


def problems(route, readings, settings):
    """What stops `route` on this host, as a list of {check, msg}.

    readings: {disk, bootloader, security, loaded, signing} as toa_facts
    gathers them.  settings: {name, free_mb, ignore, conflicting, row_id,
    params, module_source} (module_source: the module route's plan, prebuilt
    or dkms).  Signing settings and params (option kinds the kernel's TCP uses)
    are checked even when a check is ignored: they are inputs, not host state.
    """
    ignore = settings.get("ignore") or []
    found = []

    def add(check, messages):
        if check in ignore:
            return
        for msg in messages:
            found.append({"check": check, "msg": msg})

    # A prebuilt module package needs no DKMS tree: nothing to build in /usr/src or /var/lib/dkms.
    if not (route == "module" and settings.get("module_source") == "prebuilt"):
        add("space", _space_problems(route, readings.get("disk") or {}, settings.get("free_mb")))
    add("bootloader", _bootloader_problems(route, readings.get("bootloader") or {}))
    add("conflicts", _conflict_problems(route, settings.get("name") or "toa",
                                        readings.get("loaded") or {},
                                        settings.get("conflicting")))
    signing = readings.get("signing") or {}
    add("secure_boot", _secure_boot_problems(route, readings.get("security") or {},
                                             signing.get("key"), settings.get("row_id")))
    for msg in _signing_problems(route, signing):
        found.append({"check": "signing", "msg": msg})
    for msg in kinds_problems(settings.get("params") or {}):
        found.append({"check": "params", "msg": msg})
    return found
