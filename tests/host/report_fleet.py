"""A generated fleet for the report tests and bench/report_page.py.

generate(count, seed) returns (hosts, records): for every host what it is
meant to show in the report (Host: status, route, OS label, the lost-address
counters set above 0), and its record shaped like roles/toa/tasks/report.yml
registers it (toa_facts and toa_probe results). The records are built from the
intent, so a test compares what the page shows with `hosts`, not with what
the filter computed. The same seed gives the same fleet.
"""

import collections
import random

from toa_stats import LOST, summarise  # what toa_facts puts in toa.counters

Host = collections.namedtuple("Host", "name sort_key status route os lost")

# (distribution, version, arch, running kernel, the report's OS cell, weight)
OSES = (
    ("Debian", "12", "x86_64", "6.1.0-28-amd64", "Debian 12", 40),
    ("Debian", "11", "x86_64", "5.10.0-33-amd64", "Debian 11", 12),
    ("Ubuntu", "22.04", "x86_64", "5.15.0-125-generic", "Ubuntu 22.04", 20),
    ("Ubuntu", "24.04", "aarch64", "6.8.0-45-generic", "Ubuntu 24.04 (aarch64)", 10),
    ("Ubuntu", "16.04", "x86_64", "4.4.0-210-generic", "Ubuntu 16.04", 6),
    ("CentOS", "7.9.2009", "x86_64", "3.10.0-693.el7.centos.toa", "CentOS 7.9.2009", 12),
)

# Status a generated host is meant to have, and how often.
STATUS_WEIGHTS = (
    ("working", 70), ("losing", 6), ("reload_pending", 4), ("probe_failed", 3), ("probe_error", 3),
    ("not_probed", 3), ("not_loaded", 3), ("not_installed", 4), ("no_facts", 4),
)

SITES = ("ams", "fra", "nyc", "sgp")
ROLES = ("api", "db", "edge", "web")

PROXY = ("192.0.2.2", 40303)
CLIENT = ("203.0.113.7", 4242)


def _stats(rng, lost):
    """/proc/net/toa_stats of toa.ko 2.0: every lost-address counter printed, `lost` above 0."""
    stats = {"accepted": rng.randrange(10 ** 6), "rejected_untrusted": rng.randrange(50),
             "rejected_malformed": rng.randrange(3), "getname_rewrites": rng.randrange(10 ** 7),
             "entries_live": rng.randrange(5000), "rejected_multiple": 0, "rejected_syn_mismatch": 0,
             "fastopen_without_toa": 0, "hooks_ftrace": 1, "entries_limit": 65536}
    stats.update(dict.fromkeys(LOST, 0))
    stats.update(lost)
    return stats


def _facts(os_row, route, loaded, available, stats, srcversions=("5F2A19C0", "5F2A19C0")):
    distribution, version, arch, kernel, _label, _weight = os_row
    package = None
    if route == "package":
        package = {"id": "centos7-x86_64", "kernel": kernel, "format": "rpm"}
    toa = {
        "host": {"distribution": distribution, "id": distribution.lower(), "version": version,
                 "full_version": version, "arch": arch, "kernel": kernel},
        "module": {"loaded": loaded, "builtin": False, "available": available,
                   "version": "2.0.0" if loaded and route == "module" else None,
                   "srcversion": srcversions[0] if loaded else None, "file_srcversion": srcversions[1],
                   "reload_pending": bool(loaded and srcversions[0] != srcversions[1])},
        "stats": stats,
        "counters": summarise(stats),
        "autoload": {"enabled": loaded, "methods": ["modules-load"] if loaded else [], "problems": []},
        "kernels": {"running": kernel, "running_is_toa": route in ("package", "kernel")},
        "route": None if route == "none" else {"route": route, "package": package},
        "route_error": "no TOA route for this host" if route == "none" else None,
    }
    return {"changed": False, "failed": False, "ansible_facts": {"toa": toa}}


def _probe(state):
    if state == "error":
        return {"changed": False, "failed": False, "failed_when_result": False,
                "msg": "/dev/net/tun does not exist: load it with `modprobe tun`"}
    peer = CLIENT if state == "rewritten" else PROXY
    return {"changed": False, "failed": False, "peer_address": peer[0], "peer_port": peer[1],
            "peer_state": state, "rewritten": state == "rewritten", "matches": True}


def _route(rng, os_row, status):
    if os_row[0] == "CentOS":
        return "package"  # the vendor's kernel: no toa_stats, so never "losing"
    if status == "not_installed" and rng.random() < 0.5:
        return "none"
    return "kernel" if rng.random() < 0.15 else "module"


def _host(rng, name, sort_key, status, lost_names):
    """One host meant to have `status`: (Host, record)."""
    if status == "no_facts":
        record = {"host": name, "facts": {"unreachable": True, "msg": "ssh: connect to host %s port 22: "
                                          "Connection timed out" % name}, "probe": None}
        return Host(name, sort_key, status, "unknown", "unknown", {}), record
    oses = [row for row in OSES if status != "losing" or row[0] != "CentOS"]
    os_row = rng.choices(oses, weights=[row[-1] for row in oses])[0]
    route = _route(rng, os_row, status)
    lost = {}
    if status == "losing":
        lost = dict((counter, rng.randrange(1, 5000)) for counter in lost_names)
    loaded = status not in ("not_loaded", "not_installed")
    # no /proc/net/toa_stats without the module, nor from the vendor's module
    stats = _stats(rng, lost) if loaded and route != "package" else {}
    srcversions = ("5F2A19C0", "7B31D0E4") if status == "reload_pending" else ("5F2A19C0", "5F2A19C0")
    facts = _facts(os_row, route, loaded, status != "not_installed", stats, srcversions)
    probe = {"working": "rewritten", "losing": "rewritten", "reload_pending": "rewritten",
             "probe_error": "error"}.get(status, "unrewritten")
    record = {"host": name, "facts": facts, "probe": _probe(probe), "probe_skipped": status == "not_probed"}
    return Host(name, sort_key, status, route, os_row[4], lost), record


def generate(count=1000, seed=20261130):
    """`count` hosts named like fra-web-17 (no zero padding), in a shuffled order."""
    rng = random.Random(seed)
    statuses = rng.choices([status for status, _w in STATUS_WEIGHTS],
                           weights=[weight for _s, weight in STATUS_WEIGHTS], k=count)
    hosts, records = [], []
    numbers = collections.Counter()
    losing = 0
    for status in statuses:
        site, role = rng.choice(SITES), rng.choice(ROLES)
        numbers[site, role] += 1
        number = numbers[site, role]
        # every lost-address counter in turn, now and then two at once
        lost_names = []
        if status == "losing":
            lost_names = [LOST[losing % len(LOST)]]
            if losing % 3 == 2:
                lost_names.append(LOST[(losing + 5) % len(LOST)])
            losing += 1
        host, record = _host(rng, "%s-%s-%d" % (site, role, number), (site, role, number), status,
                             lost_names)
        hosts.append(host)
        records.append(record)
    order = list(range(count))
    rng.shuffle(order)
    return hosts, [records[index] for index in order]
