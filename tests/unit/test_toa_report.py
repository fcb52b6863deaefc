"""filter_plugins/toa_report.py: fleet report rows, summary, Markdown, CSV and HTML.

Records are shaped like roles/toa/tasks/report.yml registers them: toa_facts and
toa_probe results (failed_when: false) with the keys those modules return.
"""

import csv
import io
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "filter_plugins"))

import toa_report  # noqa: E402
from toa_stats import summarise  # noqa: E402  (what toa_facts puts in toa.counters)

STATS_OURS = {
    "options_seen": 1520, "accepted": 1502, "rejected_untrusted": 17, "rejected_malformed": 1,
    "rejected_family": 0, "getname_rewrites": 4410, "getname_stale": 0, "entries_alloc": 1502,
    "entries_free": 1490, "entries_live": 12, "syn_stash_live": 0,
    "missed_destroy": 0, "missed_getname_v4": 0, "missed_getname_v6": 0,
    "missed_syn_recv_v4": 3, "missed_syn_recv_v6": 0, "missed_conn_request": 0,
    "hook_destroy": 1, "hook_getname_v4": 1,
}
STATS_CLEAN = dict(STATS_OURS, missed_syn_recv_v4=0)
# toa.ko 2.0: the global totals, the new refusals and the hook class
STATS_20 = dict(STATS_CLEAN, rejected_multiple=2, rejected_syn_mismatch=0, fastopen_without_toa=1,
                entries_dropped_full=0, entries_nomem=0, syn_stash_dropped_full=0,
                global_entries_dropped_full=0, global_entries_nomem=0,
                global_syn_stash_dropped_full=0, global_missed=0, hooks_ftrace=1)


def facts(distribution="Debian", version="12", kernel="6.1.0-18-amd64", loaded=True, available=True,
          mod_version="1.0.0", builtin=False, stats=None, autoload=None, route="module", package=None,
          route_error=None, arch="x86_64", running_is_toa=False, srcversions=(None, None)):
    toa = {
        "host": {"distribution": distribution, "id": distribution.lower(), "version": version,
                 "full_version": version, "major": version.split(".")[0], "family": "Debian",
                 "arch": arch, "kernel": kernel, "init": "systemd"},
        "module": {"loaded": loaded, "version": mod_version if loaded else None,
                   "srcversion": srcversions[0] if loaded else None,
                   "file_srcversion": srcversions[1],
                   "reload_pending": bool(loaded and srcversions[0] and srcversions[1]
                                          and srcversions[0] != srcversions[1]),
                   "parameters": {"ipv4_kinds": "200"} if loaded else {}, "available": available,
                   "builtin": builtin, "file": None},
        "stats": stats if stats is not None else {},
        "counters": summarise(stats),
        "autoload": autoload if autoload is not None else {
            "enabled": loaded, "methods": ["modules-load"] if loaded else [], "files": [],
            "options": {}, "options_file": None, "problems": []},
        "kernels": {"running": kernel, "installed_toa": [kernel] if running_is_toa else [],
                    "running_is_toa": running_is_toa},
        "dkms": [], "dkms_installed": route == "module",
        "route": None if route_error else {"route": route, "strategy": "auto", "reason": "x",
                                           "package": package},
        "route_error": route_error,
    }
    return {"changed": False, "failed": False, "ansible_facts": {"toa": toa}}


def probe(state, peer=("203.0.113.7", 4242), proxy=("192.0.2.2", 40303)):
    result = {"changed": False, "failed": False, "family": "ipv4", "kind": 200,
              "toa_address": "203.0.113.7", "toa_port": 4242, "proxy_address": proxy[0],
              "proxy_port": proxy[1], "expected_address": "", "expected_port": 0, "stage": "done"}
    if state == "rewritten":
        result.update(peer_address=peer[0], peer_port=peer[1], peer_state="rewritten",
                      accept_state="rewritten", rewritten=True, matches=True)
    elif state == "unrewritten":
        result.update(peer_address=proxy[0], peer_port=proxy[1], peer_state="unrewritten",
                      accept_state="unrewritten", rewritten=False, matches=True)
    elif state == "other":
        # expect=any still fails on an address rewritten without its port; failed_when: false
        result.update(peer_address="203.0.113.7", peer_port=proxy[1], peer_state="other",
                      accept_state="other", rewritten=False, matches=False,
                      msg="getpeername() returned 203.0.113.7:40303: neither the TOA address "
                          "nor the proxy", failed_when_result=False)
    return result


