#!/usr/bin/env python3
"""A build root of an older release (Ubuntu 16.04 "xenial") to build its TOA kernel natively.

A kernel for a release is built with that release's compiler from that
release's archive.  A build root is a debootstrap of the release on this
machine: its gcc, make and python3 run at the machine's full speed, with no
guest.  This tool

* makes a root once per recipe (debootstrap of the suite from the archive the
  test bed's guest images use, then the build packages from the release,
  updates and security pockets) and caches it under
  $TOA_CACHE/buildroots/<suite>-<recipe key>; a changed recipe (suite,
  mirror, packages, or the code that makes the root) makes a new root;
* runs a command in a root: chroot with /proc mounted, /dev and /dev/pts
  bound, and the directories the command needs bound at the same path inside
  (so paths mean the same inside and out); everything it mounted is
  unmounted when the command ends, fails or the tool is stopped (SIGTERM,
  SIGHUP, SIGINT), and mounts a killed run left behind are removed before the
  next run and before a root is deleted.  One command runs in a root at a
  time (a lock in the root); another waits for it.

    toa_buildroot.py ensure [--suite xenial]         make the root if missing, print its path
    toa_buildroot.py path [--suite xenial]           print the path it has or would have
    toa_buildroot.py run ROOT [--bind DIR]... [--apt-update] -- CMD...
    toa_buildroot.py info ROOT                       print what the root was made of (JSON)

Needs root (debootstrap, mount, chroot).  Runs on the host's Python 3 and,
imported by build_toa_kernel.py inside the root, on xenial's Python 3.5.
"""

import argparse
import ast
import fcntl
import hashlib
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

CACHE = os.environ.get("TOA_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "toa-fleet")
ROOTS = os.path.join(CACHE, "buildroots")

# The archive the test bed's Ubuntu guests come from (testbed/toavm.py UBUNTU).
UBUNTU = "http://archive.ubuntu.com/ubuntu"
# Debian 12 packages no Ubuntu keyring: Ubuntu's own keyring package, accepted
# only with this hash (the same pin as testbed/toavm.py; a unit test keeps
# them equal); debootstrap checks the Release signatures with it.
UBUNTU_KEYRING_DEB = UBUNTU + "/pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb"
UBUNTU_KEYRING_SHA256 = "36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8"

# What a 4.4 kernel's `make bindeb-pkg` and build_toa_kernel.py need.  4.4
# ships its Kconfig and genksyms parsers pre-generated (*_shipped): no flex or
# bison (they are needed from 4.16 on).  libelf-dev for objtool where the
# config asks for it (Ubuntu's 4.4 has none), libssl-dev for sign-file and
# extract-cert, openssl for the module signing key certs/Makefile generates,
# perl for localmodconfig, bzip2 for Ubuntu's linux-source tarball, dpkg-dev
# and fakeroot for the packages, python3 (3.5) for build_toa_kernel.py itself.
XENIAL_PACKAGES = ["gcc", "make", "libc6-dev", "bc", "libelf-dev", "libssl-dev", "openssl", "kmod", "cpio",
                   "fakeroot", "dpkg-dev", "python3", "patch", "perl", "bzip2", "xz-utils"]
# Commands the whole build runs in the root; a root without one is refused
# before the build starts (see missing_tools).
BUILD_TOOLS = ("gcc", "make", "bc", "openssl", "perl", "cpio", "fakeroot", "dpkg-gencontrol", "dpkg-deb",
               "depmod", "bzip2", "xz", "patch", "python3", "apt-get")

RECIPES = {
    "xenial": {
        "distro": "ubuntu",
        "suite": "xenial",
        "mirror": UBUNTU,
        "arch": "amd64",
        "components": ["main"],
        "pockets": ["", "-updates", "-security"],
        "packages": XENIAL_PACKAGES,
        # What `info` and the host test check the root by.
        "expect": {"gcc": r"^gcc .*\) 5\.", "python3": r"^Python 3\.5\."},
    },
}

# Mounted into every root for a command: the kernel's process view and the
# host's device nodes (/dev/null, /dev/urandom, ptys).
BASE_MOUNTS = (("proc", "/proc"), ("bind", "/dev"), ("bind", "/dev/pts"))
CHROOT_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root",
              "DEBIAN_FRONTEND": "noninteractive"}
INFO = "etc/toa-buildroot.json"
HOST_RESOLV = "/etc/resolv.conf"
LOCK = "etc/toa-buildroot.lock"


class BuildrootError(Exception):
    """The root cannot be made or used; the text says what to change."""


def log(text):
    sys.stderr.write("[%s] toa_buildroot: %s\n" % (time.strftime("%H:%M:%S"), text))
    sys.stderr.flush()


