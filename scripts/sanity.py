#!/usr/bin/env python3
"""ansible-test sanity on the collection that collection/galaxy.yml builds.

For each ansible-core (default: the current one in $TOA_VENV and 2.16 in
$TOA_VENV_SANITY_LEGACY, which together cover Python 2.7 and 3.6 to 3.13) it
builds the collection with tools/build_collection.py, installs the tarball
into $TOA_CACHE/sanity/<version>/ansible_collections/toa_fleet/toa (outside
the git work tree: inside it ansible-test lists files with git, and finds
none in an ignored directory) and runs

    ansible-test sanity --local --color no

there, with every Python that ansible-core's ansible-test supports and this
machine has (compile and import run once per Python version; a version that
is missing is reported and skipped).  Works offline with a package index:

* --local: ansible-test runs in the venv given (its own --venv delegation
  would need virtualenv in a fresh venv for the Python 2.7 import test); the
  sanity tools (pylint, pycodestyle, voluptuous, ...) still go into venvs
  that ansible-test makes and caches per test.
* ansible-test bootstraps pip in each venv with get-pip.py from its own
  download site.  Where that file is not cached, this script caches a short
  stand-in that runs the same pip version from its wheel, fetched with pip
  from the configured index.
* ansible-test's home (its venvs, that cache) is $TOA_CACHE/ansible-test, not
  ~/.ansible.

    scripts/sanity.py                         both ansible-core versions
    scripts/sanity.py --venv "$TOA_VENV"      one
    scripts/sanity.py -- --test validate-modules   arguments for ansible-test
"""

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("TOA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "toa-fleet")
WORK = os.path.join(CACHE, "sanity")
HOME = os.path.join(CACHE, "ansible-test")
SHOWN = re.compile(r"^(Running sanity test|ERROR|FATAL|WARNING)")

# What the bootstrap stand-in does: get-pip.py's own work (run pip from a
# bundled copy: install --upgrade --force-reinstall the pip version asked
# for), from the wheel beside it.  Python 2.7 and 3 alike.
GET_PIP = '''\
# Stand-in for get-pip.py %(version)s, written by toa-fleet scripts/sanity.py
# because ansible-test's download site is not reachable here: runs pip
# %(version)s from its wheel (fetched from the package index) to install
# pip into the new virtual environment, as get-pip.py does.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), %(wheel)r))
from pip._internal.cli.main import main  # noqa: E402

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall"] + args))
'''

# Asked of the venv's own ansible-test: its Python versions, and the pip
# version it bootstraps into a venv of each.
QUERY = '''
import json, types
from ansible.release import __version__
from ansible_test._internal.constants import SUPPORTED_PYTHON_VERSIONS
from ansible_test._internal.python_requirements import get_venv_packages
print(json.dumps({"core": __version__, "pythons": list(SUPPORTED_PYTHON_VERSIONS),
                  "pip": sorted({get_venv_packages(types.SimpleNamespace(version=v))["pip"]
                                 for v in SUPPORTED_PYTHON_VERSIONS})}))
'''


def log(msg):
    print("sanity: %s" % msg, flush=True)


def find_python(version):
    """A working pythonX.Y: on PATH, in /usr/bin, or installed by pyenv (its shims need a
    `pyenv global` naming the version, so the interpreters are used directly)."""
    name = "python%s" % version
    candidates = [shutil.which(name), "/usr/bin/" + name, "/usr/local/bin/" + name]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/%s.*/bin/%s" % (version, name))))
    for path in candidates:
        if not path or not os.access(path, os.X_OK):
            continue
        try:
            out = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 universal_newlines=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out == version:
            return path
    return None


def python_dir(versions, path):
    """A directory of pythonX.Y links for ansible-test to find; returns (found, missing)."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)
    found, missing = [], []
    for version in versions:
        python = find_python(version)
        if python:
            os.symlink(python, os.path.join(path, "python%s" % version))
            found.append(version)
        else:
            missing.append(version)
    return found, missing


def seed_pip_bootstrap(venv, versions):
    """Cache a get-pip stand-in for each pip version that ansible-test bootstraps."""
    cache = os.path.join(HOME, ".ansible", "test", "cache")
    os.makedirs(cache, exist_ok=True)
    for version in versions:
        script = os.path.join(cache, "get_pip_%s.py" % version.replace(".", "_"))
        if os.path.exists(script):
            continue
        wheels = glob.glob(os.path.join(cache, "pip-%s-*.whl" % version))
        if not wheels:
            proc = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "download", "-q",
                                   "--no-deps", "--only-binary", ":all:", "-d", cache, "pip==%s" % version],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
            if proc.returncode:
                raise SystemExit("sanity: pip download pip==%s failed:\n%s" % (version, proc.stdout))
            wheels = glob.glob(os.path.join(cache, "pip-%s-*.whl" % version))
        if not wheels:
            raise SystemExit("sanity: pip download left no pip %s wheel in %s" % (version, cache))
        with open(script + ".tmp", "w") as handle:
            handle.write(GET_PIP % {"version": version, "wheel": os.path.basename(wheels[0])})
        os.rename(script + ".tmp", script)
        log("cached a pip %s bootstrap for ansible-test: %s" % (version, script))


def run_ansible_test(venv, extra):
    """Build, install and test the collection with the ansible-core in @venv; True when it passed."""
    bin_dir = os.path.join(venv, "bin")
    if not os.access(os.path.join(bin_dir, "ansible-test"), os.X_OK):
        raise SystemExit("sanity: no ansible-test in %s (scripts/setup.sh builds the venvs)" % venv)
    info = json.loads(subprocess.run([os.path.join(bin_dir, "python"), "-c", QUERY], check=True,
                                     stdout=subprocess.PIPE, universal_newlines=True).stdout)
    core = info["core"]
    work = os.path.join(WORK, core)
    if os.path.isdir(work):
        shutil.rmtree(work)
    os.makedirs(work)

    found, missing = python_dir(info["pythons"], os.path.join(work, "pythons"))
    log("ansible-core %s: Python %s%s" % (core, ", ".join(found),
                                          "; not on this machine, skipped: %s" % ", ".join(missing)
                                          if missing else ""))
    seed_pip_bootstrap(venv, info["pip"])

    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.join(work, "pythons"), bin_dir, env.get("PATH", "")])
    env["ANSIBLE_COLLECTIONS_PATH"] = work     # ansible-galaxy install: no "not configured" warning
    tarball = subprocess.run([os.path.join(bin_dir, "python"), os.path.join(ROOT, "tools", "build_collection.py"),
                              "--out", work], check=True, env=env, stdout=subprocess.PIPE,
                             universal_newlines=True).stdout.strip().splitlines()[-1]
    subprocess.run([os.path.join(bin_dir, "ansible-galaxy"), "collection", "install", "--force",
                    "-p", work, tarball], check=True, env=env, stdout=subprocess.DEVNULL)
    with open(os.path.join(ROOT, "collection", "galaxy.yml")) as handle:
        meta = yaml.safe_load(handle)
    collection = os.path.join(work, "ansible_collections", meta["namespace"], meta["name"])

    env["HOME"] = HOME
    command = [os.path.join(bin_dir, "ansible-test"), "sanity", "--local", "--color", "no"] + extra
    log_path = os.path.join(work, "ansible-test.log")
    log("ansible-core %s: %s (in %s; full output in %s)" % (
        core, " ".join(["ansible-test"] + command[1:]), collection, log_path))
    start = time.time()
    ran = 0
    with open(log_path, "w") as out:
        proc = subprocess.Popen(command, cwd=collection, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, universal_newlines=True)
        for line in proc.stdout:
            out.write(line)
            ran += line.startswith("Running sanity test")
            if SHOWN.match(line) and "Using locale" not in line and "Reviewing previous" not in line:
                print("  " + line.rstrip(), flush=True)
        proc.wait()
    passed = proc.returncode == 0 and ran > 0
    log("ansible-core %s: %s in %d s (%d test runs)" % (core, "passed" if passed else "FAILED",
                                                        time.time() - start, ran))
    return passed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", action="append",
                        help="virtualenv with the ansible-core to use (repeatable; default: $TOA_VENV and "
                             "$TOA_VENV_SANITY_LEGACY)")
    parser.add_argument("extra", nargs="*", help="arguments for ansible-test sanity, after --")
    args = parser.parse_args(argv)
    venvs = args.venv or [os.environ.get("TOA_VENV") or os.path.join(CACHE, "venv"),
                          os.environ.get("TOA_VENV_SANITY_LEGACY") or os.path.join(CACHE, "venv-sanity-legacy")]
    failed = [venv for venv in venvs if not run_ansible_test(os.path.abspath(venv), args.extra)]
    if failed:
        log("failed with: %s" % ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
