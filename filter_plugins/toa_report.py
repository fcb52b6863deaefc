# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn per-host toa_facts/toa_probe results into the fleet report.

Controller side only (playbooks/report.yml, through `filter_plugins` in
ansible.cfg), so plain Python 3. Pure functions on plain data: the play hands
over one record per host, shaped like roles/toa/tasks/report.yml builds it:

    {"host": "web1",
     "facts": <toa_facts result or null>,       # registered result, with ansible_facts.toa
     "probe": <toa_probe result or null>,       # registered result, expect=any
     "probe_skipped": false}

    rows = records | toa_report_rows          -> one dict per host (ROW_KEYS), those
                                                 that need attention first
    rows | toa_report_markdown / toa_report_csv / toa_report_html(title, generated)
    rows | toa_report_summary                 -> "3 hosts: 2 TOA working, 1 not installed"
"""

import csv
import html
import io

# Counters shown per host, in this order; missed_* are summed into "missed".
COUNTERS = ("accepted", "rejected_untrusted", "rejected_malformed", "getname_rewrites", "entries_live")

# Refusal counters of toa.ko 2.0 shown in one cell (rejected_untrusted and
# rejected_malformed have columns of their own), by their short names.
NEW_REFUSALS = (("rejected_multiple", "multiple"), ("rejected_syn_mismatch", "syn_mismatch"),
                ("fastopen_without_toa", "fastopen_without_toa"))

# Every row has these keys (the CSV columns, in order). lost, hooks and reload
# come from toa_facts' summary (ansible_facts.toa.counters, toa.module).
ROW_KEYS = ("host", "status", "os", "kernel", "route", "loaded", "version", "autoload", "probe",
            "probe_peer") + COUNTERS + ("missed", "missed_detail", "lost", "lost_detail",
                                        "refused", "hooks", "reload")

# Status of a host, most useful first; the summary counts them in this order.
STATUSES = (
    ("working", "TOA working"),
    ("losing", "TOA working but losing client addresses"),
    ("reload_pending", "TOA working, reload pending"),
    ("probe_failed", "loaded but probe failed"),
    ("probe_error", "loaded but probe error"),
    ("not_probed", "loaded, not probed"),
    ("not_loaded", "installed but not loaded"),
    ("not_installed", "not installed"),
    ("no_facts", "unreachable or facts failed"),
)
STATUS_TEXT = dict(STATUSES)

# Hosts in these states are listed first: verification fails on them.
ATTENTION = ("no_facts", "probe_failed", "probe_error", "not_loaded", "losing", "reload_pending")

# Markdown/HTML column headings for the row keys shown there.
COLUMNS = (
    ("host", "Host"), ("os", "OS"), ("kernel", "Kernel"), ("route", "Route"),
    ("loaded", "TOA loaded"), ("version", "Module version"), ("autoload", "Autoload"),
    ("probe", "Probe"), ("accepted", "accepted"), ("rejected_untrusted", "rejected untrusted"),
    ("rejected_malformed", "rejected malformed"), ("getname_rewrites", "getname rewrites"),
    ("entries_live", "entries live"), ("missed", "missed"), ("lost", "lost addresses"),
    ("refused", "other refusals"), ("hooks", "hooks"), ("reload", "reload"), ("status", "Status"),
)

NONE = "-"


def _mapping(value):
    return value if isinstance(value, dict) else {}


def _text(value, default=NONE):
    if value is None or value == "":
        return default
    return str(value)


def _first_line(text, limit=160):
    line = " ".join(str(text or "").strip().splitlines()[:1]).strip()
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _strip(msg):
    """A module's message without the 'Task failed: ' ansible-core 2.19 puts in front."""
    msg = str(msg or "").strip()
    return msg[len("Task failed: "):] if msg.startswith("Task failed: ") else msg


