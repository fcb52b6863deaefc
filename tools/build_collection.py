#!/usr/bin/env python3
"""Build the toa_fleet.toa collection from the project's sources.

The repository is an Ansible project: modules in library/, their shared code
in module_utils/, filters in filter_plugins/, found through ansible.cfg.  A
collection keeps them in plugins/ and imports shared code by its full name,
so this script lays out a collection tree from

    collection/         galaxy.yml, meta/runtime.yml, README.md, tests/sanity/
    LICENSE, COPYING    -> the collection's root
    library/*.py        -> plugins/modules/
    module_utils/*.py   -> plugins/module_utils/
    filter_plugins/*.py -> plugins/filter/
    roles/toa/          -> roles/toa/

rewriting only the module_utils imports of the modules
(``from ansible.module_utils.toa_host import x`` becomes
``from ansible_collections.toa_fleet.toa.plugins.module_utils.toa_host import x``),
and runs ``ansible-galaxy collection build`` on it.

    tools/build_collection.py --out build/          # prints the tarball's path
    tools/build_collection.py --tree /tmp/c         # the tree only, no build

ansible-galaxy is taken from beside this interpreter, else from PATH.
"""

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
META = os.path.join(ROOT, "collection")
PLUGIN_DIRS = [("library", "modules"), ("module_utils", "module_utils"), ("filter_plugins", "filter")]
ROLES = ["toa"]
_CACHES = shutil.ignore_patterns("__pycache__", "*.pyc")
_KBUILD = shutil.ignore_patterns("*.o", "*.ko", ".*.cmd", "*.mod", "*.mod.c", "modules.order",
                                 "Module.symvers")


def SKIP(directory, names):
    """Python caches everywhere; kernel build leftovers except in toa-bpf, whose
    toa.bpf.o is the committed object the eBPF route installs."""
    ignored = set(_CACHES(directory, names))
    if os.path.basename(directory) != "toa-bpf":
        ignored |= set(_KBUILD(directory, names))
    return ignored


def galaxy():
    with open(os.path.join(META, "galaxy.yml")) as handle:
        return yaml.safe_load(handle)


def project_utils():
    return sorted(os.path.splitext(os.path.basename(path))[0]
                  for path in glob.glob(os.path.join(ROOT, "module_utils", "*.py")))


def rewrite_imports(text, namespace, name, utils):
    """Point imports of the project's module_utils at the collection's plugins/module_utils."""
    target = "ansible_collections.%s.%s.plugins.module_utils" % (namespace, name)
    names = "|".join(re.escape(util) for util in utils)
    # from ansible.module_utils.toa_host import a, b
    text = re.sub(r"^(\s*)from ansible\.module_utils\.(%s) import " % names,
                  r"\1from %s.\2 import " % target, text, flags=re.M)
    # from ansible.module_utils import toa_host
    text = re.sub(r"^(\s*)from ansible\.module_utils import (%s)\s*$" % names,
                  r"\1from %s import \2" % target, text, flags=re.M)
    # Anything left (import ansible.module_utils.toa_host, a list of names) would
    # break only inside the collection: refuse rather than build a broken one.
    left = re.findall(r"^.*ansible\.module_utils\b.*\b(?:%s)\b.*$" % names, text, flags=re.M)
    if left:
        raise SystemExit("build_collection: cannot rewrite %r; use `from ansible.module_utils.X import ...`"
                         % left)
    return text


def lay_out(tree):
    """Write the collection tree into the empty directory @tree."""
    info = galaxy()
    utils = project_utils()
    for entry in os.listdir(META):
        src = os.path.join(META, entry)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(tree, entry), ignore=SKIP)
        else:
            shutil.copy2(src, tree)
    for source, plugin in PLUGIN_DIRS:
        dest = os.path.join(tree, "plugins", plugin)
        os.makedirs(dest)
        for path in sorted(glob.glob(os.path.join(ROOT, source, "*.py"))):
            with open(path) as handle:
                text = rewrite_imports(handle.read(), info["namespace"], info["name"], utils)
            out = os.path.join(dest, os.path.basename(path))
            with open(out, "w") as handle:
                handle.write(text)
            shutil.copymode(path, out)
    for role in ROLES:
        shutil.copytree(os.path.join(ROOT, "roles", role), os.path.join(tree, "roles", role), ignore=SKIP)
    # Which part is under which license, and the GPL-3.0 text (the GPL-2.0 text
    # of the kernel module source travels with it in roles/toa/files/toa-src).
    for name in ("LICENSE", "COPYING"):
        shutil.copy2(os.path.join(ROOT, name), tree)
    return info


def ansible_galaxy():
    beside = os.path.join(os.path.dirname(sys.executable), "ansible-galaxy")
    return beside if os.access(beside, os.X_OK) else shutil.which("ansible-galaxy") or "ansible-galaxy"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="directory for the tarball (default: build/)")
    parser.add_argument("--tree", help="only lay out the collection tree in this new directory")
    args = parser.parse_args(argv)

    if args.tree:
        os.makedirs(args.tree)
        lay_out(args.tree)
        print(args.tree)
        return 0
    out = os.path.abspath(args.out or os.path.join(ROOT, "build"))
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="toa-collection-")
    try:
        tree = os.path.join(tmp, "tree")
        os.makedirs(tree)
        info = lay_out(tree)
        subprocess.run([ansible_galaxy(), "collection", "build", "--force", "--output-path", out, tree],
                       check=True, stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(tmp)
    tarball = os.path.join(out, "%s-%s-%s.tar.gz" % (info["namespace"], info["name"], info["version"]))
    if not os.path.isfile(tarball):
        raise SystemExit("build_collection: ansible-galaxy did not write %s" % tarball)
    print(tarball)
    return 0


if __name__ == "__main__":
    sys.exit(main())
