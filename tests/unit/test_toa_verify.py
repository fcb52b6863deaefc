"""toa_verify: each check on realistic state dicts (a failure says what and what to do, a
healthy host passes), the probe plan, and the whole module on a fake host tree with the probe's
child replaced by a fake outcome."""

import copy

import pytest
import toa_verify as tv
from conftest import debian12_host, write
from toa_stats import summarise

HOST = "web1"
STATS_OK = {"accepted": 120, "getname_rewrites": 118, "entries_dropped_full": 0, "entries_nomem": 0,
            "syn_stash_dropped_full": 0, "missed_destroy": 0, "global_missed": 0,
            "hooks_ftrace": 1, "rejected_multiple": 2, "rejected_untrusted": 0}


def module_host(**module):
    """A healthy host of the module route, as toa_state.read_state returns it."""
    state = {
        "host": {"id": "debian", "version": "12", "distribution": "Debian", "family": "Debian"},
        "kernels": {"running": "6.1.0-28-amd64"},
        "module": {"loaded": True, "version": "2.0.0", "srcversion": "5E0A6A1F4F2D3C1B0A998877",
                   "file_srcversion": "5E0A6A1F4F2D3C1B0A998877", "reload_pending": False,
                   "parameters": {"ipv4_kinds": "200", "ipv6_kinds": "253,254",
                                  "trusted_cidrs": "192.0.2.0/24"},
                   "trusted_cidrs": "192.0.2.0/24", "honours_any_source": False,
                   "available": True, "builtin": False,
                   "file": "/lib/modules/6.1.0-28-amd64/updates/dkms/toa.ko"},
        "stats": dict(STATS_OK),
        "counters": summarise(STATS_OK),
        "autoload": {"enabled": True, "methods": ["modules-load"],
                     "files": ["/etc/modules-load.d/toa.conf"], "options": {},
                     "options_file": None, "problems": []},
        "ebpf": {"installed": False, "status": None, "status_error": None, "module_loaded": True},
    }
    state["module"].update(module)
    return state


def ebpf_host(status=None, nothing=False, **ebpf):
    """A healthy host of the eBPF route: programs loaded and attached, no module (`status`
    changes what toa-bpf status printed; nothing: it printed nothing)."""
    state = module_host()
    state["module"] = {"loaded": False, "version": None, "srcversion": None,
                       "file_srcversion": None, "reload_pending": False, "parameters": {},
                       "trusted_cidrs": None, "honours_any_source": None, "available": False,
                       "builtin": False, "file": None}
    state["stats"], state["counters"] = {}, summarise({})
    state["autoload"] = {"enabled": False, "methods": [], "files": [], "options": {},
                         "options_file": None, "problems": []}
    good = {"loaded": True,
            "attached": {"sock_ops": True, "getpeername4": True, "getpeername6": True},
            "counters": {"entries_nomem": 0, "rewritten": 3, "rejected_untrusted": 0}}
    good.update(status or {})
    state["ebpf"] = {"installed": True, "status": None if nothing else good, "status_error": None,
                     "module_loaded": False, "possible": True, "problems": []}
    state["ebpf"].update(ebpf)
    return state


OPTIONS = {"name": "toa", "autoload": True, "reload_pending": "fail", "probe": True,
           "probe_families": ["ipv4"], "params": {"ipv4_kinds": "200", "ipv6_kinds": "253,254"},
           "probe_address": "203.0.113.7", "probe_address6": "2001:db8:7::7", "probe_port": 4242,
           "probe_timeout": 30.0, "probe_proxy_address": "", "probe_proxy_address6": ""}


def options(**changed):
    found = copy.deepcopy(OPTIONS)
    found.update(changed)
    return found


def check(state, **changed):
    return tv.check_state(state, options(**changed), HOST)


# -- healthy hosts pass --------------------------------------------------------------------

def test_a_healthy_module_host_passes_and_says_what_it_saw():
    route, failures, notes, in_place = check(module_host())
    assert (route, failures, in_place) == ("module", [], True)
    assert notes[0] == ("web1: TOA 2.0.0 loaded on kernel 6.1.0-28-amd64, autoload enabled, "
                        "honours TOA only from 192.0.2.0/24.")
    assert notes[1].startswith("web1: no TOA counter shows a lost client address; hooks ftrace "
                               "(cannot miss); refused rejected_multiple=2")
    assert len(notes) == 2


def test_a_healthy_ebpf_host_passes():
    route, failures, notes, in_place = check(ebpf_host())
    assert (route, failures, in_place) == ("ebpf", [], True)
    assert notes == ['web1: TOA eBPF programs attached on kernel 6.1.0-28-amd64, counters '
                     '{"entries_nomem": 0, "rejected_untrusted": 0, "rewritten": 3}.']


