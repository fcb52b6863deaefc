# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Pure logic shared by the toa_* modules: host identification and route
# selection.  No I/O here: callers read the files and pass their text in, so
# every rule can be unit-tested on fixtures.  Python 2.7 compatible because
# the modules that import it run on CentOS 7, Debian 8 and Ubuntu 16.04.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# The vendor's download location named in the seed guide (plain http, no
# checksums published): users point toa_package_base_url at a mirror.
SEED_BASE_URL = "http://toakernel-1253438722.cossh.myqcloud.com/"

STRATEGIES = ("auto", "package", "module", "kernel", "ebpf")

# Architectures the project builds and tests for.
SUPPORTED_ARCHES = ("x86_64", "aarch64")

# Oldest kernel the out-of-tree module (kprobe based) is written for.
MODULE_MIN_KERNEL = (3, 10)

# The variables a user can set when no route fits; named in every RouteError.
HINT = ("You can set toa_strategy (one of auto, package, module, kernel, ebpf), add a catalogue "
        "row for this host with toa_catalogue_extra, give sha256 sums in "
        "toa_package_checksums, or accept unverified downloads with "
        "toa_allow_unverified_packages: true.")

_DISTRIBUTIONS = {
    "centos": "CentOS",
    "rhel": "RedHat",
    "redhat": "RedHat",
    "rocky": "Rocky",
    "almalinux": "AlmaLinux",
    "ol": "OracleLinux",
    "oracle": "OracleLinux",
    "fedora": "Fedora",
    "scientific": "Scientific",
    "amzn": "Amazon",
    "debian": "Debian",
    "ubuntu": "Ubuntu",
    "linuxmint": "Linux Mint",
    "raspbian": "Debian",
    "kali": "Kali",
    "devuan": "Devuan",
    "alpine": "Alpine",
    "arch": "Archlinux",
    "opensuse-leap": "openSUSE Leap",
    "opensuse-tumbleweed": "openSUSE Tumbleweed",
    "sles": "SLES",
    "gentoo": "Gentoo",
}

_REDHAT_IDS = ("centos", "rhel", "redhat", "rocky", "almalinux", "ol", "oracle", "fedora",
               "scientific", "amzn")
_EL_IDS = ("centos", "rhel", "redhat", "rocky", "almalinux", "ol", "oracle", "scientific")
_DEBIAN_IDS = ("debian", "ubuntu", "linuxmint", "raspbian", "kali", "devuan")

# "CentOS release 6.10 (Final)", "CentOS Linux release 7.9.2009 (Core)",
# "Red Hat Enterprise Linux Server release 6.10 (Santiago)".
_REDHAT_RELEASE_RE = re.compile(
    r"^\s*(?P<name>.+?)\s+release\s+(?P<version>[0-9][0-9.]*)\s*(?:\((?P<codename>[^)]*)\))?")

# Name at the start of /etc/redhat-release -> the os-release ID of that distribution.
_REDHAT_RELEASE_IDS = (
    ("centos", "centos"), ("red hat", "rhel"), ("rocky", "rocky"), ("almalinux", "almalinux"),
    ("oracle", "ol"), ("scientific", "scientific"), ("fedora", "fedora"),
)

_ARCHES = {
    "amd64": "x86_64",
    "x86_64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "aarch64": "aarch64",
    "i386": "i386",
    "i486": "i386",
    "i586": "i386",
    "i686": "i386",
}

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_TOA_RELEASE_RE = re.compile(r"(?:^|[-._+~])toa(?:$|[-._+~])")
_STATUS_STATE_RE = re.compile(r"^(?P<state>[A-Za-z][A-Za-z-]*)\s*(?P<notes>.*)$")


class RouteError(Exception):
    """No TOA route fits the host; the message says why and what to set."""


