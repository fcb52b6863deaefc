"""One license per part, stated in LICENSE, and every header and metadata agreeing with it:
GPL-2.0-only for the kernel module source, GPL-3.0-or-later for everything else."""

import glob
import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KMOD = os.path.join(ROOT, "roles", "toa", "files", "toa-src")
GPL3_HEADER = "# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)"


def read(*parts):
    with open(os.path.join(ROOT, *parts)) as handle:
        return handle.read()


def test_the_license_texts_are_there():
    assert "GNU GENERAL PUBLIC LICENSE\n                       Version 3, 29 June 2007" in read("COPYING")
    assert "GNU GENERAL PUBLIC LICENSE\n                       Version 2, June 1991" in read(
        "roles", "toa", "files", "toa-src", "COPYING")
    statement = read("LICENSE")
    assert "GPL-2.0-only" in statement and "roles/toa/files/toa-src/COPYING" in statement
    assert "GPL-3.0-or-later" in statement and "Full text: COPYING" in statement


def test_every_kernel_module_source_file_is_gpl_2_0():
    names = [name for name in sorted(os.listdir(KMOD))
             if name.endswith((".c", ".h")) or name in ("Kbuild", "Kconfig", "Makefile")]
    assert len(names) >= 10
    for name in names:
        with open(os.path.join(KMOD, name)) as handle:
            first = handle.readline()
        assert "SPDX-License-Identifier: GPL-2.0" in first and "or-later" not in first, name
    assert 'MODULE_LICENSE("GPL");' in read("roles", "toa", "files", "toa-src", "toa_main.c")


def test_every_module_util_and_filter_carries_the_gpl_3_0_header():
    files = sorted(glob.glob(os.path.join(ROOT, "library", "*.py"))
                   + glob.glob(os.path.join(ROOT, "module_utils", "*.py"))
                   + glob.glob(os.path.join(ROOT, "filter_plugins", "*.py")))
    assert len(files) >= 12
    for path in files:
        with open(path) as handle:
            head = handle.read(600)
        assert GPL3_HEADER in head, os.path.relpath(path, ROOT)
        assert "GPL-2.0" not in head and "General Public License v2" not in head, path


def test_role_and_collection_metadata_name_both_licenses():
    meta = yaml.safe_load(read("roles", "toa", "meta", "main.yml"))["galaxy_info"]
    assert meta["license"] == "GPL-3.0-or-later AND GPL-2.0-only"
    galaxy = yaml.safe_load(read("collection", "galaxy.yml"))
    assert galaxy["license"] == ["GPL-3.0-or-later", "GPL-2.0-only"]


def test_the_readme_says_it():
    readme = read("README.md")
    section = readme[readme.index("\n## License\n"):]
    assert "GPL-3.0-or-later" in section and "GPL-2.0-only" in section
    assert "LICENSE" in section and "COPYING" in section