@pytest.mark.parametrize("trusted", ["", None])  # None: the vendor's module has no filter
def test_a_module_without_a_source_filter_is_said_to_honour_any_source(trusted):
    _route, failures, notes, _ = check(module_host(trusted_cidrs=trusted, honours_any_source=True))
    assert failures == []
    assert "honours TOA from any source (no trusted_cidrs: a client that reaches the host " \
           "directly can claim any address)." in notes[0]


# -- each failure of the module route ------------------------------------------------------

def test_a_module_not_loaded_fails_with_host_os_kernel_and_the_fix():
    route, failures, _notes, in_place = check(module_host(loaded=False))
    assert (route, in_place) == ("module", False)
    assert failures == ["web1 (debian 12, kernel 6.1.0-28-amd64): TOA is not loaded "
                        "(loaded=false, autoload=true); run playbooks/site.yml."]


@pytest.mark.parametrize("enabled, wanted, says", [
    (False, True, "autoload is disabled, toa_autoload wants it enabled"),
    (True, False, "autoload is enabled, toa_autoload wants it disabled"),
])
def test_autoload_other_than_asked_fails(enabled, wanted, says):
    state = module_host()
    state["autoload"]["enabled"] = enabled
    _route, failures, _notes, in_place = check(state, autoload=wanted)
    assert in_place
    assert failures == ["web1 (debian 12, kernel 6.1.0-28-amd64): %s (loaded=true, autoload=%s); "
                        "run playbooks/site.yml." % (says, "true" if enabled else "false")]


def test_autoload_none_is_not_checked():
    state = module_host()
    state["autoload"]["enabled"] = False
    assert check(state, autoload=None)[1] == []


def test_lost_client_addresses_fail_with_the_counters_and_the_advice():
    stats = dict(STATS_OK, entries_dropped_full=4464, entries_limit=65536)
    state = module_host()
    state["stats"], state["counters"] = stats, summarise(stats)
    failures = check(state)[1]
    assert len(failures) == 1
    assert failures[0].startswith("web1: TOA lost client addresses (those connections saw the "
                                  "proxy): entries_dropped_full=4464. ")
    assert "toa_params.max_entries" in failures[0]


def test_no_counters_at_all_is_said_not_failed():
    state = module_host()
    state["stats"], state["counters"] = {}, summarise({})
    route, failures, notes, _ = check(state)
    assert failures == []
    assert "web1: no TOA counters to read (no /proc/net/toa_stats, as with the vendor's module), " \
           "so lost addresses are unknown." in notes


def test_an_outdated_loaded_module_fails_or_is_only_reported():
    state = module_host(srcversion="AAAA", file_srcversion="BBBB", reload_pending=True)
    said = ("web1: the loaded toa (srcversion AAAA) is not the installed build (srcversion BBBB): "
            "the new module is installed but not running. Run playbooks/site.yml with -e "
            "toa_reload=true (live connections lose their TOA address), or reboot the host.")
    assert check(state)[1] == [said]
    _route, failures, notes, _ = check(state, reload_pending="report")
    assert failures == [] and said in notes


def test_every_failure_is_reported_together():
    stats = dict(STATS_OK, missed_destroy=3)
    state = module_host(reload_pending=True, srcversion="A", file_srcversion="B")
    state["stats"], state["counters"] = stats, summarise(stats)
    state["autoload"]["enabled"] = False
    failures = check(state)[1]
    assert [text.split(": ", 1)[1][:20] for text in failures] == [
        "autoload is disabled", "TOA lost client addr", "the loaded toa (srcv"]


# -- each failure of the eBPF route --------------------------------------------------------

REINSTALL = "; run playbooks/site.yml with toa_strategy=ebpf."


@pytest.mark.parametrize("state, says, in_place, fix", [
    (ebpf_host({"loaded": False}), "the programs are not loaded", False, REINSTALL),
    (ebpf_host({"attached": {"sock_ops": True, "getpeername4": False, "getpeername6": True}}),
     "not attached to every hook (getpeername4=false, getpeername6=true, sock_ops=true)", False,
     REINSTALL),
    (ebpf_host(module_loaded=True), "the toa module is loaded beside them", True, REINSTALL),
    (ebpf_host({"counters": {"entries_nomem": 5}}),
     "entries_nomem is 5: client addresses were lost for want of socket storage", True,
     "; find out why the host was short of kernel memory (docs/ebpf.md, the counters)."),
    (ebpf_host(nothing=True, status_error="bpftool: not found"),
     "toa-bpf status gave nothing (bpftool: not found)", False, REINSTALL),
])
def test_an_ebpf_route_out_of_order_fails_with_what_is_wrong_and_the_fix(state, says, in_place, fix):
    route, failures, notes, placed = check(state)
    assert (route, notes, placed) == ("ebpf", [], in_place)
    assert len(failures) == 1
    assert failures[0].startswith("web1 (debian 12, kernel 6.1.0-28-amd64): the TOA eBPF route is "
                                  "not in order: ")
    assert says in failures[0]
    assert failures[0].endswith(fix)