def sources_list(recipe):
    return "".join("deb %s %s%s %s\n" % (recipe["mirror"], recipe["suite"], pocket, " ".join(recipe["components"]))
                   for pocket in recipe["pockets"])


def recipe_key(suite):
    """Hash of everything that decides a root's content: the recipe and the code that makes it.

    The functions' syntax trees, not their text: a comment does not make a new root.
    """
    if suite not in RECIPES:
        raise BuildrootError("unknown build root suite %r; known: %s" % (suite, ", ".join(sorted(RECIPES))))
    h = hashlib.sha256()
    h.update(json.dumps(RECIPES[suite], sort_keys=True).encode())
    for fn in (debootstrap_argv, make_root, _configure_root, sources_list):
        h.update(ast.dump(ast.parse(textwrap.dedent(inspect.getsource(fn)))).encode())
    return h.hexdigest()[:16]


def root_path(suite, roots=None):
    return os.path.join(roots or ROOTS, "%s-%s" % (suite, recipe_key(suite)))


def debootstrap_argv(recipe, target, keyring):
    return ["debootstrap", "--variant=minbase", "--arch=" + recipe["arch"],
            "--components=" + ",".join(recipe["components"]), "--keyring=" + keyring,
            recipe["suite"], target, recipe["mirror"]]


# ---------------------------------------------------------------- mounts

def _under(path, root):
    root = root.rstrip("/")
    return path == root or path.startswith(root + "/")


def mount_plan(root, binds=()):
    """The mounts for a command in `root`, in order: [(argv, target)].

    /proc, /dev and /dev/pts, then each bound directory at the same path inside
    (parents before children).  A bind must be an absolute, existing directory,
    not / and not inside the root itself.
    """
    root = os.path.abspath(root)
    plan = []
    for kind, path in BASE_MOUNTS:
        target = root + path
        if kind == "proc":
            plan.append((["mount", "-t", "proc", "proc", target], target))
        else:
            plan.append((["mount", "--bind", path, target], target))
    seen = set()
    for path in sorted((os.path.normpath(b) for b in binds), key=lambda p: (p.count("/"), p)):
        if not os.path.isabs(path):
            raise BuildrootError("--bind %s: give an absolute path" % path)
        if path == "/":
            raise BuildrootError("--bind /: the whole host would be writable inside; bind the directories "
                                 "the command needs")
        if _under(path, root):
            raise BuildrootError("--bind %s is inside the root %s itself" % (path, root))
        if _under(root, path):
            raise BuildrootError("--bind %s holds the root %s: it would appear inside itself; bind a "
                                 "directory beside the root" % (path, root))
        if any(_under(path, b) for b in seen) or path in ("/proc", "/dev", "/dev/pts"):
            continue  # already visible through a parent bind
        seen.add(path)
        plan.append((["mount", "--bind", path, root + path], root + path))
    return plan


def missing_tools(root, tools=BUILD_TOOLS):
    """The tools not found on the root's PATH, looked up from the host (nothing is run)."""
    dirs = CHROOT_ENV["PATH"].split(":")
    return [tool for tool in tools
            if not any(os.access(os.path.join(root + d, tool), os.X_OK) for d in dirs)]


def unmount_plan(targets):
    """Unmount in reverse order of mounting: [argv]."""
    return [["umount", t] for t in reversed(list(targets))]