PROBE_NO_TUN = {"changed": False, "failed": False, "failed_when_result": False,
                "msg": "/dev/net/tun does not exist: the kernel has no TUN support or the device node "
                       "is missing; load it with `modprobe tun`"}

UNREACHABLE = {"unreachable": True, "changed": False,
               "msg": "Task failed: Failed to connect to the host via ssh: ssh: connect to host "
                      "192.0.2.99 port 22: Connection timed out"}

VENDOR_CENTOS7 = facts(
    distribution="CentOS", version="7.9.2009", kernel="3.10.0-693.el7.centos.toa", mod_version=None,
    route="package", running_is_toa=True,
    package={"id": "centos7-x86_64", "kernel": "3.10.0-693.el7.centos.toa", "format": "rpm"},
    autoload={"enabled": True, "methods": ["rc-local"], "files": ["/etc/rc.d/rc.local"], "options": {},
              "options_file": None,
              "problems": [u"/etc/rc.local has the line modprobe \u201ctoa\u201d with typographic quotes"]})


def fleet():
    return [
        {"host": "web-d12-01", "facts": facts(stats=STATS_CLEAN), "probe": probe("rewritten"),
         "probe_skipped": False},
        {"host": "web-c7-01", "facts": VENDOR_CENTOS7, "probe": probe("rewritten"), "probe_skipped": False},
        {"host": "web-d12-02", "facts": facts(stats=dict(STATS_OURS, missed_syn_recv_v4=0)),
         "probe": probe("unrewritten"), "probe_skipped": False},
        {"host": "web-d12-03", "facts": facts(stats=STATS_OURS), "probe": PROBE_NO_TUN, "probe_skipped": False},
        {"host": "api-u24-01", "facts": facts(distribution="Ubuntu", version="24.04", kernel="6.8.0-45-generic",
                                              loaded=False, available=False, arch="aarch64"),
         "probe": probe("unrewritten"), "probe_skipped": False},
        {"host": "api-u24-02", "facts": facts(loaded=False, available=True), "probe": probe("unrewritten"),
         "probe_skipped": False},
        {"host": "db-r9-01", "facts": UNREACHABLE, "probe": None, "probe_skipped": False},
        {"host": "web-d12-04", "facts": facts(stats=STATS_OURS), "probe": probe("other"), "probe_skipped": False},
        {"host": "web-d12-05", "facts": facts(stats=STATS_CLEAN), "probe": None, "probe_skipped": True},
        {"host": "web-d12-06", "facts": facts(stats=STATS_OURS), "probe": probe("rewritten")},
        {"host": "web-d12-07", "facts": facts(stats=STATS_20, srcversions=("0123ABCD", "4567EF01")),
         "probe": probe("rewritten")},
        {"host": "web-d12-08", "facts": facts(stats=STATS_20, srcversions=("4567EF01", "4567EF01")),
         "probe": probe("rewritten")},
    ]


def by_host(rows):
    return {row["host"]: row for row in rows}


def test_rows_classify_every_host():
    rows = toa_report.toa_report_rows(fleet(), ["web-d12-01", "lost-01"])
    status = {row["host"]: row["status"] for row in rows}
    assert status == {
        "web-d12-01": "working", "web-c7-01": "working", "web-d12-02": "probe_failed",
        "web-d12-03": "probe_error", "api-u24-01": "not_installed", "api-u24-02": "not_loaded",
        "db-r9-01": "no_facts", "web-d12-04": "probe_error", "web-d12-05": "not_probed",
        "lost-01": "no_facts", "web-d12-06": "losing", "web-d12-07": "reload_pending",
        "web-d12-08": "working",
    }
    for row in rows:
        assert set(row) == set(toa_report.ROW_KEYS)


def test_hosts_that_need_attention_come_first():
    rows = toa_report.toa_report_rows(fleet(), ["lost-01"])
    hosts = [row["host"] for row in rows]
    assert hosts == [
        # verification fails on these, by host name
        "api-u24-02", "db-r9-01", "lost-01", "web-d12-02", "web-d12-03", "web-d12-04",
        "web-d12-06", "web-d12-07",
        # then the rest, by host name
        "api-u24-01", "web-c7-01", "web-d12-01", "web-d12-05", "web-d12-08"]