def _failure(result):
    """Error text of a registered result that failed or did not reach the host, else None.

    The role registers with `failed_when: false` (a report must not stop at one
    host), which clears `failed`; a module's failure still shows as its `msg`.
    toa_probe and toa_facts return no `msg` on success.
    """
    result = _mapping(result)
    if result.get("unreachable"):
        return "unreachable: " + _first_line(_strip(result.get("msg")) or "no answer")
    if result.get("failed") or (result.get("msg") and not result.get("matches")
                                and not _mapping(result.get("ansible_facts")).get("toa")):
        return _first_line(_strip(result.get("msg")) or "failed without a message")
    return None


def _address(address, port):
    if not address:
        return ""
    address = str(address)
    if ":" in address:  # IPv6 (or v4-mapped) address: bracket it before the port
        address = "[%s]" % address
    return "%s:%s" % (address, port) if port not in (None, "") else address


def _os(host):
    name = host.get("distribution") or host.get("id") or ""
    version = host.get("full_version") or host.get("version") or ""
    text = ("%s %s" % (name, version)).strip()
    arch = host.get("arch")
    if text and arch and arch != "x86_64":
        text += " (%s)" % arch
    return text or NONE


def _route(toa):
    route = toa.get("route")
    if isinstance(route, dict) and route.get("route"):
        text = route["route"]
        package = route.get("package")
        if isinstance(package, dict) and package.get("id"):
            text += " (%s)" % package["id"]
        return text
    if toa.get("route_error"):
        return "none: " + _first_line(toa["route_error"], 80)
    return NONE


def _autoload(autoload):
    if not autoload:
        return NONE
    methods = autoload.get("methods") or []
    text = "yes (%s)" % ", ".join(methods) if autoload.get("enabled") and methods else (
        "yes" if autoload.get("enabled") else "no")
    problems = autoload.get("problems") or []
    if problems:
        text += "; %d problem%s: %s" % (len(problems), "" if len(problems) == 1 else "s",
                                        _first_line(problems[0], 100))
    return text


def _probe(record):
    """(cell text, seen address, outcome) where outcome is rewritten/unrewritten/error/skipped."""
    probe = record.get("probe")
    if record.get("probe_skipped") or (probe is None and record.get("facts") is not None):
        return "skipped", "", "skipped"
    probe = _mapping(probe)
    if probe.get("skipped"):
        return "skipped", "", "skipped"
    seen = _address(probe.get("peer_address"), probe.get("peer_port"))
    error = _failure(probe)
    if error:
        text = "probe error: " + error
        if seen:
            text += " (saw %s)" % seen
        return text, seen, "error"
    state = probe.get("peer_state")
    if probe.get("rewritten") or state == "rewritten":
        return "rewritten (%s)" % seen, seen, "rewritten"
    if state == "unrewritten":
        return "not rewritten (saw %s, the proxy)" % seen, seen, "unrewritten"
    return "probe error: unexpected peer %s" % (seen or "?"), seen, "error"


def _counters(stats):
    cells = {}
    for name in COUNTERS:
        cells[name] = _text(stats.get(name)) if stats else NONE
    missed = sorted((key, value) for key, value in stats.items()
                    if key.startswith("missed_") and isinstance(value, int))
    if not missed:
        cells["missed"] = NONE
        cells["missed_detail"] = ""
    else:
        cells["missed"] = str(sum(value for _key, value in missed))
        cells["missed_detail"] = " ".join("%s=%d" % (key[len("missed_"):], value)
                                          for key, value in missed if value)
    return cells


def _losses(counters):
    """(lost cell, detail, whether addresses were lost) from toa_facts' counters summary."""
    if not counters or counters.get("lost") is None:
        return NONE, "", False
    nonzero = _mapping(counters.get("lost_nonzero"))
    if nonzero:
        return "yes", " ".join("%s=%s" % (key, nonzero[key]) for key in sorted(nonzero)), True
    unknown = counters.get("lost_unknown") or []
    return "no", ("%d not printed by this module" % len(unknown)) if unknown else "", False


def _refused(counters):
    refusals = _mapping(_mapping(counters).get("refusals"))
    parts = ["%s=%s" % (short, refusals[name]) for name, short in NEW_REFUSALS
             if refusals.get(name) is not None]
    return " ".join(parts) or NONE