def _unescape_mountinfo(text):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def mounts_under(root, mountinfo_text=None):
    """Mount points at or below `root` (from /proc/self/mountinfo), deepest first."""
    if mountinfo_text is None:
        with open("/proc/self/mountinfo") as f:
            mountinfo_text = f.read()
    root = os.path.abspath(root)
    found = []
    for line in mountinfo_text.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            point = _unescape_mountinfo(fields[4])
            if _under(point, root) and point != root:
                found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def unmount_all(targets, say=log):
    """Unmount, lazily where a plain umount is refused (a process still holds it)."""
    left = []
    for argv in unmount_plan(targets):
        if subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
            if subprocess.run(["umount", "-l", argv[-1]], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode != 0:
                left.append(argv[-1])
    if left:
        say("could not unmount %s: unmount them by hand (umount -l) before deleting the root"
            % ", ".join(left))
    return left


def clear_stale_mounts(root, say=log):
    stale = mounts_under(root)
    if stale:
        say("unmounting %d mounts a stopped run left in %s" % (len(stale), root))
        # mounts_under lists deepest first; unmount_all reverses its input.
        return unmount_all(list(reversed(stale)), say)
    return []


class _Stop(Exception):
    pass


def _raise_stop(signum, _frame):
    raise _Stop(signum)


def run_in_root(root, argv, binds=(), env=None, stdout=None, say=log):
    """Run argv in the root with the mount plan; unmount on every way out.  Returns the exit code.

    A SIGTERM, SIGHUP or SIGINT to this process stops the command (SIGTERM,
    then SIGKILL after 20 s), unmounts, and exits 128+signal.
    """
    root = os.path.abspath(root)
    if not os.path.isfile(os.path.join(root, INFO)):
        raise BuildrootError("%s is not a finished build root (no /%s); make one with "
                             "toa_buildroot.py ensure" % (root, INFO))
    if os.geteuid() != 0:
        raise BuildrootError("running a command in a build root needs root (mount, chroot)")
    # One command at a time per root: what is mounted under it when we hold
    # the lock was left by a stopped run, never another command's.
    lock = open(os.path.join(root, LOCK), "w")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            say("another command runs in %s: waiting for it" % root)
            fcntl.flock(lock, fcntl.LOCK_EX)
        return _run_locked(root, argv, binds, env, stdout, say)
    finally:
        lock.close()


def _run_locked(root, argv, binds, env, stdout, say):
    clear_stale_mounts(root, say)
    # Name resolution for apt inside: the host's resolver, as a file.
    with open(HOST_RESOLV) as src, open(os.path.join(root, "etc", "resolv.conf.toa"), "w") as dst:
        dst.write(src.read())
    resolv = os.path.join(root, "etc", "resolv.conf")
    if os.path.islink(resolv):
        os.unlink(resolv)
    os.replace(resolv + ".toa", resolv)
    full_env = dict(CHROOT_ENV)
    full_env.update(env or {})
    mounted = []
    old = {}
    proc = None
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            old[sig] = signal.signal(sig, _raise_stop)
        for mount_argv, target in mount_plan(root, binds):
            os.makedirs(target, exist_ok=True)
            subprocess.run(mount_argv, check=True)
            mounted.append(target)
        proc = subprocess.Popen(["chroot", root] + list(argv), env=full_env, cwd="/", stdout=stdout,
                                stdin=subprocess.DEVNULL)
        return proc.wait()
    except _Stop as stop:
        say("stopped by signal %d: stopping the command and unmounting" % stop.args[0])
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return 128 + stop.args[0]
    except subprocess.CalledProcessError as exc:
        raise BuildrootError("%s failed (exit %d)" % (" ".join(exc.cmd), exc.returncode))
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        unmount_all(mounted, say)


# ---------------------------------------------------------------- making a root

def ubuntu_keyring(workdir):
    """Ubuntu's archive keyring from its pinned package; the .gpg path."""
    deb = os.path.join(workdir, os.path.basename(UBUNTU_KEYRING_DEB))
    if not os.path.isfile(deb):
        with urllib.request.urlopen(UBUNTU_KEYRING_DEB, timeout=120) as resp, open(deb + ".tmp", "wb") as out:
            shutil.copyfileobj(resp, out)
        os.replace(deb + ".tmp", deb)
    with open(deb, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != UBUNTU_KEYRING_SHA256:
        os.unlink(deb)
        raise BuildrootError("Ubuntu keyring package hash mismatch: got %s, pinned %s (%s)"
                             % (digest, UBUNTU_KEYRING_SHA256, UBUNTU_KEYRING_DEB))
    out = os.path.join(workdir, "ubuntu-keyring")
    subprocess.run(["dpkg-deb", "-x", deb, out], check=True)
    return os.path.join(out, "usr", "share", "keyrings", "ubuntu-archive-keyring.gpg")


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _configure_root(root, recipe, nice):
    """Sources with every pocket, no docs or recommends, then the build packages."""
    _write(os.path.join(root, "etc/apt/sources.list"), sources_list(recipe))
    _write(os.path.join(root, "etc/dpkg/dpkg.cfg.d/01-toa-nodoc"),
           "path-exclude=/usr/share/doc/*\npath-include=/usr/share/doc/*/copyright\n"
           "path-exclude=/usr/share/man/*\npath-exclude=/usr/share/info/*\n"
           "path-exclude=/usr/share/locale/*\n")
    _write(os.path.join(root, "etc/apt/apt.conf.d/90toa-norecommends"),
           'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n')
    # No service starts in a build root.
    _write(os.path.join(root, "usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n", 0o755)
    _write(os.path.join(root, INFO), "{}\n")  # run_in_root wants it; filled in by make_root
    nice_argv = ["nice", "-n", str(nice)]
    for argv in (["apt-get", "update", "-qq"],
                 nice_argv + ["apt-get", "install", "-y", "-qq", "-o", "Dpkg::Use-Pty=0"] + recipe["packages"],
                 ["apt-get", "clean"]):
        rc = run_in_root(root, argv, stdout=sys.stderr)
        if rc != 0:
            raise BuildrootError("%s in the new root exited %d" % (" ".join(argv), rc))


def probe_versions(root, recipe):
    """What the root's tools say (gcc, python3), checked against the recipe's expectations."""
    found = {}
    for tool, pattern in sorted(recipe["expect"].items()):
        out = subprocess.run(["chroot", root, tool, "--version"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True, env=CHROOT_ENV)
        first = (out.stdout or "").strip().splitlines()[:1]
        found[tool] = first[0] if first else ""
        if out.returncode != 0 or not re.search(pattern, found[tool]):
            raise BuildrootError("%s in the root says %r, expected %s" % (tool, found[tool], pattern))
    return found


def make_root(suite, dest, nice=19):
    """debootstrap the suite into a fresh directory beside dest, configure it, then move it to dest."""
    recipe = RECIPES[suite]
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(dest) + ".making-", dir=parent)
    try:
        os.chmod(tmp, 0o755)  # the root's /: apt's _apt user must get through it
        keyring = ubuntu_keyring(parent)
        argv = ["nice", "-n", str(nice)] + debootstrap_argv(recipe, tmp, keyring)
        log("debootstrap %s from %s into %s (nice %d)" % (suite, recipe["mirror"], tmp, nice))
        start = time.time()
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        debootstrap_seconds = round(time.time() - start, 1)
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.splitlines()[-15:])
            raise BuildrootError("debootstrap exited %d; see %s/debootstrap/debootstrap.log:\n%s"
                                 % (proc.returncode, tmp, tail))
        log("debootstrap took %.1f s; installing the build packages" % debootstrap_seconds)
        start = time.time()
        _configure_root(tmp, recipe, nice)
        install_seconds = round(time.time() - start, 1)
        info = {"suite": suite, "key": recipe_key(suite), "recipe": recipe, "made": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                time.gmtime()), "debootstrap_seconds": debootstrap_seconds, "install_seconds": install_seconds,
                "versions": probe_versions(tmp, recipe)}
        _write(os.path.join(tmp, INFO), json.dumps(info, indent=1, sort_keys=True) + "\n")
        os.rename(tmp, dest)
        log("made %s (debootstrap %.1f s, packages %.1f s): %s" % (dest, debootstrap_seconds, install_seconds,
                                                                   ", ".join(info["versions"].values())))
        return info
    except BaseException:
        remove_root(tmp)
        raise


def remove_root(path):
    """Delete a root, never through a mount (a bound host directory would go with it)."""
    if not os.path.isdir(path):
        return
    if clear_stale_mounts(path) or mounts_under(path):
        raise BuildrootError("%s still has mounts; not deleting it" % path)
    shutil.rmtree(path, ignore_errors=True)


def ensure_root(suite="xenial", roots=None, nice=19):
    """The root of the suite's current recipe, made when missing (one maker at a time)."""
    dest = root_path(suite, roots)
    if os.path.isfile(os.path.join(dest, INFO)):
        return dest
    if os.geteuid() != 0:
        raise BuildrootError("making a build root needs root (debootstrap, mount, chroot)")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(os.path.join(os.path.dirname(dest), ".lock-" + suite), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.isfile(os.path.join(dest, INFO)):
            remove_root(dest)  # a half-made root from a stopped run
            make_root(suite, dest, nice)
    return dest


def read_info(root):
    with open(os.path.join(root, INFO)) as f:
        return json.load(f)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = ap.add_subparsers(dest="cmd")
    for name in ("ensure", "path"):
        p = sub.add_parser(name)
        p.add_argument("--suite", default="xenial", choices=sorted(RECIPES))
        p.add_argument("--roots", default=ROOTS, help="where roots are kept (default %(default)s)")
        p.add_argument("--nice", type=int, default=19)
    p = sub.add_parser("run")
    p.add_argument("root")
    p.add_argument("--bind", action="append", default=[], help="a host directory, bound at the same path inside")
    p.add_argument("--apt-update", action="store_true", help="apt-get update in the root first")
    p = sub.add_parser("info")
    p.add_argument("root")
    argv = list(sys.argv[1:] if argv is None else argv)
    command = []
    if "--" in argv:  # run's command: everything after the first --
        command = argv[argv.index("--") + 1:]
        argv = argv[:argv.index("--")]
    args = ap.parse_args(argv)
    try:
        if args.cmd == "path":
            print(root_path(args.suite, args.roots))
        elif args.cmd == "ensure":
            print(ensure_root(args.suite, args.roots, args.nice))
        elif args.cmd == "info":
            print(json.dumps(read_info(args.root), indent=1, sort_keys=True))
        elif args.cmd == "run":
            if not command:
                ap.error("run: give the command after --")
            if args.apt_update:
                rc = run_in_root(args.root, ["apt-get", "update", "-qq"], stdout=sys.stderr)
                if rc != 0:
                    return rc
            return run_in_root(args.root, command, args.bind)
        else:
            ap.error("give a command: ensure, path, run or info")
    except BuildrootError as exc:
        print("toa_buildroot: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