def test_the_ebpf_route_does_not_read_the_module_route_s_autoload_or_counters():
    state = ebpf_host()
    state["counters"] = summarise(dict(STATS_OK, entries_dropped_full=1))
    assert check(state, autoload=True)[1] == []


# -- the probe's plan: the kinds the module reads, never kind 0 -----------------------------

@pytest.mark.parametrize("params, kinds", [
    ({"ipv4_kinds": "200", "ipv6_kinds": "253,254"}, {"ipv4": [200], "ipv6": [253, 254],
                                                     "ipv4_on_ipv6": [200]}),
    ({"ipv4_kinds": " 254 , 200", "ipv6_kinds": "254"}, {"ipv4": [254, 200], "ipv6": [254],
                                                        "ipv4_on_ipv6": [254, 200]}),
    ({"ipv4_kinds": "200", "ipv6_kinds": ",, "}, {"ipv4": [200], "ipv6": [], "ipv4_on_ipv6": [200]}),
    ({"ipv4_kinds": [200], "ipv6_kinds": [254, 253]}, {"ipv4": [200], "ipv6": [254, 253],
                                                      "ipv4_on_ipv6": [200]}),
    ({}, {"ipv4": [200], "ipv6": [253], "ipv4_on_ipv6": [200]}),  # the module's defaults
])
def test_each_family_gets_the_kinds_the_module_reads(params, kinds):
    assert tv.probe_kinds(params) == kinds


def test_a_family_without_kinds_is_not_probed_and_the_note_says_why():
    requests, notes = tv.probe_requests(options(probe_families=["ipv4", "ipv6", "ipv4_on_ipv6"],
                                                params={"ipv4_kinds": "254,200", "ipv6_kinds": ""}),
                                        HOST)
    assert [(r["family"], r["kind"]) for r in requests] == [("ipv4", 254), ("ipv4_on_ipv6", 254)]
    assert notes == ["Not probing ipv6 on web1: toa_params.ipv6_kinds is empty, so the module "
                     "honours no IPv6 TOA option and there is nothing to prove. Remove ipv6 "
                     "from toa_verify_probe_families, or set the kinds your proxies send."]


def test_the_ipv6_probe_takes_the_ipv6_addresses():
    requests, _ = tv.probe_requests(options(probe_families=["ipv6", "ipv4"],
                                            probe_proxy_address6="2001:db8::9"), HOST)
    six, four = requests
    assert (six["toa_address"], six["proxy_address"], six["kind"]) == ("2001:db8:7::7",
                                                                        "2001:db8::9", 253)
    assert (four["toa_address"], four["proxy_address"]) == ("203.0.113.7", None)
    assert six["expect"] == four["expect"] == "rewritten"


def test_a_probe_that_saw_the_proxy_names_trusted_cidrs_and_the_variable():
    failures, notes = tv.probe_said(module_host(), OPTIONS, HOST, "ipv4", {},
                                    "TOA did not rewrite the peer: expected ... (proxy 192.0.2.2)")
    assert notes == []
    assert failures == ["TOA probe (ipv4) on web1 (debian 12, kernel 6.1.0-28-amd64): TOA did not "
                        "rewrite the peer: expected ... (proxy 192.0.2.2). trusted_cidrs is "
                        "192.0.2.0/24: toa_verify_probe_proxy_address must lie inside it."]


# -- the whole module on a fake host -------------------------------------------------------

@pytest.fixture
def loaded_host(tmp_path, monkeypatch, fake_commands):
    """Debian 12 with toa 2.0.0 loaded, autoload by modules-load.d, counters all 0."""
    root = debian12_host(tmp_path, monkeypatch, "toa 16384 0 - Live 0xffffffffc0a1b000 (OE)\n")
    write(root, "/sys/module/toa/version", "2.0.0\n")
    write(root, "/sys/module/toa/srcversion", "0123ABCD\n")
    write(root, "/sys/module/toa/parameters/ipv4_kinds", "200\n")
    write(root, "/sys/module/toa/parameters/trusted_cidrs", "192.0.2.0/24\n")
    write(root, "/etc/modules-load.d/toa.conf", "toa\n")
    write(root, "/proc/net/toa_stats", "".join("%s %d\n" % item for item in STATS_OK.items()))
    fake_commands.add(["modinfo", "-k", "6.1.0-18-amd64", "-n", "toa"],
                      out="/lib/modules/6.1.0-18-amd64/updates/dkms/toa.ko\n")
    fake_commands.add(["modinfo", "-k", "6.1.0-18-amd64", "-F", "srcversion", "toa"],
                      out="0123ABCD\n")
    return root