def _hooks(counters):
    ftrace = _mapping(counters).get("hooks_ftrace")
    return {True: "ftrace", False: "kprobes"}.get(ftrace, NONE)


def _reload(module):
    if not module.get("loaded"):
        return NONE
    if module.get("reload_pending"):
        return "pending (loaded %s, installed %s)" % (module.get("srcversion"),
                                                      module.get("file_srcversion"))
    if "reload_pending" not in module or not module.get("file_srcversion"):
        return NONE  # nothing to compare: an older toa_facts, or no srcversion
    return "no"


def host_row(record):
    """One report row (a dict with ROW_KEYS) from one host's record."""
    record = _mapping(record)
    row = dict.fromkeys(ROW_KEYS, NONE)
    row["host"] = _text(record.get("host"), "?")
    row["probe_peer"] = ""
    row["missed_detail"] = ""
    row["lost_detail"] = ""
    facts_result = record.get("facts")
    error = _failure(facts_result) if facts_result is not None else "no result from toa_facts"
    toa = _mapping(_mapping(_mapping(facts_result).get("ansible_facts")).get("toa"))
    if error or not toa:
        row["status"] = "no_facts"
        row["probe"] = "not run: " + (error or "toa_facts returned no facts")
        return row
    host = _mapping(toa.get("host"))
    module = _mapping(toa.get("module"))
    kernels = _mapping(toa.get("kernels"))
    row["os"] = _os(host)
    row["kernel"] = _text(kernels.get("running") or host.get("kernel"))
    if kernels.get("running_is_toa"):
        row["kernel"] += " (TOA kernel)"
    row["route"] = _route(toa)
    loaded = bool(module.get("loaded") or module.get("builtin"))
    row["loaded"] = "built in" if module.get("builtin") else ("yes" if module.get("loaded") else "no")
    row["version"] = _text(module.get("version"))
    row["autoload"] = _autoload(_mapping(toa.get("autoload")))
    row["probe"], row["probe_peer"], outcome = _probe(record)
    row.update(_counters(_mapping(toa.get("stats"))))
    counters = _mapping(toa.get("counters"))
    row["lost"], row["lost_detail"], lost = _losses(counters)
    row["refused"] = _refused(counters)
    row["hooks"] = _hooks(counters)
    row["reload"] = _reload(module)
    if outcome == "rewritten":
        row["status"] = "working"
    elif loaded:
        row["status"] = {"unrewritten": "probe_failed", "error": "probe_error"}.get(outcome, "not_probed")
    elif module.get("available"):
        row["status"] = "not_loaded"
    else:
        row["status"] = "not_installed"
    if row["status"] in ("working", "not_probed"):
        if lost:
            row["status"] = "losing"
        elif module.get("reload_pending"):
            row["status"] = "reload_pending"
    return row


def toa_report_rows(records, hosts=None):
    """Rows for a list of host records: those that need attention (ATTENTION) first, then
    the others, each part sorted by host name.

    `hosts` (e.g. ansible_play_hosts_all) adds a row for every host without a
    record: one that failed or vanished before the report task ran.
    """
    rows = [host_row(record) for record in (records or [])]
    seen = set(row["host"] for row in rows)
    for host in hosts or []:
        if str(host) not in seen:
            rows.append(host_row({"host": str(host), "facts": {
                "failed": True, "msg": "no record: the host failed before the report task"}}))
    return sorted(rows, key=lambda row: (row["status"] not in ATTENTION, row["host"]))


def toa_report_summary(rows):
    """One line: '12 hosts: 10 TOA working, 1 loaded but probe failed, 1 not installed'."""
    rows = list(rows or [])
    counts = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    parts = ["%d %s" % (counts[key], text) for key, text in STATUSES if counts.get(key)]
    head = "%d host%s" % (len(rows), "" if len(rows) == 1 else "s")
    return head + (": " + ", ".join(parts) if parts else "")


