"""The eBPF route: when a host can take it (toa_route.ebpf_route_problems),
the readings toa_facts feeds it, and toa_strategy: ebpf in select_route."""

import pytest
import toa_route
from test_toa_route import host

GOOD = {"btf": True, "cgroup2": "/sys/fs/cgroup", "bpffs": True, "lockdown": "none",
        "module_loaded": False}


def ebpf_host(name="debian12", kernel=None, **readings):
    changes = {"ebpf": dict(GOOD, **readings)}
    if kernel:
        changes["kernel"] = kernel
    return host(name, **changes)


@pytest.mark.parametrize("name", ["debian11", "debian12", "debian13", "ubuntu2204", "ubuntu2404",
                                  "debian12-arm"])
def test_hosts_from_5_10_can_take_it(name):
    assert toa_route.ebpf_route_problems(ebpf_host(name)) == []


@pytest.mark.parametrize("name", ["centos7", "ubuntu1604", "debian8"])
def test_older_kernels_cannot(name):
    problems = toa_route.ebpf_route_problems(ebpf_host(name))
    assert len(problems) == 1 and "kernel >= 5.10" in problems[0]
    assert host(name)["kernel"] in problems[0]


def test_5_9_is_refused_and_5_10_is_not():
    assert toa_route.ebpf_route_problems(ebpf_host(kernel="5.9.16-1-amd64"))
    assert toa_route.ebpf_route_problems(ebpf_host(kernel="5.10.0-1-amd64")) == []


@pytest.mark.parametrize("readings, word", [
    ({"btf": False}, "BTF"),
    ({"cgroup2": ""}, "cgroup v2"),
    ({"bpffs": False}, "bpffs"),
    ({"lockdown": "confidentiality"}, "confidentiality"),
    ({"module_loaded": True}, "module is loaded"),
])
def test_each_missing_piece_is_named(readings, word):
    problems = toa_route.ebpf_route_problems(ebpf_host(**readings))
    assert len(problems) == 1 and word in problems[0], problems


def test_integrity_lockdown_is_no_problem():
    assert toa_route.ebpf_route_problems(ebpf_host(lockdown="integrity")) == []


def test_every_problem_is_listed_at_once():
    h = ebpf_host(kernel="4.19.0-1-amd64", btf=False, cgroup2="", module_loaded=True)
    assert len(toa_route.ebpf_route_problems(h)) == 4


def test_no_readings_means_not_possible():
    assert toa_route.ebpf_route_problems(host("debian12"))


def test_wrong_architecture():
    problems = toa_route.ebpf_route_problems(ebpf_host("debian12-i686"))
    assert any("x86_64" in p for p in problems)


def test_strategy_ebpf_chooses_the_route():
    route = toa_route.select_route(ebpf_host(), [], strategy="ebpf")
    assert route["route"] == "ebpf" and route["package"] is None
    assert "6.1.0-18-amd64" in route["reason"]


def test_strategy_ebpf_refuses_with_every_reason():
    with pytest.raises(toa_route.RouteError) as err:
        toa_route.select_route(ebpf_host(btf=False, module_loaded=True), [], strategy="ebpf")
    assert "toa_strategy is ebpf" in str(err.value)
    assert "BTF" in str(err.value) and "module is loaded" in str(err.value)


def test_auto_never_takes_ebpf_yet():
    assert toa_route.select_route(ebpf_host(), [], strategy="auto")["route"] == "module"


MOUNTS = """sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0
bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0
"""
HYBRID = """tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
"""
V1 = """tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
"""


def test_mount_readings():
    unified = toa_route.parse_mounts(MOUNTS)
    assert toa_route.cgroup2_root(unified) == "/sys/fs/cgroup"
    assert toa_route.bpffs_mounted(unified)
    assert toa_route.cgroup2_root(toa_route.parse_mounts(HYBRID)) == "/sys/fs/cgroup/unified"
    assert toa_route.cgroup2_root(toa_route.parse_mounts(V1)) == ""
    assert not toa_route.bpffs_mounted(toa_route.parse_mounts(V1))
    assert toa_route.parse_mounts("") == []
