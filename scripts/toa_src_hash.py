#!/usr/bin/env python3
"""Keep the TOA module's version honest: a record of its source's sha256.

roles/toa/files/toa-src/SOURCE_SHA256 holds one line, "<VERSION> <sha256>",
the version and the hash of the source it was recorded for.  A unit test
(tests/unit/test_toa_src_hash.py) fails when the source no longer hashes to
the record or the record's version is not VERSION, so a change to the module
cannot ship under the version of the code before it.

    python3 scripts/toa_src_hash.py             # print "<VERSION> <sha256>" of the tree
    python3 scripts/toa_src_hash.py --check     # exit 1, saying why, when the record is stale
    python3 scripts/toa_src_hash.py --update    # rewrite the record (after bumping VERSION)

--update refuses a changed source under the recorded version: bump VERSION,
TOA_VERSION in toa.h, PACKAGE_VERSION in dkms.conf and toa_src_version in
roles/toa/defaults/main.yml first.  --force records it anyway (a change that
does not reach the built module).

The hash covers *.c, *.h, Kbuild, Kconfig, Makefile and dkms.conf, sorted by
name, and is the same as

    cd roles/toa/files/toa-src && LC_ALL=C ls -1 *.c *.h Kbuild Kconfig Makefile dkms.conf \\
        | LC_ALL=C sort | xargs sha256sum | sha256sum
"""

import argparse
import fnmatch
import hashlib
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "roles", "toa", "files", "toa-src")
RECORD = "SOURCE_SHA256"
PATTERNS = ("*.c", "*.h", "Kbuild", "Kconfig", "Makefile", "dkms.conf")


def source_files(src=SRC):
    """Names of the files the hash covers, sorted (byte order, as LC_ALL=C sort)."""
    names = [name for name in os.listdir(src)
             if os.path.isfile(os.path.join(src, name))
             and any(fnmatch.fnmatchcase(name, pattern) for pattern in PATTERNS)]
    return sorted(names)


def source_hash(src=SRC):
    """sha256 of the sha256sum listing of the source files."""
    listing = hashlib.sha256()
    for name in source_files(src):
        with open(os.path.join(src, name), "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
        listing.update(("%s  %s\n" % (digest, name)).encode("utf-8"))
    return listing.hexdigest()


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def versions(src=SRC):
    """The version as VERSION, toa.h (TOA_VERSION) and dkms.conf (PACKAGE_VERSION) say it."""
    found = {"VERSION": (_read(os.path.join(src, "VERSION")) or "").strip() or None}
    for name, pattern in (("toa.h", r'^#define\s+TOA_VERSION\s+"([^"]*)"'),
                          ("dkms.conf", r'^PACKAGE_VERSION=["\']?([^"\'\s]+)')):
        match = re.search(pattern, _read(os.path.join(src, name)) or "", re.M)
        found[name] = match.group(1) if match else None
    return found


def read_record(src=SRC):
    """(version, sha256) from the record, or None when there is none or it is malformed."""
    fields = (_read(os.path.join(src, RECORD)) or "").split()
    if len(fields) != 2 or not re.match(r"^[0-9a-f]{64}$", fields[1]):
        return None
    return fields[0], fields[1]


def problems(src=SRC):
    """What is stale, as sentences that say what to do; [] when the record holds."""
    found = []
    seen = versions(src)
    if len(set(seen.values())) != 1 or None in seen.values():
        found.append("The version differs between the files that carry it (%s): make VERSION, "
                     "TOA_VERSION in toa.h and PACKAGE_VERSION in dkms.conf the same."
                     % ", ".join("%s %s" % (name, seen[name] or "missing") for name in sorted(seen)))
    record = read_record(src)
    now = source_hash(src)
    if record is None:
        found.append("%s is missing or malformed: run scripts/toa_src_hash.py --update." % RECORD)
        return found
    version, recorded = record
    if recorded != now:
        found.append("The module source changed since %s was recorded for version %s (recorded "
                     "%s, now %s): bump VERSION (and toa.h, dkms.conf, toa_src_version) and run "
                     "scripts/toa_src_hash.py --update." % (RECORD, version, recorded[:12], now[:12]))
    if version != seen["VERSION"]:
        found.append("%s was recorded for version %s but VERSION is %s: run "
                     "scripts/toa_src_hash.py --update." % (RECORD, version, seen["VERSION"]))
    return found


def update(src=SRC, force=False):
    """Write the record for the tree as it is; refuses a source change without a version bump."""
    version = versions(src)["VERSION"]
    if not version:
        raise SystemExit("toa_src_hash: %s/VERSION is missing or empty" % src)
    now = source_hash(src)
    record = read_record(src)
    if record and record[0] == version and record[1] != now and not force:
        raise SystemExit("toa_src_hash: the module source changed but VERSION is still %s: bump "
                         "it (with toa.h, dkms.conf and toa_src_version) so hosts can tell the new "
                         "build from the old, then run --update again (--force only for a change "
                         "that does not reach the built module)." % version)
    with open(os.path.join(src, RECORD), "w", encoding="utf-8") as handle:
        handle.write("%s %s\n" % (version, now))
    return version, now


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="exit 1 when the record is stale")
    action.add_argument("--update", action="store_true", help="rewrite the record")
    parser.add_argument("--force", action="store_true",
                        help="with --update: record a changed source under the same version")
    parser.add_argument("--src", default=SRC, help="module source directory (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.update:
        print("%s %s" % update(args.src, force=args.force))
        return 0
    if args.check:
        found = problems(args.src)
        for line in found:
            print(line, file=sys.stderr)
        return 1 if found else 0
    print("%s %s" % (versions(args.src)["VERSION"], source_hash(args.src)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