def _cell(row, key):
    value = row.get(key, NONE)
    if key == "status":
        return STATUS_TEXT.get(value, value)
    if key == "missed" and row.get("missed_detail"):
        return "%s (%s)" % (value, row["missed_detail"])
    if key == "lost" and row.get("lost_detail"):
        return "%s (%s)" % (value, row["lost_detail"])
    return _text(value)


def _md_escape(text):
    return (text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
            .replace("<", "&lt;").replace(">", "&gt;"))


def toa_report_markdown(rows, title="TOA fleet report", generated=""):
    lines = ["# %s" % _md_escape(title), ""]
    if generated:
        lines += ["Generated %s." % _md_escape(str(generated)), ""]
    lines += [toa_report_summary(rows) + ".", ""]
    lines.append("| " + " | ".join(heading for _key, heading in COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for row in rows or []:
        lines.append("| " + " | ".join(_md_escape(_cell(row, key)) for key, _heading in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def toa_report_csv(rows):
    """CSV with a header line of ROW_KEYS; status as its key (working, not_installed, ...)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ROW_KEYS)
    for row in rows or []:
        values = []
        for key in ROW_KEYS:
            value = str(row.get(key, ""))
            # A spreadsheet must not run a cell as a formula.
            if value[:1] in ("=", "+", "@") or (value[:1] == "-" and value != NONE):
                value = "'" + value
            values.append(value)
        writer.writerow(values)
    return out.getvalue()


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem; color: #1b1f24; }
h1 { font-size: 1.4rem; margin: 0 0 .3rem; }
p.meta { color: #57606a; margin: 0 0 1rem; }
p.summary { font-weight: 600; }
table { border-collapse: collapse; font-size: .85rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; position: sticky; top: 0; }
th.host { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.working td.status { background: #dafbe1; }
tr.probe_failed td.status, tr.probe_error td.status, tr.no_facts td.status,
tr.losing td.status, tr.losing td.lost { background: #ffebe9; }
tr.not_loaded td.status, tr.not_probed td.status, tr.reload_pending td.status,
tr.reload_pending td.reload { background: #fff8c5; }
tr.not_installed td.status { background: #eaeef2; }
"""

_NUMERIC = set(COUNTERS) | {"missed"}


def toa_report_html(rows, title="TOA fleet report", generated=""):
    """A self-contained page: inline CSS, no script, no external asset, every value escaped."""
    esc = html.escape
    rows = list(rows or [])
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>%s</title>" % esc(title),
        "<style>%s</style>" % _STYLE,
        "</head>",
        "<body>",
        "<h1>%s</h1>" % esc(title),
    ]
    if generated:
        out.append('<p class="meta">Generated %s.</p>' % esc(str(generated)))
    out.append('<p class="summary" id="summary">%s</p>' % esc(toa_report_summary(rows)))
    out.append('<table id="toa-report">')
    out.append("<thead><tr>%s</tr></thead>" % "".join(
        '<th scope="col" data-key="%s">%s</th>' % (esc(key), esc(heading)) for key, heading in COLUMNS))
    out.append("<tbody>")
    for row in rows:
        cells = []
        for key, _heading in COLUMNS:
            css = [key] + (["num"] if key in _NUMERIC else [])
            tag = "th" if key == "host" else "td"
            scope = ' scope="row"' if tag == "th" else ""
            cells.append('<%s%s class="%s">%s</%s>' % (tag, scope, " ".join(css), esc(_cell(row, key)), tag))
        out.append('<tr class="%s" data-host="%s">%s</tr>' % (
            esc(str(row.get("status", ""))), esc(str(row.get("host", ""))), "".join(cells)))
    out.append("</tbody>")
    out.append("</table>")
    out.append("</body>")
    out.append("</html>")
    return "\n".join(out) + "\n"


class FilterModule(object):
    def filters(self):
        return {
            "toa_report_rows": toa_report_rows,
            "toa_report_summary": toa_report_summary,
            "toa_report_markdown": toa_report_markdown,
            "toa_report_csv": toa_report_csv,
            "toa_report_html": toa_report_html,
        }
