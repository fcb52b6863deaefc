#!/usr/bin/env python3
"""Size and render time of the fleet report's HTML page for generated fleets.

  python3 bench/report_page.py [--hosts 1,100,1000] [--reps 5] [--keep DIR]

For each fleet size it generates the hosts tests/host/test_report_fleet.py uses
(tests/host/report_fleet.py, same seed), renders the page with the filters
(toa_report_rows + toa_report_html) and loads it in headless Chromium
(--dump-dom, as the tests do) --reps times. A copy of the page gets one inline
script at the end of its body that records, in the page's own clock
(performance.now(), from the start of navigation):

  parsed    the whole body parsed (the script is its last element)
  laid out  after forcing style and layout of the whole page (scrollHeight)
  load      the load event

Chromium's wall time (start to exit, browser start-up included) is given too;
the 1-host row is the start-up cost to subtract. The page the report writes
has no script: the timed copy differs only by that script. Prints a Markdown
table (medians, min-max of the wall time) for docs/report.md. Asserts nothing.
"""

import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "host"), os.path.join(ROOT, "filter_plugins"),
                os.path.join(ROOT, "module_utils")]

import toa_report  # noqa: E402
from report_dom import CHROMIUM, dump_dom  # noqa: E402
from report_fleet import generate  # noqa: E402

TIMER = """<script>
(function () {
  var parsed = performance.now();
  var height = document.documentElement.scrollHeight;
  var laid = performance.now();
  var out = document.createElement("pre");
  out.id = "toa-timing";
  out.textContent = "parsed=" + parsed + " laid=" + laid + " height=" + height;
  document.body.appendChild(out);
  window.addEventListener("load", function () { out.textContent += " load=" + performance.now(); });
})();
</script>
"""


def render(count):
    """(page, seconds the filters took) for a generated fleet of `count` hosts."""
    _hosts, records = generate(count)
    start = time.monotonic()
    page = toa_report.toa_report_html(toa_report.toa_report_rows(records), generated="bench")
    return page, time.monotonic() - start


def timed_load(path):
    """(wall seconds, {parsed, laid, load, height}) of one Chromium load of the timed copy."""
    start = time.monotonic()
    dom = dump_dom(path, extra=["--window-size=1400,900"], timeout=300)
    wall = time.monotonic() - start
    match = re.search(r'<pre id="toa-timing">([^<]*)</pre>', dom)
    if not match:
        raise SystemExit("report_page.py: the timing script left nothing in the DOM of %s" % path)
    fields = dict(item.split("=") for item in match.group(1).split())
    return wall, dict((key, float(value)) for key, value in fields.items())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="1,100,1000", help="fleet sizes, comma-separated")
    parser.add_argument("--reps", type=int, default=5, help="Chromium loads per size (default 5)")
    parser.add_argument("--keep", help="write the pages (plain and timed) into this directory")
    args = parser.parse_args()
    if CHROMIUM is None:
        raise SystemExit("report_page.py: chromium is not installed")
    sizes = [int(size) for size in args.hosts.split(",")]
    work = args.keep or tempfile.mkdtemp(prefix="toa-report-bench-")
    os.makedirs(work, exist_ok=True)
    pages = {}
    for count in sizes:
        page, filters = render(count)
        path = os.path.join(work, "toa-report-%d.html" % count)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(page)
        timed = os.path.join(work, "toa-report-%d-timed.html" % count)
        with open(timed, "w", encoding="utf-8") as handle:
            handle.write(page.replace("</body>", TIMER + "</body>"))
        pages[count] = (len(page.encode("utf-8")), filters, timed, [])
    # sizes take turns, so a change in the machine's load spreads over all of them
    for _rep in range(args.reps):
        for count in sizes:
            pages[count][3].append(timed_load(pages[count][2]))

    print("%s, %s, %d CPUs, load average %.1f, %d loads per size; medians in ms"
          % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip(),
             os.cpu_count(), os.getloadavg()[0], args.reps))
    print()
    print("| hosts | page | filters | parsed | laid out | load event | Chromium wall (min-max) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for count in sizes:
        size, filters, _path, runs = pages[count]
        walls = [wall for wall, _fields in runs]

        def median(key, runs=runs):
            return statistics.median(fields[key] for _wall, fields in runs)

        print("| %d | %.0f kB | %.0f | %.0f | %.0f | %.0f | %.1f s (%.1f-%.1f) |" % (
            count, size / 1000.0, filters * 1000, median("parsed"), median("laid"), median("load"),
            statistics.median(walls), min(walls), max(walls)))
    if not args.keep:
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        os.rmdir(work)


if __name__ == "__main__":
    main()