def parse_os_release(text):
    """Parse /etc/os-release text (KEY=value lines, shell quoting) into a dict."""
    result = {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in ("'", '"'):
            quote = value[0]
            value = value[1:-1]
            if quote == '"':
                value = re.sub(r'\\([\\"$`])', r"\1", value)
        result[key] = value
    return result


def parse_redhat_release(text):
    """Parse /etc/redhat-release ("CentOS release 6.10 (Final)").

    Returns {name, distribution, id, version, major, codename, text}, or {} when the
    text is empty or not in that format.
    """
    for raw in (text or "").splitlines():
        match = _REDHAT_RELEASE_RE.match(raw)
        if not match:
            continue
        name = match.group("name").strip()
        lowered = name.lower()
        for prefix, known in _REDHAT_RELEASE_IDS:
            if lowered.startswith(prefix):
                ident = known
                break
        else:
            ident = re.sub(r"[^a-z0-9]+", "", lowered.split()[0])
        version = match.group("version").rstrip(".")
        return {
            "name": name,
            "id": ident,
            "distribution": _DISTRIBUTIONS.get(ident, name.split()[0]),
            "version": version,
            "major": version.split(".")[0],
            "codename": (match.group("codename") or "").strip(),
            "text": raw.strip(),
        }
    return {}


def normalize_arch(machine):
    """Map uname -m / dpkg architecture names to one spelling (amd64 -> x86_64)."""
    value = (machine or "").strip().lower()
    return _ARCHES.get(value, value)


def parse_kernel_version(release):
    """Return (major, minor, patch) from a kernel release string, or None."""
    match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", release or "")
    if not match:
        return None
    return (int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def is_toa_kernel(release):
    """True when a kernel release names a TOA build ("3.16.43.toa", "...el6.toa.x86_64")."""
    return bool(_TOA_RELEASE_RE.search(release or ""))


def _family(ident, like):
    ids = [ident] + list(like)
    for candidate in ids:
        if candidate in _REDHAT_IDS:
            return "RedHat"
        if candidate in _DEBIAN_IDS:
            return "Debian"
    return "Unknown"


def _init_system(comm, family, distribution, major):
    comm = (comm or "").strip()
    if comm == "systemd":
        return "systemd"
    if comm in ("init", "upstart"):
        # /proc/1/comm says "init" for both upstart and sysvinit: upstart was
        # the init of EL6 and of Ubuntu before 15.04.
        try:
            number = int(major)
        except (TypeError, ValueError):
            number = None
        if comm == "upstart":
            return "upstart"
        if family == "RedHat" and number == 6:
            return "upstart"
        if distribution == "Ubuntu" and number is not None and number < 15:
            return "upstart"
        return "sysvinit"
    return "unknown"


def upstream_kernel_version(kernel_release, kernel_version="", version_signature=""):
    """The upstream (kernel.org) version a distribution kernel is based on, as "x.y.z".

    Debian and Ubuntu name their kernels by ABI ("3.16.0-11-amd64", "4.4.0-210-generic"),
    so uname -r does not say how recent the code is: Debian writes its package version
    into uname -v ("#1 SMP Debian 3.16.84-1 (2020-06-09)"), Ubuntu its upstream base
    into /proc/version_signature ("Ubuntu 4.4.0-210.242-generic 4.4.262").  Other
    kernels: the x.y.z of uname -r.  "" when none of them says.
    """
    for text, pattern in ((version_signature, r"^\s*Ubuntu\s+\S+\s+(\d+\.\d+(?:\.\d+)?)\s*$"),
                          (kernel_version, r"\bDebian\s+(\d+\.\d+(?:\.\d+)?)")):
        match = re.search(pattern, text or "")
        if match:
            return match.group(1)
    match = re.match(r"^\s*(\d+\.\d+\.(\d+))(-?)", kernel_release or "")
    if not match or (match.group(2) == "0" and match.group(3)):
        return ""  # "x.y.0-N-flavour" is an ABI name, not the code's version
    return match.group(1)


def identify_host(os_release_text, redhat_release_text, machine, kernel_release, init_comm,
                  kernel_version="", version_signature=""):
    """Describe a host from its raw identification texts.

    os_release_text: /etc/os-release (or "" when missing, as on CentOS 6);
    redhat_release_text: /etc/redhat-release (or ""); machine: uname -m;
    kernel_release: uname -r; init_comm: /proc/1/comm; kernel_version: uname -v
    (/proc/sys/kernel/version); version_signature: /proc/version_signature (Ubuntu).
    """
    osr = parse_os_release(os_release_text)
    rhr = parse_redhat_release(redhat_release_text)
    ident = osr.get("ID", "").strip().lower() or rhr.get("id", "")
    like = [item for item in osr.get("ID_LIKE", "").lower().split() if item]
    distribution = _DISTRIBUTIONS.get(ident)
    if distribution is None:
        distribution = rhr.get("distribution") or osr.get("NAME") or (
            ident.capitalize() if ident else "Unknown")
    version = osr.get("VERSION_ID", "").strip()
    if not version:
        version = rhr.get("version", "")
    major = version.split(".")[0] if version else ""
    family = _family(ident, like)
    if family == "Unknown" and rhr:
        family = "RedHat"
    full_version = version
    if rhr and rhr.get("version", "").startswith(version):
        full_version = rhr["version"]
    return {
        "distribution": distribution,
        "id": ident,
        "like": like,
        "version": version,
        "full_version": full_version,
        "major": major,
        "codename": osr.get("VERSION_CODENAME", "") or rhr.get("codename", ""),
        "pretty_name": osr.get("PRETTY_NAME", "") or rhr.get("text", ""),
        "family": family,
        "arch": normalize_arch(machine),
        "kernel": (kernel_release or "").strip(),
        "kernel_upstream": upstream_kernel_version(kernel_release, kernel_version,
                                                   version_signature),
        "init": _init_system(init_comm, family, distribution, major),
        "init_comm": (init_comm or "").strip(),
    }


def host_label(host):
    """'CentOS 6.10 (kernel 2.6.32-754.el6.x86_64, arch x86_64)' for messages."""
    name = host.get("distribution") or "unknown distribution"
    version = host.get("full_version") or host.get("version") or "(no version)"
    return "%s %s (kernel %s, arch %s)" % (
        name, version, host.get("kernel") or "unknown", host.get("arch") or "unknown")


def _fail(host, detail):
    raise RouteError("No TOA route for %s: %s %s" % (host_label(host), detail, HINT))


def _row_label(row):
    return row.get("id") or row.get("image") or "(unnamed row)"


def _check_row(row, host):
    if not isinstance(row, dict):
        _fail(host, "catalogue entry %r is not a mapping; fix toa_catalogue_extra." % (row,))
    missing = [key for key in ("id", "distribution", "arch", "format", "kernel", "image")
               if not row.get(key)]
    if "version" not in row and "major" not in row:
        missing.append("version or major")
    if missing:
        _fail(host, "catalogue row %s lacks %s; fix that row (toa_catalogue_extra)."
              % (_row_label(row), ", ".join(missing)))
    if row.get("format") not in ("rpm", "deb"):
        _fail(host, "catalogue row %s has format %r; use rpm or deb."
              % (_row_label(row), row.get("format")))


def match_rows(host, catalogue):
    """Rows matching the host, best first.

    A row matches on distribution (case-insensitive), arch (normalised) and
    either "version" (exact, e.g. "16.04") or "major" (e.g. "7").  Exact
    version rows beat major rows; among equals the later row wins, so a
    user's toa_catalogue_extra appended after the built-in rows overrides
    them.  A later row with the same id replaces an earlier one.
    """
    by_id = {}
    order = []
    for row in catalogue or []:
        _check_row(row, host)
        key = str(row["id"])
        if key not in by_id:
            order.append(key)
        by_id[key] = row
    scored = []
    for position, key in enumerate(order):
        row = by_id[key]
        if str(row["distribution"]).strip().lower() != host.get("distribution", "").lower():
            continue
        if normalize_arch(str(row["arch"])) != host.get("arch"):
            continue
        if "version" in row and row["version"] not in (None, ""):
            if str(row["version"]).strip() != host.get("version"):
                continue
            rank = 2
        else:
            if str(row.get("major", "")).strip() != host.get("major"):
                continue
            rank = 1
        scored.append((rank, position, row))
    scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [row for _rank, _position, row in scored]


def module_route_problem(host):
    """None when the DKMS module route can work on this host, else why not.

    Rule: Debian or RedHat family, arch x86_64 or aarch64, running kernel
    >= 3.10, and for Enterprise Linux (CentOS, RHEL, Rocky, AlmaLinux, Oracle,
    Scientific) release >= 7: EL6 backports make its release numbers no guide
    to the kernel API the module needs.  Fedora and Amazon Linux number their
    releases differently and only need the kernel check.
    """
    if host.get("family") not in ("Debian", "RedHat"):
        return "the module route supports the Debian and RedHat families only"
    if host.get("arch") not in SUPPORTED_ARCHES:
        return "the module route supports %s only" % " and ".join(SUPPORTED_ARCHES)
    version = parse_kernel_version(host.get("kernel"))
    if version is None:
        return "the running kernel release %r cannot be parsed" % (host.get("kernel"),)
    if version[:2] < MODULE_MIN_KERNEL:
        return "the module route needs kernel >= %d.%d" % MODULE_MIN_KERNEL
    if host.get("family") == "RedHat" and host.get("id") in _EL_IDS:
        try:
            if int(host.get("major")) < 7:
                return "the module route needs an Enterprise Linux release >= 7"
        except (TypeError, ValueError):
            return "the Enterprise Linux release %r cannot be parsed" % (host.get("version"),)
    return None


# The eBPF route (roles/toa/files/toa-bpf): header-option helpers and the
# sockops callbacks with the segment are 5.10; getpeername hooks 5.8.
EBPF_MIN_KERNEL = (5, 10)
# The object is compiled for little-endian BPF (the byte order of x86_64 and
# of aarch64 as Debian and Ubuntu run it).
EBPF_ARCHES = ("x86_64", "aarch64")


def parse_mounts(text):
    """/proc/self/mounts -> list of (mount point, filesystem type)."""
    out = []
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) >= 3:
            out.append((fields[1].replace("\\040", " "), fields[2]))
    return out


def cgroup2_root(mounts):
    """Where the cgroup2 hierarchy is mounted ("" when nowhere): /sys/fs/cgroup on
    a unified host, /sys/fs/cgroup/unified on a hybrid one."""
    points = [point for point, fstype in mounts if fstype == "cgroup2"]
    for preferred in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if preferred in points:
            return preferred
    return points[0] if points else ""


def bpffs_mounted(mounts, path="/sys/fs/bpf"):
    return any(point == path and fstype == "bpf" for point, fstype in mounts)


def ebpf_route_problems(host):
    """[] when the eBPF route can work on this host, else every reason why not.

    Reads host["ebpf"], which toa_facts fills from the host: btf (the kernel
    has /sys/kernel/btf/vmlinux: the verifier needs it for socket storage),
    cgroup2 (the path of the cgroup2 hierarchy's root, "" when there is none),
    bpffs (bpffs mounted at /sys/fs/bpf, or false when it is not and cannot
    be), lockdown (the active mode of /sys/kernel/security/lockdown, "" when
    the kernel has none), module_loaded (a TOA kernel module is loaded: both
    would rewrite the same peers).
    """
    ebpf = host.get("ebpf") or {}
    out = []
    if host.get("arch") not in EBPF_ARCHES:
        out.append("the eBPF route's object is built for %s only" % " and ".join(EBPF_ARCHES))
    version = parse_kernel_version(host.get("kernel"))
    if version is None:
        out.append("the running kernel release %r cannot be parsed" % (host.get("kernel"),))
    elif version[:2] < EBPF_MIN_KERNEL:
        out.append("the eBPF route needs kernel >= %d.%d (TCP header-option access from sockops), "
                   "this host runs %s" % (EBPF_MIN_KERNEL + (host.get("kernel"),)))
    if not ebpf.get("btf"):
        out.append("the kernel has no BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF): "
                   "the verifier needs it for socket storage")
    if not ebpf.get("cgroup2"):
        out.append("no cgroup v2 hierarchy is mounted (cgroup v1 only): the programs attach to "
                   "the cgroup2 root")
    if not ebpf.get("bpffs", True):
        out.append("bpffs is not available at /sys/fs/bpf (the programs are pinned there)")
    if ebpf.get("lockdown") == "confidentiality":
        out.append("the kernel is locked down in confidentiality mode, where loading these "
                   "programs is not proven (integrity mode is)")
    if ebpf.get("module_loaded"):
        out.append("the TOA kernel module is loaded and would rewrite the same peers: remove it "
                   "first (playbooks/remove.yml)")
    return out


def kernel_route_problem(host):
    """None when a patched kernel can be built from source for this host.

    Rule: Debian or RedHat family (their kernel packaging: rpmbuild or
    make bindeb-pkg) on x86_64 or aarch64.
    """
    if host.get("family") not in ("Debian", "RedHat"):
        return "the kernel route supports the Debian and RedHat families only"
    if host.get("arch") not in SUPPORTED_ARCHES:
        return "the kernel route supports %s only" % " and ".join(SUPPORTED_ARCHES)
    return None


def join_url(base_url, name):
    """Join a base URL (http, https, file://) and a file name with one slash."""
    if "://" in name:
        return name
    if not base_url:
        return name
    return base_url.rstrip("/") + "/" + name.lstrip("/")


def normalize_sha256(value):
    """Lower-case hex of a sha256 ("sha256:" prefix allowed), None when empty.

    Raises ValueError when the value is not 64 hex digits.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if text.lower().startswith("sha256:"):
        text = text[len("sha256:"):]
    text = text.strip().lower()
    if not _SHA256_RE.match(text):
        raise ValueError(text)
    return text


def _version_tuple(text):
    return tuple(int(part) for part in text.split("."))


_RPM_KERNEL_RE = re.compile(r"^\s*(\d+(?:\.\d+)*)-(\d+(?:\.\d+)*)")


def kernel_is_older(host, row):
    """Whether the row's kernel is older code than the kernel the host runs.

    rpm rows (EL kernels keep the upstream version and count their own
    releases): version, then the numeric start of the release, so
    3.10.0-693.el7 < 3.10.0-693.21.1.el7 < 3.10.0-1160.el7.  deb rows: the
    upstream version of each (see upstream_kernel_version), so 4.4.87.toa is
    older than Ubuntu's 4.4.0-210-generic (4.4.262).  True or False; None when
    a version cannot be read.
    """
    target = str(row.get("kernel") or "")
    running = host.get("kernel") or ""
    if target == running:
        return False
    if row.get("format") == "rpm":
        want, have = _RPM_KERNEL_RE.match(target), _RPM_KERNEL_RE.match(running)
        if not want or not have:
            return None
        return ((_version_tuple(want.group(1)), _version_tuple(want.group(2)))
                < (_version_tuple(have.group(1)), _version_tuple(have.group(2))))
    want, have = upstream_kernel_version(target), host.get("kernel_upstream") or ""
    if not want or not have:
        return None
    return _version_tuple(want) < _version_tuple(have)


def _package(host, row, base_url, checksums, install_headers):
    """The package plan of a catalogue row; "unverified" names the files without a sha256."""
    if not base_url and "://" not in str(row["image"]):
        _fail(host, "toa_package_base_url is empty and catalogue row %s names only a file; "
              "set toa_package_base_url to the vendor's URL or your mirror (http, https or "
              "file://)." % _row_label(row))
    names = [("image", str(row["image"]))]
    if install_headers and row.get("headers"):
        names.append(("headers", str(row["headers"])))
    row_sums = row.get("sha256") or {}
    if not isinstance(row_sums, dict):
        _fail(host, "catalogue row %s has sha256 %r; it must map file names to sha256 hex."
              % (_row_label(row), row_sums))
    files = []
    unverified = []
    for kind, location in names:
        name = location.rstrip("/").rsplit("/", 1)[-1]
        for source, table in (("toa_package_checksums", checksums or {}),
                              ("the catalogue row %s" % _row_label(row), row_sums)):
            raw = table.get(name)
            try:
                digest = normalize_sha256(raw)
            except ValueError:
                _fail(host, "the sha256 for %s in %s is %r, not 64 hex digits; correct it."
                      % (name, source, raw))
            if digest:
                break
        if not digest:
            unverified.append(name)
        files.append({
            "name": name,
            "url": join_url(base_url, location),
            "sha256": digest,
            "kind": kind,
        })
    return {
        "id": row["id"],
        "kernel": str(row["kernel"]),
        "format": row["format"],
        "files": files,
        "verified": not unverified,
        "unverified": unverified,
        "running": str(row["kernel"]) == host.get("kernel"),
        "headers_available": bool(row.get("headers")),
        "module_params": bool(row.get("module_params", True)),
    }


def _package_blockers(host, row, package, allow_unverified, allow_older_kernel):
    """Why the package route must not install this row, each with what to set; [] when it may."""
    found = []
    unverified = package["unverified"]
    if unverified and not allow_unverified:
        found.append("no sha256 is known for %s (catalogue row %s); the vendor publishes none, "
                     "so set toa_package_checksums: {%s: <sha256>} after verifying the file "
                     "yourself, or set toa_allow_unverified_packages: true."
                     % (", ".join(unverified), _row_label(row),
                        ", ".join("'%s'" % name for name in unverified)))
    if not package["running"] and not allow_older_kernel and kernel_is_older(host, row):
        upstream = host.get("kernel_upstream")
        found.append("catalogue row %s would install kernel %s, older than the running kernel "
                     "%s%s: the host would lose every fix made between the two, security fixes "
                     "among them, for as long as it boots the TOA kernel. Set "
                     "toa_allow_older_kernel: true to install it anyway."
                     % (_row_label(row), row["kernel"], host.get("kernel"),
                        " (upstream %s)" % upstream if upstream and row.get("format") == "deb"
                        else ""))
    return found


def _module_route(strategy, reason):
    return {"route": "module", "strategy": strategy, "package": None, "reason": reason}


def _ebpf_route(strategy, reason):
    return {"route": "ebpf", "strategy": strategy, "package": None, "reason": reason}


def ebpf_auto_release(host, releases):
    """The entry of releases (toa_ebpf_auto_releases: "<os-release ID> <VERSION_ID>",
    "debian 12", "ubuntu 24.04"; on the RedHat family the major release too,
    "rocky 9") naming this host's release, or None."""
    ident = (host.get("id") or "").lower()
    names = set(["%s %s" % (ident, host.get("version"))])
    if host.get("family") == "RedHat" and host.get("major"):
        names.add("%s %s" % (ident, host["major"]))   # rocky 9 for 9.3; not ubuntu 24 for 24.04
    for entry in releases or ():
        if " ".join(str(entry).lower().split()) in names:
            return entry
    return None


def _auto_ebpf(host, releases, module_present, module_wanted, ebpf_present):
    """auto's choice between the eBPF route and the module route on a host
    that has no usable catalogue row: (route or None, why not the eBPF route)."""
    problems = ebpf_route_problems(host)
    if ebpf_present:
        if problems:
            _fail(host, "the eBPF route is installed on this host but can no longer serve it: "
                        "%s. Fix that, or remove the route (playbooks/remove.yml) and run "
                        "again." % "; ".join(problems))
        return _ebpf_route("auto", "the eBPF route is installed on this host; auto keeps it "
                                   "(kernel %s, no module)" % host.get("kernel")), None
    entry = ebpf_auto_release(host, releases)
    if entry is None:
        return None, None
    if module_wanted:
        return None, ("the eBPF route, proven on %s, is not taken because %s"
                      % (entry, module_wanted))
    if module_present:
        return None, ("the eBPF route, proven on %s, is not taken because the module route is "
                      "already on this host (%s); auto keeps it (toa_strategy: ebpf after "
                      "playbooks/remove.yml switches)" % (entry, module_present))
    if problems:
        return None, ("the eBPF route, proven on %s, cannot serve this host: %s"
                      % (entry, "; ".join(problems)))
    return _ebpf_route("auto", "no catalogue row matches %s and the eBPF route is proven on "
                               "this release (toa_ebpf_auto_releases: %s); attaching the TOA "
                               "eBPF programs to the cgroup2 root (kernel %s, no module, no "
                               "compiler)" % (host_label(host), entry, host.get("kernel"))), None


def select_route(host, catalogue, strategy="auto", base_url=SEED_BASE_URL, checksums=None,
                 allow_unverified=False, install_headers=False, allow_older_kernel=False,
                 ebpf_auto_releases=(), module_present="", module_wanted="",
                 ebpf_present=False):
    """Choose how to give this host a TOA module.

    Returns {route, reason, strategy, package}; package is None unless the
    route is "package".  Raises RouteError when no route is possible or an
    explicit strategy cannot be honoured.

    auto: package when a catalogue row matches (see match_rows) and may be
    installed (a sha256 for each file, or allow_unverified; a kernel not older
    than the running one, or allow_older_kernel); else module when
    module_route_problem() is None; else kernel when kernel_route_problem() is
    None; else RouteError.  A matching row that may not be installed is never
    passed over for the kernel route: the error says what to set.

    auto and the eBPF route: with no catalogue row, auto takes the eBPF route
    when it is installed (ebpf_present), or when the host's release is in
    ebpf_auto_releases (releases where the route passed what the module route
    passes: docs/ebpf.md), ebpf_route_problems() is empty, the module route is
    not already on the host (module_present: what was found, "" for nothing)
    and the user did not ask for the module (module_wanted: why, or "").
    """
    strategy = (strategy or "auto").strip().lower()
    if strategy not in STRATEGIES:
        _fail(host, "toa_strategy %r is not valid; use one of %s."
              % (strategy, ", ".join(STRATEGIES)))
    if checksums is not None and not isinstance(checksums, dict):
        _fail(host, "toa_package_checksums must map file names to sha256 hex, got %r."
              % (checksums,))
    if ebpf_present and strategy in ("package", "module", "kernel"):
        _fail(host, "toa_strategy is %s but the eBPF route is installed on this host, and both "
                    "would rewrite the same peers: remove it first (playbooks/remove.yml), or "
                    "set toa_strategy: auto or ebpf to keep it." % strategy)
    rows = match_rows(host, catalogue)
    label = host_label(host)
    module_problem = module_route_problem(host)

    if strategy == "package" and not rows:
        _fail(host, "toa_strategy is package but no catalogue row matches %s %s on %s."
              % (host.get("distribution"), host.get("version"), host.get("arch")))
    if strategy in ("package", "auto") and rows:
        row = rows[0]
        package = _package(host, row, base_url, checksums, install_headers)
        blockers = _package_blockers(host, row, package, allow_unverified, allow_older_kernel)
        if not blockers:
            why = ("toa_strategy is package; catalogue row %s provides TOA kernel %s"
                   if strategy == "package" else
                   "catalogue row %s provides a prebuilt TOA kernel %s for this host")
            return {"route": "package", "strategy": strategy, "package": package,
                    "reason": why % (_row_label(row), row["kernel"])}
        if strategy == "package":
            _fail(host, " ".join(blockers))
        if module_problem:
            _fail(host, "%s The module route cannot serve this host instead: %s."
                  % (" ".join(blockers), module_problem))
        return _module_route(strategy, (
            "not the package route of catalogue row %s: %s Building the TOA module with DKMS "
            "for the running kernel instead (toa_strategy: package would refuse)."
            % (_row_label(row), " ".join(blockers))))
    if strategy == "module":
        if module_problem:
            _fail(host, "toa_strategy is module but %s." % module_problem)
        return _module_route(strategy, "toa_strategy is module; building the TOA module with "
                                       "DKMS for kernel %s" % host.get("kernel"))
    if strategy == "ebpf":
        problems = ebpf_route_problems(host)
        if module_present and not (host.get("ebpf") or {}).get("module_loaded"):
            # installed or set to autoload: it would load at the next boot beside the programs
            problems.append("the module route is on this host (%s) and would load TOA beside "
                            "the programs: remove it first (playbooks/remove.yml)" % module_present)
        if problems:
            _fail(host, "toa_strategy is ebpf but %s." % "; ".join(problems))
        return _ebpf_route(strategy, "toa_strategy is ebpf; attaching the TOA eBPF programs to "
                                     "the cgroup2 root (kernel %s, no module)" % host.get("kernel"))
    kernel_problem = kernel_route_problem(host)
    if strategy == "kernel":
        if kernel_problem:
            _fail(host, "toa_strategy is kernel but %s." % kernel_problem)
        return {"route": "kernel", "strategy": strategy, "package": None,
                "reason": "toa_strategy is kernel; building a patched %s kernel from source"
                          % host.get("distribution")}
    # auto with no catalogue row (a row always ended in the package branch above)
    route, not_ebpf = _auto_ebpf(host, ebpf_auto_releases, module_present, module_wanted,
                                 ebpf_present)
    if route:
        return route
    if not module_problem:
        return _module_route(strategy, "no catalogue row matches %s; building the TOA module "
                                       "with DKMS for the running kernel%s"
                             % (label, "; %s" % not_ebpf if not_ebpf else ""))
    if not kernel_problem:
        return {"route": "kernel", "strategy": strategy, "package": None,
                "reason": "no catalogue row matches %s and %s; building a patched kernel "
                          "from source" % (label, module_problem)}
    _fail(host, "no catalogue row matches, %s, and %s."
          % (module_problem, kernel_problem))


# The module route's two ways to the module (toa_module_source): a package
# prebuilt for the kernel release by playbooks/build.yml, or DKMS on the host.
MODULE_SOURCES = ("auto", "prebuilt", "dkms")
_DEB_FILE_RE = re.compile(r"^([a-z0-9][a-z0-9+.-]*)_([^_/]+)_([a-z0-9-]+)\.deb$")


def _prebuilt_entry(release, entry, src_version, base_url):
    """(install item, None) for a usable toa_module_packages entry, else (None, why not)."""
    if not isinstance(entry, dict):
        return None, "its entry is not a dict"
    path = str(entry.get("file") or "").strip()
    if not path or ".." in path.split("/"):
        return None, "its entry has no file (a path under toa_module_package_base_url)"
    name = path.rsplit("/", 1)[-1]
    match = _DEB_FILE_RE.match(name)
    if not match:
        return None, "%s is not a .deb file name (package_version_arch.deb)" % name
    try:
        sha256 = normalize_sha256(entry.get("sha256"))
    except ValueError:
        return None, "its sha256 is not 64 hex digits"
    if not sha256:
        return None, "its entry has no sha256"
    version = str(entry.get("version") or "").strip()
    if not version:
        return None, "its entry has no module version"
    if src_version and version != src_version:
        return None, ("it holds TOA %s and this role installs %s (rebuild with playbooks/build.yml)"
                      % (version, src_version))
    return {"kernel": release, "name": name, "url": join_url(base_url, path), "sha256": sha256,
            "version": version, "package": str(entry.get("package") or match.group(1)),
            "package_version": str(entry.get("package_version") or match.group(2).replace("%3a", ":"))}, None


def module_package_plan(source, running, installed, packages, src_version="", base_url=""):
    """Prebuilt packages or DKMS for the module route (pure; the caller read the kernels).

    source: auto (prebuilt when the running kernel has a usable package, else
    DKMS), prebuilt (a RouteError instead of DKMS) or dkms.  packages:
    toa_module_packages, kernel release -> {file, sha256, version[, package,
    package_version]}; an entry is usable with a file, a sha256 and the role's
    module version.  With prebuilt, every installed kernel that has a usable
    entry gets its package too (a reboot into it keeps TOA); kernels without one
    are listed in "without".

    Returns {source, reason, install (running kernel first), without, unusable}.
    """
    if source not in MODULE_SOURCES:
        raise RouteError("toa_module_source %r is not one of %s" % (source, ", ".join(MODULE_SOURCES)))
    packages = packages or {}
    kernels = [running] + sorted(set(k for k in (installed or []) if k and k != running))
    plan = {"source": "dkms", "reason": "", "install": [], "without": [], "unusable": {}}
    if source == "dkms":
        plan["reason"] = "toa_module_source is dkms: building TOA on the host under DKMS"
        return plan
    usable = {}
    for release in kernels:
        if release not in packages:
            continue
        if not base_url:
            plan["unusable"][release] = "toa_module_package_base_url is empty"
            continue
        item, why = _prebuilt_entry(release, packages[release], src_version, base_url)
        if item:
            usable[release] = item
        else:
            plan["unusable"][release] = why
    if running in usable:
        plan["source"] = "prebuilt"
        plan["install"] = [usable[k] for k in kernels if k in usable]
        plan["without"] = [k for k in kernels if k not in usable]
        plan["reason"] = ("installing the prebuilt TOA module package for kernel%s %s; no compiler, "
                          "headers or DKMS on the host"
                          % ("s" if len(plan["install"]) > 1 else "",
                             ", ".join(i["kernel"] for i in plan["install"])))
        return plan
    if running in plan["unusable"]:
        why = "the prebuilt package for the running kernel %s cannot be used: %s" % (
            running, plan["unusable"][running])
    elif packages:
        why = "toa_module_packages has no package for the running kernel %s (it has %s)" % (
            running, ", ".join(sorted(packages)))
    else:
        why = "toa_module_packages is empty"
    if source == "prebuilt":
        raise RouteError(
            "toa_module_source is prebuilt but %s. Build it once for the fleet: "
            "ansible-playbook playbooks/build.yml -e '{\"toa_build_kmod_releases\": [\"%s\"]}' and "
            "give the fleet the toa_module_packages it prints, or set toa_module_source: auto to "
            "build TOA on this host under DKMS." % (why, running))
    plan["reason"] = "%s: building TOA on the host under DKMS" % why
    return plan


def _strip_epoch(version):
    return re.sub(r"^[0-9]+:", "", str(version or "").strip())


def parse_dpkg_status(text, packages):
    """{package: version} of the named packages dpkg has "install ok installed".

    text: /var/lib/dpkg/status (stanzas separated by blank lines; what
    dpkg-query reads).  Versions lose their epoch ("1:2.0" -> "2.0"), as the
    build's file names do.  Packages not installed, half installed, removed
    with their configuration kept, or absent are left out.
    """
    wanted = set(packages or [])
    found = {}
    if not wanted:
        return found
    for stanza in re.split(r"\n[ \t]*\n", text or ""):
        fields = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue  # continuation lines (descriptions, conffiles)
            key, _sep, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        name = fields.get("package")
        if name in wanted and fields.get("status") == "install ok installed" and fields.get("version"):
            found[name] = _strip_epoch(fields["version"])
    return found


def mark_installed(plan, installed_versions):
    """Each install item of a module plan gets "installed": dpkg has its package at its version."""
    for item in (plan or {}).get("install") or []:
        have = (installed_versions or {}).get(item["package"])
        item["installed"] = have is not None and have == _strip_epoch(item["package_version"])
    return plan


def parse_dkms_status(text):
    """Parse `dkms status` output of dkms 2.2, 2.8 and 3.x into a list of dicts.

    Lines look like "toa, 1.0.0, 4.4.0-210-generic, x86_64: installed" (2.x),
    "toa/1.0.0, 6.1.0-13-amd64, x86_64: installed" (3.x) or "toa/1.0.0: added";
    anything after the state word, such as "(original_module exists)", is kept
    in "notes".  Unparseable lines (warnings, errors) are skipped.
    Each entry: {module, version, kernel, arch, state, notes}; kernel and arch
    are None for "added" entries.
    """
    entries = []
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or ":" not in line:
            continue
        head, tail = _split_status(line)
        match = _STATUS_STATE_RE.match(tail.strip())
        if not match:
            continue
        parts = [part.strip() for part in head.split(",")]
        if "/" in parts[0]:
            module, version = parts[0].split("/", 1)
            rest = parts[1:]
        else:
            if len(parts) < 2:
                continue
            module, version = parts[0], parts[1]
            rest = parts[2:]
        if not module or not version or " " in module:
            continue
        kernel = rest[0] if rest else None
        arch = rest[1] if len(rest) > 1 else None
        entries.append({
            "module": module,
            "version": version,
            "kernel": kernel or None,
            "arch": arch or None,
            "state": match.group("state").lower(),
            "notes": match.group("notes").strip(),
        })
    return entries


def _split_status(line):
    # "toa, 1.0, 3.10.0-957.el7.x86_64, x86_64: installed-weak from 3.10.0-..."
    # may carry further colons in the notes: split at the first ": ".
    index = line.find(": ")
    if index < 0:
        index = line.find(":")
        return line[:index], line[index + 1:]
    return line[:index], line[index + 2:]
