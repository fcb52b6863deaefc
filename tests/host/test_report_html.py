"""The fleet report's HTML page, rendered by headless Chromium.

Chromium loads the page from a file:// URL with networking features off and
dumps the DOM it built; the tests read the table back out of that DOM. One
test renders crafted rows (every status, hostile values that must stay text),
one renders what playbooks/report.yml writes for this machine (real toa_facts
and toa_probe through the local connection). Skipped when Chromium is missing
(scripts/setup.sh installs Debian's `chromium`).
"""

import html.parser
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "filter_plugins"))

import toa_report  # noqa: E402
from toa_stats import summarise  # noqa: E402  (what toa_facts puts in toa.counters)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; scripts/setup.sh does)")


def dump_dom(path):
    """The DOM Chromium built from the page at `path`, serialised."""
    profile = tempfile.mkdtemp(prefix="toa-chromium-")
    try:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--user-data-dir=" + profile, "--dump-dom", "file://" + os.path.abspath(path)],
            capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "<table" in proc.stdout, proc.stdout[:2000] + proc.stderr[-2000:]
    return proc.stdout


class TableReader(html.parser.HTMLParser):
    """Rows of the table with id toa-report, as lists of cell texts; attributes of each row."""

    def __init__(self):
        super().__init__()
        self.in_table = False
        self.cell = None
        self.rows = []
        self.row_attrs = []
        self.elements = []
        self.summary = None
        self._in_summary = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append(tag)
        if tag == "table" and attrs.get("id") == "toa-report":
            self.in_table = True
        elif tag == "p" and attrs.get("id") == "summary":
            self._in_summary = True
            self.summary = ""
        elif self.in_table and tag == "tr":
            self.rows.append([])
            self.row_attrs.append(attrs)
        elif self.in_table and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_table = False
        elif tag == "p":
            self._in_summary = False
        elif tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data
        if self._in_summary:
            self.summary += data


def read_table(dom):
    reader = TableReader()
    reader.feed(dom)
    return reader


def record(host, loaded, state, stats=None):
    return {
        "host": host,
        "facts": {"ansible_facts": {"toa": {
            "host": {"distribution": "Debian", "version": "12", "arch": "x86_64"},
            "module": {"loaded": loaded, "version": "1.0.0" if loaded else None, "available": loaded},
            "stats": stats or {},
            "counters": summarise(stats or {}),
            "autoload": {"enabled": loaded, "methods": ["modules-load"] if loaded else [], "problems": []},
            "kernels": {"running": "6.1.0-18-amd64", "running_is_toa": False},
            "route": {"route": "module", "package": None}, "route_error": None}}},
        "probe": {"peer_address": "203.0.113.7" if state == "rewritten" else "192.0.2.2",
                  "peer_port": 4242 if state == "rewritten" else 40303, "peer_state": state,
                  "rewritten": state == "rewritten", "matches": True},
    }


def test_chromium_renders_the_report_table(tmp_path):
    records = [
        record("web-01", True, "rewritten", {"accepted": 1502, "rejected_untrusted": 17, "rejected_malformed": 0,
                                             "getname_rewrites": 4410, "entries_live": 12,
                                             "missed_syn_recv_v4": 3}),
        record("web-02", True, "unrewritten"),
        record("<b>evil</b>&co", False, "unrewritten"),
        {"host": "db-01", "facts": {"unreachable": True, "msg": "ssh: connect to host 192.0.2.99 port 22"}},
    ]
    rows = toa_report.toa_report_rows(records)
    page = tmp_path / "toa-report.html"
    page.write_text(toa_report.toa_report_html(rows, generated="2026-11-25 23:00:00 UTC"), encoding="utf-8")

    table = read_table(dump_dom(str(page)))
    assert table.rows[0] == [heading for _key, heading in toa_report.COLUMNS]
    body = {cells[0]: dict(zip([key for key, _h in toa_report.COLUMNS], cells)) for cells in table.rows[1:]}
    assert sorted(body) == sorted(["web-01", "web-02", "<b>evil</b>&co", "db-01"])
    assert body["web-01"]["probe"] == "rewritten (203.0.113.7:4242)"
    assert body["web-01"]["accepted"] == "1502"
    assert body["web-01"]["missed"] == "3 (syn_recv_v4=3)"
    assert body["web-01"]["lost"] == "yes (missed_syn_recv_v4=3)"
    assert body["web-01"]["status"] == "TOA working but losing client addresses"
    assert body["web-02"]["status"] == "loaded but probe failed"
    assert body["web-02"]["probe"] == "not rewritten (saw 192.0.2.2:40303, the proxy)"
    assert body["<b>evil</b>&co"]["status"] == "not installed"
    assert body["db-01"]["status"] == "unreachable or facts failed"
    # The hostile host name stayed text: Chromium built no <b> element from it.
    assert "b" not in table.elements
    assert table.summary == "4 hosts: 1 TOA working but losing client addresses, " \
                            "1 loaded but probe failed, 1 not installed, 1 unreachable or facts failed"
    # Hosts that need attention first, then the rest, each by host name.
    assert [attrs.get("class") for attrs in table.row_attrs[1:]] == [
        "no_facts", "losing", "probe_failed", "not_installed"]


def _ansible_playbook():
    local = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    return local if os.access(local, os.X_OK) else shutil.which("ansible-playbook")


@pytest.mark.skipif(_ansible_playbook() is None, reason="ansible-playbook is not installed")
def test_report_playbook_on_this_machine_renders_in_chromium(tmp_path):
    """playbooks/report.yml against this machine (local connection); its HTML in Chromium."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    controller-itself:\n      ansible_connection: local\n"
        "      ansible_python_interpreter: %s\n" % sys.executable)
    out = tmp_path / "reports"
    proc = subprocess.run(
        [_ansible_playbook(), "-i", str(inventory), os.path.join(ROOT, "playbooks", "report.yml"),
         "-e", "toa_report_dir=%s" % out],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    # The one-line summary is in the play log.
    assert "1 host: " in proc.stdout
    for name in ("toa-report.md", "toa-report.csv", "toa-report.html"):
        assert (out / name).is_file(), name
    table = read_table(dump_dom(str(out / "toa-report.html")))
    assert len(table.rows) == 2
    row = dict(zip([key for key, _h in toa_report.COLUMNS], table.rows[1]))
    assert row["host"] == "controller-itself"
    assert row["kernel"] == os.uname().release
    # This machine has no TOA module: the probe sees the proxy, or cannot run at all.
    if os.geteuid() == 0 and os.path.exists("/dev/net/tun"):
        assert row["probe"].startswith("not rewritten (saw 192.0.2.2:"), row
        assert row["status"] == "not installed"
    else:
        assert row["probe"].startswith("probe error: "), row
    assert table.summary.startswith("1 host: ")
