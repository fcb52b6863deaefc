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


def auto(h, **kw):
    return toa_route.select_route(h, [], strategy="auto", **kw)


def test_auto_takes_ebpf_only_on_the_listed_releases():
    assert auto(ebpf_host())["route"] == "module"
    route = auto(ebpf_host(), ebpf_auto_releases=["debian 12"])
    assert route["route"] == "ebpf" and route["strategy"] == "auto" and route["package"] is None
    assert "debian 12" in route["reason"] and "6.1.0-18-amd64" in route["reason"]
    assert auto(ebpf_host("debian11"), ebpf_auto_releases=["debian 12"])["route"] == "module"
    assert auto(ebpf_host("ubuntu2404"), ebpf_auto_releases=["debian 12"])["route"] == "module"


@pytest.mark.parametrize("name, entry", [
    ("debian12", "Debian 12"), ("debian12", " debian   12 "), ("ubuntu2404", "ubuntu 24.04"),
    ("debian13", "debian 13"), ("debian12-arm", "debian 12"),
])
def test_release_entries_match_id_and_version(name, entry):
    assert auto(ebpf_host(name), ebpf_auto_releases=[entry])["route"] == "ebpf"


@pytest.mark.parametrize("name, entry", [
    ("ubuntu2404", "ubuntu 24"), ("ubuntu2404", "ubuntu 24.10"), ("debian12", "ubuntu 12"),
    ("debian12", "debian"), ("debian12", "12"),
])
def test_release_entries_that_do_not_match(name, entry):
    assert auto(ebpf_host(name), ebpf_auto_releases=[entry])["route"] == "module"


def test_auto_keeps_a_host_that_has_the_module():
    route = auto(ebpf_host(), ebpf_auto_releases=["debian 12"],
                 module_present="autoload is configured (/etc/modules-load.d/toa.conf)")
    assert route["route"] == "module"
    assert "already on this host" in route["reason"]
    assert "/etc/modules-load.d/toa.conf" in route["reason"]


def test_auto_keeps_the_module_the_user_asked_for():
    route = auto(ebpf_host(), ebpf_auto_releases=["debian 12"],
                 module_wanted="toa_module_source is prebuilt")
    assert route["route"] == "module" and "toa_module_source is prebuilt" in route["reason"]


def test_auto_says_why_a_listed_release_cannot_take_ebpf():
    route = auto(ebpf_host(btf=False), ebpf_auto_releases=["debian 12"])
    assert route["route"] == "module" and "BTF" in route["reason"]
    # the module route's own check is untouched: a loaded module is not an
    # eBPF problem that stops the module route
    route = auto(ebpf_host(module_loaded=True), ebpf_auto_releases=["debian 12"])
    assert route["route"] == "module"


def test_auto_keeps_an_installed_ebpf_route_on_any_release():
    route = auto(ebpf_host("ubuntu2204"), ebpf_present=True)
    assert route["route"] == "ebpf" and "installed" in route["reason"]


def test_auto_refuses_an_installed_ebpf_route_that_cannot_work_any_more():
    with pytest.raises(toa_route.RouteError) as err:
        auto(ebpf_host(cgroup2=""), ebpf_present=True, ebpf_auto_releases=["debian 12"])
    assert "cgroup v2" in str(err.value) and "remove.yml" in str(err.value)


def test_a_usable_catalogue_package_still_wins():
    name = "linux-image-6.1.999-toa_1_amd64.deb"
    row = {"id": "t-debian12", "distribution": "debian", "major": "12", "arch": "x86_64",
           "kernel": "6.1.999-toa", "format": "deb", "image": name, "headers": None,
           "sha256": {name: "a" * 64}, "module_params": True}
    route = toa_route.select_route(ebpf_host(), [row], strategy="auto",
                                   ebpf_auto_releases=["debian 12"])
    assert route["route"] == "package"


def test_explicit_strategies_ignore_the_release_list():
    h = ebpf_host()
    assert toa_route.select_route(h, [], strategy="module",
                                  ebpf_auto_releases=["debian 12"])["route"] == "module"


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


def test_strategy_ebpf_refuses_a_host_with_the_module_installed_but_not_loaded():
    with pytest.raises(toa_route.RouteError) as err:
        toa_route.select_route(ebpf_host(), [], strategy="ebpf",
                               module_present="autoload is configured (/etc/modules-load.d/toa.conf)")
    assert "remove it first" in str(err.value) and "modules-load.d" in str(err.value)
    # a loaded module is named once, by the route's own check
    with pytest.raises(toa_route.RouteError) as err:
        toa_route.select_route(ebpf_host(module_loaded=True), [], strategy="ebpf",
                               module_present="the toa module is loaded")
    assert str(err.value).count("remove it first") == 1


@pytest.mark.parametrize("strategy", ["module", "kernel", "package"])
def test_other_routes_refuse_a_host_with_the_ebpf_route_installed(strategy):
    with pytest.raises(toa_route.RouteError) as err:
        toa_route.select_route(ebpf_host(), [], strategy=strategy, ebpf_present=True)
    assert "the eBPF route is installed" in str(err.value)
    assert "playbooks/remove.yml" in str(err.value)