def test_lost_addresses_refusals_hooks_and_reload_cells():
    rows = by_host(toa_report.toa_report_rows(fleet()))
    losing = rows["web-d12-06"]
    assert (losing["lost"], losing["lost_detail"]) == ("yes", "missed_syn_recv_v4=3")
    assert (losing["missed"], losing["missed_detail"]) == ("3", "syn_recv_v4=3")
    # toa.ko 1.0 prints no global_* counters, no new refusals and no hook class
    assert rows["web-d12-01"]["lost"] == "no"
    assert rows["web-d12-01"]["lost_detail"] == "7 not printed by this module"
    assert (rows["web-d12-01"]["refused"], rows["web-d12-01"]["hooks"]) == ("-", "-")
    current = rows["web-d12-08"]
    assert (current["lost"], current["lost_detail"]) == ("no", "")
    assert current["refused"] == "multiple=2 syn_mismatch=0 fastopen_without_toa=1"
    assert current["hooks"] == "ftrace"
    assert current["reload"] == "no"
    assert rows["web-d12-07"]["reload"] == "pending (loaded 0123ABCD, installed 4567EF01)"
    # no counters at all (the vendor's module) is unknown, not "no"
    assert [rows["web-c7-01"][key] for key in ("lost", "refused", "hooks", "reload")] == ["-"] * 4
    text = toa_report.toa_report_markdown(toa_report.toa_report_rows(fleet()))
    assert "| yes (missed_syn_recv_v4=3) |" in text

def test_working_module_host_row():
    row = by_host(toa_report.toa_report_rows(fleet()))["web-d12-01"]
    assert row["os"] == "Debian 12"
    assert row["kernel"] == "6.1.0-18-amd64"
    assert row["route"] == "module"
    assert (row["loaded"], row["version"]) == ("yes", "1.0.0")
    assert row["autoload"] == "yes (modules-load)"
    assert row["probe"] == "rewritten (203.0.113.7:4242)"
    assert row["probe_peer"] == "203.0.113.7:4242"
    assert [row[k] for k in toa_report.COUNTERS] == ["1502", "17", "1", "4410", "12"]
    assert (row["missed"], row["missed_detail"]) == ("0", "")


def test_vendor_kernel_host_row():
    row = by_host(toa_report.toa_report_rows(fleet()))["web-c7-01"]
    assert row["os"] == "CentOS 7.9.2009"
    assert row["kernel"] == "3.10.0-693.el7.centos.toa (TOA kernel)"
    assert row["route"] == "package (centos7-x86_64)"
    assert row["version"] == "-"  # the vendor's module has no version
    assert row["autoload"].startswith("yes (rc-local); 1 problem: /etc/rc.local has the line modprobe")
    # The vendor's module has no /proc/net/toa_stats.
    assert [row[k] for k in toa_report.COUNTERS + ("missed",)] == ["-"] * 6


def test_probe_cells_say_what_was_seen():
    rows = by_host(toa_report.toa_report_rows(fleet()))
    assert rows["web-d12-02"]["probe"] == "not rewritten (saw 192.0.2.2:40303, the proxy)"
    assert rows["web-d12-02"]["missed"] == "0"
    assert rows["web-d12-03"]["probe"].startswith("probe error: /dev/net/tun does not exist")
    assert rows["web-d12-04"]["probe"] == (
        "probe error: getpeername() returned 203.0.113.7:40303: neither the TOA address nor the proxy "
        "(saw 203.0.113.7:40303)")
    assert rows["web-d12-05"]["probe"] == "skipped"
    assert rows["db-r9-01"]["probe"] == (
        "not run: unreachable: Failed to connect to the host via ssh: ssh: connect to host 192.0.2.99 "
        "port 22: Connection timed out")
    assert rows["api-u24-01"]["os"] == "Ubuntu 24.04 (aarch64)"


def test_ipv6_peer_is_bracketed():
    record = {"host": "h", "facts": facts(), "probe": dict(
        probe("rewritten"), family="ipv6", peer_address="2001:db8:7::7", peer_port=4242)}
    assert toa_report.host_row(record)["probe"] == "rewritten ([2001:db8:7::7]:4242)"


def test_route_error_is_shown():
    record = {"host": "h", "facts": facts(route_error="no TOA package for CentOS 6 i386 | and no DKMS"),
              "probe": probe("unrewritten")}
    row = toa_report.host_row(record)
    assert row["route"].startswith("none: no TOA package for CentOS 6 i386")


