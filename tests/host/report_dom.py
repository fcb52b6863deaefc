"""Render the fleet report's HTML in headless Chromium and read the tables back from its DOM.

Shared by the report tests and bench/report_page.py. Chromium loads the page
from a file:// URL with networking features off and dumps the DOM it built
(--dump-dom); TableReader reads every table with an id out of that DOM.
"""

import html.parser
import os
import shutil
import subprocess
import tempfile

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def dump_dom(path, extra=(), timeout=120):
    """The DOM Chromium built from the page at `path`, serialised."""
    profile = tempfile.mkdtemp(prefix="toa-chromium-")
    try:
        proc = subprocess.run(
            [CHROMIUM] + FLAGS + list(extra) + ["--user-data-dir=" + profile, "--dump-dom",
                                                "file://" + os.path.abspath(path)],
            capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "<table" in proc.stdout, proc.stdout[:2000] + proc.stderr[-2000:]
    return proc.stdout


class Table(object):
    """One table: its rows as lists of cell texts, each row's attributes and the class of its tbody."""

    def __init__(self):
        self.rows = []
        self.row_attrs = []
        self.row_parts = []


class TableReader(html.parser.HTMLParser):
    """Every table with an id (tables), the paragraphs with an id (paragraphs) and the
    elements Chromium built (elements).

    rows, row_attrs and summary keep what the first report test reads: the host
    table (id toa-report) and the summary line.
    """

    def __init__(self):
        super().__init__()
        self.tables = {}
        self.paragraphs = {}
        self.elements = []
        self._table = None
        self._part = None
        self._cell = None
        self._paragraph = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append(tag)
        if tag == "table" and attrs.get("id"):
            self._table = self.tables.setdefault(attrs["id"], Table())
        elif tag == "p" and attrs.get("id"):
            self._paragraph = attrs["id"]
            self.paragraphs[self._paragraph] = ""
        elif self._table is None:
            return
        elif tag in ("thead", "tbody"):
            self._part = attrs.get("class") or tag
        elif tag == "tr":
            self._table.rows.append([])
            self._table.row_attrs.append(attrs)
            self._table.row_parts.append(self._part)
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "p":
            self._paragraph = None
        elif tag in ("td", "th") and self._cell is not None:
            self._table.rows[-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._paragraph is not None:
            self.paragraphs[self._paragraph] += data

    @property
    def rows(self):
        return self.tables["toa-report"].rows

    @property
    def row_attrs(self):
        return self.tables["toa-report"].row_attrs

    @property
    def summary(self):
        return self.paragraphs.get("summary")


def read_tables(dom):
    reader = TableReader()
    reader.feed(dom)
    reader.close()
    return reader
