#!/usr/bin/env python3
"""Build the TOA module once per kernel release and publish it as .deb packages.

The module route's prebuilt half (issue 16): a fleet on four kernel releases
gets four builds, on one build host, instead of one compile per host.  For
every release given (each built once, however often it is listed):

1. headers: ``linux-headers-<release>`` and the headers and kbuild packages it
   depends on (Debian: ``linux-headers-<abi>-common``, ``linux-kbuild-<series>``;
   Ubuntu: ``linux-headers-<abi>``), at the version the build host's apt offers
   (an exact ``(= v)`` dependency at that version), fetched with ``apt-get
   download`` and unpacked with ``dpkg-deb -x`` into a root of their own, so
   releases sit side by side and nothing is installed on the build host
2. compiler: the one the kernel was built with, read from the headers'
   ``CONFIG_CC_VERSION_TEXT`` (``gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0``):
   that command must exist with that upstream version, else the build stops
3. ``make -C <headers> M=<copy of toa-src> modules``; the module's vermagic
   must name the release; ``--sign-key``/``--sign-cert``: signed with the
   headers' own ``scripts/sign-file`` (the fleet's key, enrolled on its hosts)
4. package ``toa-kmod-<release>``: ``/lib/modules/<release>/updates/toa.ko``,
   ``depmod -a <release>`` in postinst and postrm
5. published to ``<mirror>/<subdir>/`` with ``SHA256SUMS``

A build is keyed by the module source's sha256, the release, the header
packages' versions, the compiler's version text, the signing certificate and
the recipe version; a key built before is taken from the cache
(``<work>/builds/<key>/``).  The last stdout line is the result as JSON (one
entry per release, and ``toa_module_packages``, what the fleet's inventory
needs); progress goes to stderr.  The build host must run the releases'
distribution (its compiler, its archive); only Debian 12 has been run.

    tools/build_toa_kmod.py --release 6.1.0-57-amd64 --release 6.1.0-56-amd64
"""

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import build_toa_kernel as btk  # noqa: E402  (Runner, fetch_deb, publish, versions)