def test_summary_line():
    rows = toa_report.toa_report_rows(fleet(), ["lost-01"])
    assert toa_report.toa_report_summary(rows) == (
        "13 hosts: 3 TOA working, 1 TOA working but losing client addresses, "
        "1 TOA working, reload pending, 1 loaded but probe failed, 2 loaded but probe error, "
        "1 loaded, not probed, 1 installed but not loaded, 1 not installed, 2 unreachable or facts failed")
    twelve = ([{"host": "w%02d" % i, "facts": facts(), "probe": probe("rewritten")} for i in range(10)]
              + [{"host": "f", "facts": facts(), "probe": probe("unrewritten")},
                 {"host": "n", "facts": facts(loaded=False, available=False), "probe": probe("unrewritten")}])
    assert toa_report.toa_report_summary(toa_report.toa_report_rows(twelve)) == (
        "12 hosts: 10 TOA working, 1 loaded but probe failed, 1 not installed")
    assert toa_report.toa_report_summary([]) == "0 hosts"


def test_markdown_table():
    rows = toa_report.toa_report_rows(fleet())
    text = toa_report.toa_report_markdown(rows, generated="2026-11-25 23:00:00 UTC")
    lines = text.splitlines()
    assert lines[0] == "# TOA fleet report"
    header = [line for line in lines if line.startswith("| Host |")]
    assert len(header) == 1
    table = [line for line in lines if line.startswith("| ")]
    assert len(table) == 1 + len(rows)
    # Every row has as many cells as the header: no unescaped pipe slipped in.
    for line in table:
        assert len(line.replace("\\|", "").split("|")) == len(toa_report.COLUMNS) + 2
    assert "| web-d12-01 | Debian 12 | 6.1.0-18-amd64 | module | yes | 1.0.0 |" in text
    assert "3 (syn_recv_v4=3)" in text


def test_markdown_escapes_pipes_and_markup():
    record = {"host": "a|b<script>", "facts": facts(route_error="x | y"), "probe": probe("rewritten")}
    text = toa_report.toa_report_markdown(toa_report.toa_report_rows([record]))
    assert "a\\|b&lt;script&gt;" in text
    assert "<script>" not in text


def test_csv_round_trips():
    rows = toa_report.toa_report_rows(fleet())
    parsed = list(csv.DictReader(io.StringIO(toa_report.toa_report_csv(rows))))
    assert [list(row) for row in parsed][0] == list(toa_report.ROW_KEYS)
    assert [row["host"] for row in parsed] == [row["host"] for row in rows]
    first = by_host(parsed)["web-d12-01"]
    assert first["status"] == "working"
    assert first["accepted"] == "1502"
    losing = by_host(parsed)["web-d12-06"]
    assert losing["status"] == "losing"
    assert losing["missed_detail"] == "syn_recv_v4=3"
    assert (losing["lost"], losing["lost_detail"]) == ("yes", "missed_syn_recv_v4=3")


def test_csv_defuses_spreadsheet_formulas():
    record = {"host": "=HYPERLINK(\"http://x\")", "facts": facts(), "probe": probe("rewritten")}
    parsed = list(csv.DictReader(io.StringIO(toa_report.toa_report_csv(toa_report.toa_report_rows([record])))))
    assert parsed[0]["host"] == "'=HYPERLINK(\"http://x\")"
    assert parsed[0]["version"] == "1.0.0"


def test_html_is_self_contained_and_escaped():
    rows = toa_report.toa_report_rows(fleet() + [
        {"host": "<img src=x onerror=alert(1)>", "facts": facts(), "probe": probe("rewritten")}])
    page = toa_report.toa_report_html(rows, title="TOA <fleet>", generated="2026-11-25 23:00:00 UTC")
    assert page.startswith("<!DOCTYPE html>")
    assert "<style>" in page
    for external in ("<script", "<link", "src=\"http", "href=", "@import", "url("):
        assert external not in page
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<title>TOA &lt;fleet&gt;</title>" in page
    assert page.count('<tr class="') == len(rows)
    assert '<tr class="working" data-host="web-d12-01">' in page


@pytest.mark.parametrize("record", [None, {}, {"host": "h"}, {"host": "h", "facts": {}},
                                    {"host": "h", "facts": {"ansible_facts": {}}}])
def test_broken_records_become_no_facts_rows(record):
    row = toa_report.host_row(record)
    assert row["status"] == "no_facts"
    assert row["probe"].startswith("not run: ")


def test_filters_are_registered():
    names = set(toa_report.FilterModule().filters())
    assert names == {"toa_report_rows", "toa_report_summary", "toa_report_markdown", "toa_report_csv",
                     "toa_report_html"}