def fake_probe(monkeypatch, peer):
    """The probe's child replaced: getpeername() and accept() return `peer`."""
    ran = []

    def run(module, plan):
        ran.append(plan)
        return {"elapsed_ms": 20, "stage": "done",
                "result": {"listen_port": 39211, "proxy_port": 45123, "syn_sent": 1,
                           "ack_sent": 1, "payload_ok": True,
                           "peer_address": peer[0], "peer_port": peer[1],
                           "accept_address": peer[0], "accept_port": peer[1]}}
    monkeypatch.setattr(tv, "environment", lambda module: ("/usr/sbin/ip", None))
    monkeypatch.setattr(tv, "run_in_child", run)
    return ran


def test_module_passes_on_a_healthy_host_in_check_mode(loaded_host, run_module, monkeypatch):
    ran = fake_probe(monkeypatch, ("203.0.113.7", 4242))
    result = run_module(tv, {"host": HOST, "autoload": True}, check_mode=True)
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is False and result["failures"] == []
    assert result["route"] == "module" and result["toa"]["module"]["version"] == "2.0.0"
    assert [plan["ip_bin"] for plan in ran] == ["/usr/sbin/ip"]
    assert result["probes"][0]["matches"] is True and result["probes"][0]["msg"] is None
    assert result["msg"].startswith("web1: TOA 2.0.0 loaded on kernel 6.1.0-18-amd64")
    assert "getpeername() returned 203.0.113.7:4242, the injected address." in result["msg"]


def test_module_fails_with_every_failed_check(loaded_host, run_module, monkeypatch):
    fake_probe(monkeypatch, ("192.0.2.2", 45123))
    write(loaded_host, "/proc/net/toa_stats", "entries_nomem 7\nmissed_destroy 0\n")
    result = run_module(tv, {"host": HOST, "autoload": False})
    assert result["failed"] is True
    assert len(result["failures"]) == 3
    assert result["msg"].startswith("3 checks failed: (1) web1 (debian 12, kernel 6.1.0-18-amd64): "
                                    "autoload is enabled, toa_autoload wants it disabled")
    assert "(2) web1: TOA lost client addresses (those connections saw the proxy): " \
           "entries_nomem=7." in result["msg"]
    assert "(3) TOA probe (ipv4) on web1 (debian 12, kernel 6.1.0-18-amd64): TOA did not rewrite " \
           "the peer" in result["msg"]
    assert result["probes"][0]["peer_address"] == "192.0.2.2"


def test_module_does_not_probe_a_host_without_toa(tmp_path, monkeypatch, run_module):
    debian12_host(tmp_path, monkeypatch, "ext4 987136 1 - Live 0x0\n")
    ran = fake_probe(monkeypatch, ("203.0.113.7", 4242))
    result = run_module(tv, {"host": HOST, "autoload": True})
    assert result["failed"] is True and ran == []
    assert result["msg"] == ("web1 (debian 12, kernel 6.1.0-18-amd64): TOA is not loaded and "
                             "autoload is disabled, toa_autoload wants it enabled (loaded=false, "
                             "autoload=false); run playbooks/site.yml.")
    assert "web1: not probed, TOA is not in place." in result["notes"]


def test_module_with_probe_false_runs_no_probe(loaded_host, run_module, monkeypatch):
    ran = fake_probe(monkeypatch, ("192.0.2.2", 45123))
    result = run_module(tv, {"host": HOST, "probe": False})
    assert not result.get("failed"), result["msg"]
    assert ran == [] and result["probes"] == []


def test_a_host_that_cannot_run_the_probe_fails_with_what_it_lacks(loaded_host, run_module,
                                                                   monkeypatch):
    monkeypatch.setattr(tv, "environment", lambda module: (None, "the `ip` command was not found: "
                                                           "install iproute2"))
    result = run_module(tv, {"host": HOST})
    assert result["failures"] == ["TOA probe on web1 (debian 12, kernel 6.1.0-18-amd64): the `ip` "
                                  "command was not found: install iproute2."]


def test_kinds_that_are_not_numbers_are_refused(loaded_host, run_module):
    result = run_module(tv, {"params": {"ipv4_kinds": "toa"}})
    assert result["failed"] is True
    assert result["msg"].startswith("params (toa_params) ipv4_kinds and ipv6_kinds take option "
                                    "kinds as numbers separated by commas")