RECIPE_VERSION = "2"  # 2: debug info stripped
CACHE = os.environ.get("TOA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "toa-fleet")
DEFAULT_SRC = os.path.join(os.path.dirname(HERE), "roles", "toa", "files", "toa-src")
# What scripts/toa_src_hash.py hashes: the files that reach the built module.
SOURCE_PATTERNS = (".c", ".h")
SOURCE_NAMES = ("Kbuild", "Kconfig", "Makefile", "dkms.conf")
MODULE = "toa"
# uname -r as the distributions write it: 6.1.0-57-amd64, 6.12.117+deb12-amd64, 5.15.0-91-generic
_RELEASE_RE = re.compile(r"^[0-9]+\.[0-9]+[A-Za-z0-9.+_~-]*$")
_DEP_RE = re.compile(r"^\s*([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)?\s*(?:\(\s*(<<|<=|=|>=|>>)\s*([^)\s]+)\s*\))?\s*$")


class BuildError(Exception):
    pass


def unique_releases(releases):
    """The releases to build, each once, in the order first given.

    Accepts several per item (comma or white space separated: a fleet list
    pasted as it comes); refuses what is no kernel release (a path, an option).
    """
    out = []
    for item in releases:
        for release in re.split(r"[\s,]+", item or ""):
            if not release:
                continue
            if not _RELEASE_RE.match(release):
                raise BuildError("%r is not a kernel release (uname -r, e.g. 6.1.0-57-amd64)" % release)
            if release not in out:
                out.append(release)
    return out


def source_sha256(src):
    """sha256 of the module source as scripts/toa_src_hash.py computes it: sha256sum
    of the sorted files' "<sha256>  <name>" lines."""
    names = sorted(n for n in os.listdir(src)
                   if os.path.isfile(os.path.join(src, n))
                   and (n.endswith(SOURCE_PATTERNS) or n in SOURCE_NAMES))
    if not names:
        raise BuildError("no module source in %s" % src)
    lines = "".join("%s  %s\n" % (btk.sha256_file(os.path.join(src, n)), n) for n in names)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def read_toa_version(src):
    with open(os.path.join(src, "VERSION")) as f:
        return f.read().strip()


def parse_depends(text):
    """A Depends field -> [(package, operator, version)], first of each alternative."""
    out = []
    for group in (text or "").split(","):
        first = group.split("|")[0]
        if not first.strip():
            continue
        match = _DEP_RE.match(first)
        if not match:
            raise BuildError("cannot read the dependency %r" % first.strip())
        out.append((match.group(1), match.group(2), match.group(3)))
    return out


def header_dependencies(depends_text):
    """The headers and kbuild packages a linux-headers-<release> package needs
    unpacked beside it: (package, exact version or None for the candidate)."""
    out = []
    for name, op, version in parse_depends(depends_text):
        if name.startswith("linux-headers-") or name.startswith("linux-kbuild-"):
            out.append((name, version if op == "=" else None))
    return out


def compiler_of(config_text):
    """(command, upstream version, full text) of the compiler a kernel was built with,
    from its .config's CONFIG_CC_VERSION_TEXT."""
    match = re.search(r'^CONFIG_CC_VERSION_TEXT="([^"]*)"', config_text, re.M)
    if not match:
        raise BuildError("the headers' .config has no CONFIG_CC_VERSION_TEXT (kernel older than 5.8?)")
    text = match.group(1)
    command = text.split()[0] if text.split() else ""
    version = re.search(r"(\d+\.\d+(?:\.\d+)?)\s*$", text)
    if not command or not version:
        raise BuildError("cannot read a compiler from CONFIG_CC_VERSION_TEXT=%r" % text)
    return command, version.group(1), text


def compiler_matches(kernel_text, host_first_line):
    """True when the build host's compiler (its --version first line) is the kernel's:
    the same command name and upstream version (a newer Debian revision of the same
    gcc release is the same compiler for module ABI purposes)."""
    command, version, _ = compiler_of('CONFIG_CC_VERSION_TEXT="%s"' % kernel_text)
    host = re.search(r"(\d+\.\d+(?:\.\d+)?)\s*$", host_first_line.strip())
    return bool(host) and host_first_line.split()[0] == command and host.group(1) == version


def package_name(release):
    """Debian package names are lower case: toa-kmod-6.1.0-57-amd64."""
    return "toa-kmod-%s" % release.lower()


def build_key(src_sha, toa_version, release, header_versions, compiler_text, cert_sha, deb_arch):
    inputs = {
        "recipe": RECIPE_VERSION,
        "source_sha256": src_sha,
        "toa_version": toa_version,
        "release": release,
        "headers": dict(header_versions),
        "compiler": compiler_text,
        "signing_cert_sha256": cert_sha,
        "deb_arch": deb_arch,
    }
    return inputs, btk.sha256_text(json.dumps(inputs, sort_keys=True))[:16]


def package_version(toa_version, key):
    """<module version>+k<key>: a new build of the same module version (new headers,
    compiler or key) is a newer-or-different version dpkg replaces."""
    return "%s+k%s" % (toa_version, key[:10])


def control_text(name, version, deb_arch, release, toa_version, headers_version, installed_kb, signed):
    return (
        "Package: %s\n"
        "Version: %s\n"
        "Architecture: %s\n"
        "Maintainer: toa-fleet <toa-fleet@localhost>\n"
        "Installed-Size: %d\n"
        "Section: kernel\n"
        "Priority: optional\n"
        "Description: TOA kernel module %s for Linux %s\n"
        " Prebuilt by toa-fleet (tools/build_toa_kmod.py) against linux-headers-%s\n"
        " %s%s. Installs /lib/modules/%s/updates/%s.ko and runs depmod.\n"
        % (name, version, deb_arch, installed_kb, toa_version, release, release, headers_version,
           ", signed" if signed else "", release, MODULE))


def maintainer_scripts(release):
    """postinst and postrm: depmod for this release only, when its module tree is there
    (a kernel removed before this package leaves none to index)."""
    body = ('#!/bin/sh\nset -e\n'
            'if [ -d /lib/modules/%(r)s/kernel ] && command -v depmod >/dev/null 2>&1; then\n'
            '\tdepmod -a %(r)s\nfi\n' % {"r": release})
    return {"postinst": body, "postrm": body}


def fleet_entry(result, subdir):
    return {"file": "%s/%s" % (subdir, result["name"]), "sha256": result["sha256"],
            "version": result["toa_version"], "package": result["package"],
            "package_version": result["package_version"]}


def fetch_exact(runner, package, version, dest):
    """package at exactly version, downloaded once."""
    for path in glob.glob(os.path.join(dest, "%s_*.deb" % package)):
        if btk.compare_versions(btk.deb_file_version(path, package), version) == 0:
            return path
    runner.say("downloading %s %s" % (package, version))
    runner.run(["apt-get", "download", "%s=%s" % (package, version)], cwd=dest, capture=True)
    for path in glob.glob(os.path.join(dest, "%s_*.deb" % package)):
        if btk.compare_versions(btk.deb_file_version(path, package), version) == 0:
            return path
    raise BuildError("apt-get download %s=%s left no such file in %s" % (package, version, dest))


def headers_root(runner, release, work):
    """Unpack the release's headers packages into a root of their own; returns
    (kernel build dir, {package: version})."""
    debs = os.path.join(work, "debs")
    os.makedirs(debs, exist_ok=True)
    main = btk.fetch_deb(runner, "linux-headers-%s" % release, debs)
    versions = {"linux-headers-%s" % release: btk.deb_field(runner, main, "Version")}
    paths = [main]
    for name, version in header_dependencies(btk.deb_field(runner, main, "Depends")):
        path = fetch_exact(runner, name, version, debs) if version else btk.fetch_deb(runner, name, debs)
        versions[name] = btk.deb_field(runner, path, "Version")
        paths.append(path)
    tag = btk.sha256_text(json.dumps(versions, sort_keys=True))[:12]
    root = os.path.join(work, "headers", "%s-%s" % (release, tag))
    kdir = os.path.join(root, "usr", "src", "linux-headers-%s" % release)
    if not os.path.isfile(os.path.join(root, ".complete")):
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        for path in paths:
            runner.run(["dpkg-deb", "-x", path, root])
        makefile = os.path.join(kdir, "Makefile")
        if not os.path.isfile(makefile):
            raise BuildError("linux-headers-%s has no %s" % (release, makefile))
        # Debian's per-flavour Makefile includes the common tree by its absolute
        # /usr/src path: point it into this root.
        with open(makefile) as f:
            text = f.read()
        with open(makefile, "w") as f:
            f.write(re.sub(r"^include /usr/src/", "include %s/usr/src/" % root, text, flags=re.M))
        open(os.path.join(root, ".complete"), "w").close()
    return kdir, versions


def check_compiler(runner, config_text, override=None):
    command, version, text = compiler_of(config_text)
    if override:
        command = override
    if not shutil.which(command):
        raise BuildError("the kernel was built with %s (%s), which this build host lacks: "
                         "install it (apt-get install %s)" % (command, text, command))
    first = runner.run([command, "--version"], capture=True).splitlines()[0]
    if not compiler_matches(text.replace(text.split()[0], command, 1), first):
        raise BuildError("the kernel was built with %r but %s here is %r: build on a host of the "
                         "kernel's own release" % (text, command, first))
    return command, text


def modinfo_field(runner, ko, field):
    return runner.run(["/sbin/modinfo", "-F", field, ko], capture=True).strip()


def build_one(args, runner, release, src, src_sha, toa_version, cert_sha):
    work = os.path.abspath(args.work)
    kdir, header_versions = headers_root(runner, release, work)
    with open(os.path.join(kdir, ".config")) as f:
        config_text = f.read()
    cc, cc_text = check_compiler(runner, config_text, args.cc)
    inputs, key = build_key(src_sha, toa_version, release, header_versions, cc_text, cert_sha, args.deb_arch)
    name = package_name(release)
    version = package_version(toa_version, key)
    bdir = os.path.join(work, "builds", key)
    result_path = os.path.join(bdir, "result.json")
    if os.path.isfile(result_path) and not args.force:
        with open(result_path) as f:
            result = json.load(f)
        if os.path.isfile(result["path"]) and btk.sha256_file(result["path"]) == result["sha256"]:
            runner.say("%s: already built (key %s)" % (release, key))
            result["cached"] = True
            return result
    shutil.rmtree(bdir, ignore_errors=True)
    os.makedirs(bdir)
    runner.say("%s: building %s %s with %s" % (release, name, version, cc))
    start = time.time()
    mdir = os.path.join(bdir, "src")
    shutil.copytree(src, mdir, ignore=shutil.ignore_patterns("*.o", "*.ko", "*.mod*", ".*.cmd", "Module.symvers",
                                                          "modules.order"))
    # No BTF for the module: it needs pahole and the vmlinux BTF the headers lack.
    log = os.path.join(bdir, "build.log")
    with open(log, "w") as out:
        proc = subprocess.run(["nice", "-n", str(args.nice), "make", "-C", kdir, "M=%s" % mdir, "CC=%s" % cc,
                               "-j%d" % args.jobs, "CONFIG_DEBUG_INFO_BTF_MODULES=", "modules"],
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        with open(log) as f:
            tail = f.read()[-1500:]
        raise BuildError("%s: make modules exited %d (log %s): %s" % (release, proc.returncode, log, tail))
    ko = os.path.join(mdir, "%s.ko" % MODULE)
    vermagic = modinfo_field(runner, ko, "vermagic")
    if vermagic.split()[:1] != [release]:
        raise BuildError("%s: the built module's vermagic is %r" % (release, vermagic))
    if modinfo_field(runner, ko, "version") != toa_version:
        raise BuildError("%s: the built module's version is not %s (VERSION)" % (release, toa_version))
    # Debug info off, as DKMS strips it: a quarter of the size, nothing the kernel uses.
    runner.run(["strip", "--strip-debug", ko])
    signed = bool(args.sign_key)
    if signed:
        runner.run([os.path.join(kdir, "scripts", "sign-file"), args.sign_hash, args.sign_key, args.sign_cert, ko])
        if not modinfo_field(runner, ko, "signer"):
            raise BuildError("%s: sign-file left the module without a signature" % release)
    # The package tree.
    root = os.path.join(bdir, "pkg")
    dest = os.path.join(root, "lib", "modules", release, "updates")
    os.makedirs(dest)
    shutil.copyfile(ko, os.path.join(dest, "%s.ko" % MODULE))
    os.chmod(os.path.join(dest, "%s.ko" % MODULE), 0o644)
    debian = os.path.join(root, "DEBIAN")
    os.makedirs(debian)
    installed_kb = (os.path.getsize(ko) + 1023) // 1024
    with open(os.path.join(debian, "control"), "w") as f:
        f.write(control_text(name, version, args.deb_arch, release, toa_version,
                             header_versions["linux-headers-%s" % release], installed_kb, signed))
    for script, body in maintainer_scripts(release).items():
        path = os.path.join(debian, script)
        with open(path, "w") as f:
            f.write(body)
        os.chmod(path, 0o755)
    deb = os.path.join(bdir, "%s_%s_%s.deb" % (name, version, args.deb_arch))
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, deb], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.rmtree(root)
    result = {"release": release, "key": key, "package": name, "package_version": version,
              "toa_version": toa_version, "name": os.path.basename(deb), "path": deb,
              "sha256": btk.sha256_file(deb), "size": os.path.getsize(deb), "signed": signed,
              "headers": header_versions, "compiler": cc_text, "vermagic": vermagic,
              "build_seconds": round(time.time() - start, 1), "cached": False}
    with open(os.path.join(bdir, "inputs.json"), "w") as f:
        json.dump(inputs, f, indent=1, sort_keys=True)
    with open(result_path, "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    runner.say("%s: built %s in %.1f s" % (release, os.path.basename(deb), result["build_seconds"]))
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--release", action="append", default=[], required=True,
                    help="kernel release (uname -r); repeat, or give several separated by commas")
    ap.add_argument("--src", default=DEFAULT_SRC, help="TOA module source")
    ap.add_argument("--work", default=os.path.join(CACHE, "kmod"), help="work and cache directory")
    ap.add_argument("--mirror", default=os.path.join(CACHE, "mirror"), help="mirror directory to publish to")
    ap.add_argument("--subdir", default="kmod-debian-12-x86_64", help="directory under the mirror")
    ap.add_argument("--deb-arch", default="amd64")
    ap.add_argument("--cc", help="compiler command (default: the one in the headers' CONFIG_CC_VERSION_TEXT)")
    ap.add_argument("--sign-key", help="private key to sign the module with (the fleet's, enrolled on its hosts)")
    ap.add_argument("--sign-cert", help="its certificate (PEM or DER)")
    ap.add_argument("--sign-hash", default="sha256")
    ap.add_argument("--no-publish", action="store_true")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--force", action="store_true", help="build even when the key was built")
    args = ap.parse_args(argv)
    runner = btk.Runner()
    try:
        if bool(args.sign_key) != bool(args.sign_cert):
            raise BuildError("give both --sign-key and --sign-cert, or neither")
        releases = unique_releases(args.release)
        if not releases:
            raise BuildError("no kernel release given")
        src = os.path.abspath(args.src)
        src_sha = source_sha256(src)
        toa_version = read_toa_version(src)
        cert_sha = btk.sha256_file(args.sign_cert) if args.sign_cert else None
        start = time.time()
        results = [build_one(args, runner, r, src, src_sha, toa_version, cert_sha) for r in releases]
        out = {"requested": sum(len(re.split(r"[\s,]+", r.strip())) for r in args.release if r.strip()),
               "releases": releases, "packages": results, "subdir": args.subdir,
               "total_seconds": round(time.time() - start, 1),
               "toa_module_packages": {r["release"]: fleet_entry(r, args.subdir) for r in results}}
        if not args.no_publish:
            out["mirror_dir"] = btk.publish({"files": results}, args.mirror, args.subdir)
            runner.say("published to %s (SHA256SUMS updated)" % out["mirror_dir"])
    except (BuildError, btk.BuildError, OSError, subprocess.CalledProcessError) as exc:
        print(json.dumps({"failed": True, "msg": str(exc)}))
        return 1
    print(json.dumps(out, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
