"""The fleet report of 1,000 generated hosts, rendered by headless Chromium.

The hosts come from report_fleet.generate (varied statuses, routes, OS and
lost-address counters, handed over in a shuffled order). The page's order of
rows, its counts by status, route and OS and its lost-address cells are read
back from the DOM Chromium built and checked against what the generated hosts
are meant to show. Size and render time are measured by bench/report_page.py,
not here (docs/report.md).
"""

import collections
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "filter_plugins"))

import toa_report  # noqa: E402
from report_dom import CHROMIUM, dump_dom, read_tables  # noqa: E402
from report_fleet import generate  # noqa: E402
from toa_stats import LOST  # noqa: E402

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; scripts/setup.sh does)")

COUNT = 1000

# Statuses on which verification fails: these hosts come first.
ATTENTION = {"no_facts", "probe_failed", "probe_error", "not_loaded", "losing", "reload_pending"}

# The column (by its heading) that shows each lost-address counter.
COLUMN_OF = dict([(name, "missed") for name in LOST if name.startswith("missed_")] + [
    ("entries_dropped_full", "dropped (full)"), ("syn_stash_dropped_full", "dropped (full)"),
    ("entries_nomem", "nomem"), ("global_entries_dropped_full", "all namespaces"),
    ("global_entries_nomem", "all namespaces"), ("global_syn_stash_dropped_full", "all namespaces"),
    ("global_missed", "all namespaces")])
LOST_COLUMNS = ("missed", "dropped (full)", "nomem", "all namespaces")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """(hosts, path of their report page)."""
    hosts, records = generate(COUNT)
    rows = toa_report.toa_report_rows(records)
    path = tmp_path_factory.mktemp("report") / "toa-report.html"
    path.write_text(toa_report.toa_report_html(rows, generated="2026-11-30 12:00:00 UTC"), encoding="utf-8")
    return hosts, path


@pytest.fixture(scope="module")
def fleet(page):
    """(hosts, the page as Chromium built it), rendered once for the tests below."""
    hosts, path = page
    return hosts, read_tables(dump_dom(str(path)))


def host_rows(dom):
    """[(host, status class, tbody class, {heading: cell text})] of the host table, in page order."""
    table = dom.tables["toa-report"]
    headings = table.rows[0]
    assert table.row_parts[0] == "thead"
    return [(attrs["data-host"], attrs["class"], part, dict(zip(headings, cells)))
            for cells, attrs, part in zip(table.rows[1:], table.row_attrs[1:], table.row_parts[1:])]


def counts(dom, table_id, key="label"):
    """{label or data-key: hosts} of one of the count tables."""
    table = dom.tables[table_id]
    assert table.rows[0][1] == "hosts"
    return dict(((attrs["data-key"] if key == "data-key" else cells[0]), int(cells[1]))
                for cells, attrs in zip(table.rows[1:], table.row_attrs[1:]))


def test_hosts_that_need_attention_come_first_then_the_rest_by_name(fleet):
    hosts, dom = fleet
    rows = host_rows(dom)
    assert len(rows) == COUNT
    attention = sorted((host for host in hosts if host.status in ATTENTION), key=lambda host: host.sort_key)
    rest = sorted((host for host in hosts if host.status not in ATTENTION), key=lambda host: host.sort_key)
    assert 0 < len(attention) < COUNT
    assert [name for name, _status, _part, _cells in rows] == [host.name for host in attention + rest]
    # each row says its status and sits in its part of the table
    meant = dict((host.name, host.status) for host in hosts)
    for name, status, part, cells in rows:
        assert status == meant[name], name
        assert part == ("attention" if status in ATTENTION else "rest"), name
        assert cells["Status"] == toa_report.STATUS_TEXT[status]
    assert dom.paragraphs["attention"] == "%d hosts need attention: listed first." % len(attention)


def test_counts_by_status_route_and_os_at_the_top(fleet):
    hosts, dom = fleet
    by_status = collections.Counter(host.status for host in hosts)
    assert counts(dom, "by-status", key="data-key") == by_status
    assert len(by_status) == len(toa_report.STATUSES)  # the fleet has every status
    assert counts(dom, "by-route") == collections.Counter(host.route for host in hosts)
    assert counts(dom, "by-os") == collections.Counter(host.os for host in hosts)
    # most hosts first
    for table_id in ("by-route", "by-os"):
        numbers = [int(cells[1]) for cells in dom.tables[table_id].rows[1:]]
        assert numbers == sorted(numbers, reverse=True)
    assert dom.summary.startswith("%d hosts: %d TOA working, " % (COUNT, by_status["working"]))


def test_every_lost_address_counter_shows_in_its_column(fleet):
    hosts, dom = fleet
    cells_of = dict((name, cells) for name, _status, _part, cells in host_rows(dom))
    seen = set()
    for host in hosts:
        cells = cells_of[host.name]
        for counter, value in host.lost.items():
            short = counter[len("missed_"):] if COLUMN_OF[counter] == "missed" else counter
            assert "%s=%d" % (short, value) in cells[COLUMN_OF[counter]], (host.name, counter, cells)
            assert ("%s=%d" % (counter, value)) in cells["lost addresses"]
            seen.add(counter)
        if host.status == "losing":
            assert cells["lost addresses"].startswith("yes (")
        elif host.route in ("module", "kernel") and cells["TOA loaded"] == "yes":
            # toa.ko 2.0 prints them all: 0, not unknown
            assert [cells[column] for column in LOST_COLUMNS] == ["0"] * 4, host.name
            assert cells["lost addresses"] == "no"
    assert seen == set(LOST)


# Scrolls a copy of the page half way down and notes where the first host cell
# and the first column heading are (the report itself has no script).
SCROLL_PROBE = """<script>
window.scrollTo(0, document.documentElement.scrollHeight / 2);
var host = document.querySelector("#toa-report tbody th").getBoundingClientRect().top;
var heading = document.querySelector("#toa-report thead th").getBoundingClientRect().top;
document.body.setAttribute("data-scrolled", window.scrollY + " " + host + " " + heading);
</script>"""


def test_column_headings_stay_in_view_and_host_cells_scroll_away(page, tmp_path):
    _hosts, path = page
    probe = tmp_path / "scrolled.html"
    probe.write_text(path.read_text(encoding="utf-8").replace("</body>", SCROLL_PROBE + "</body>"),
                     encoding="utf-8")
    dom = dump_dom(str(probe), extra=["--window-size=1400,900"])
    scrolled, host, heading = [float(value) for value in
                               re.search(r'data-scrolled="([^"]*)"', dom).group(1).split()]
    assert scrolled > 10000
    assert heading == 0  # stuck to the top of the window
    assert host < -5000  # scrolled away with its row
