#!/usr/bin/env python3
"""Build the project's AWX execution environments (EE) with ansible-builder and podman.

    tools/build_ee.py                 both EEs on their documented base image
    tools/build_ee.py --local-base    both EEs on a Debian 12 base made here
    tools/build_ee.py --ee current    only execution-environment.yml

The EE definitions (execution-environment*.yml) name a public base image,
quay.io/centos/centos:stream9; that is what a site with registry access
builds and pushes (docs/awx.md). A machine that reaches no container registry
(this test bed) uses --local-base: a Debian 12 root file system made with
debootstrap through the package archive and imported into podman. It has
what ansible-builder's scripts need from a base:

* the apt package lists (kept compressed), so the definitions' bindep lines
  for dpkg (`openssh-client`, `sshpass`) are installed by ansible-builder
  itself, with PKGMGR=/usr/bin/apt-get passed as a build argument;
* a Python environment of its own, /opt/ee-python (a venv of Debian's
  python3.11, first on PATH), passed as PYCMD: Debian's system Python refuses
  `ensurepip`, which ansible-builder runs to get pip;
* the certificate authorities this machine trusts beyond Debian's bundle
  (an intercepting proxy's, here), so pip in the build reaches PyPI as the
  host's pip does.

The definition files stay as they are; only build arguments differ.

Caching: the base image is tagged with a hash of its recipe (suite, packages,
the files written into it, the extra certificates, this builder's code); an
EE image with a hash of its definition file, the base image and the build
arguments. An existing tag is reused, not rebuilt (--force rebuilds). Each
EE also gets its definition's own tag (toa-fleet-ee:2.19,
toa-fleet-ee-legacy:2.16) pointing at the image just built or reused.

podman runs with the containers.conf this tool writes to
$TOA_CACHE/containers/containers.conf (runtime runc, nofile/nproc 4096), named
by CONTAINERS_CONF, so the machine's /etc stays as it is; a CONTAINERS_CONF
already in the environment is used instead. The first run installs podman,
runc, debootstrap and the ansible-builder/ansible-runner virtualenv with
`scripts/setup.sh awx`.

Prints a JSON object on stdout: per EE its image tag, whether it was built,
the build time and the image size; the base image likewise.
"""

import argparse
import ast
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("TOA_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "toa-fleet")
VENV_AWX = os.environ.get("TOA_VENV_AWX") or os.path.join(CACHE, "venv-awx")
WORK = os.path.join(CACHE, "ee")

EES = {
    # name: definition file
    "current": "execution-environment.yml",
    "legacy": "execution-environment-legacy.yml",
}

CONTAINERS_CONF = """\
# Written by tools/build_ee.py; podman reads it through CONTAINERS_CONF.
[containers]
# podman's default limits exceed the hard limits of some hosts ("setrlimit:
# Operation not permitted"); jobs need far fewer.
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
# crun refuses hosts with the hybrid cgroup layout; runc runs everywhere.
runtime = "runc"
"""

# The local base image: Debian 12, its Python, nothing else.
BASE = {
    "suite": "bookworm",
    "mirror": "http://deb.debian.org/debian",
    "sources": [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ],
    # python3 is 3.11 in Debian 12; python3-venv brings the venv below and
    # ensurepip inside it (naming python3.11-venv directly made debootstrap
    # fail to configure it).
    "packages": ["python3", "python3-venv", "ca-certificates"],
    "venv": "/opt/ee-python",
    "apt_conf": (
        "// Package lists stay in the image, compressed, without translations,\n"
        "// so bindep can install the EE's system packages with apt-get.\n"
        'Acquire::GzipIndexes "true";\n'
        'Acquire::CompressionTypes::Order:: "gz";\n'
        'Acquire::Languages "none";\n'
        'APT::Install-Recommends "false";\n'
    ),
    "pip_conf": "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n",
}
BASE_NAME = "localhost/toa-ee-base"
PATH_IN_BASE = BASE["venv"] + "/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def log(msg):
    sys.stderr.write("build_ee: %s\n" % msg)
    sys.stderr.flush()


def run(cmd, **kw):
    kw.setdefault("check", True)
    if "stdout" not in kw and not kw.get("capture_output"):
        kw["stdout"] = sys.stderr  # stdout is this tool's JSON result
    return subprocess.run(cmd, **kw)


def setup():
    """podman, runc, debootstrap and the virtualenv, through the project's setup."""
    run(["bash", os.path.join(ROOT, "scripts", "setup.sh"), "awx"])


def containers_conf():
    """CONTAINERS_CONF for podman: the caller's, else ours under $TOA_CACHE."""
    if os.environ.get("CONTAINERS_CONF"):
        return os.environ["CONTAINERS_CONF"]
    path = os.path.join(CACHE, "containers", "containers.conf")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not os.path.exists(path) or open(path).read() != CONTAINERS_CONF:
        with open(path, "w") as f:
            f.write(CONTAINERS_CONF)
    os.environ["CONTAINERS_CONF"] = path
    return path


def podman_env():
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = containers_conf()
    return env


def image_exists(ref):
    return subprocess.run(["podman", "image", "exists", ref], env=podman_env()).returncode == 0


def image_size(ref):
    out = run(["podman", "image", "inspect", "--format", "{{.Size}}", ref],
              capture_output=True, text=True, env=podman_env()).stdout
    return int(out.strip())


def extra_certificates(host_bundle, base_bundle):
    """PEM certificates in the host's bundle that Debian's bundle lacks, in order."""
    known = set(PEM.findall(base_bundle))
    seen, extra = set(), []
    for cert in PEM.findall(host_bundle):
        if cert not in known and cert not in seen:
            seen.add(cert)
            extra.append(cert)
    return extra


def _read(path):
    with open(path) as f:
        return f.read()


def _code_hash(*functions):
    """Hash of functions' syntax trees: a comment or a wrapped line changes nothing."""
    h = hashlib.sha256()
    for fn in functions:
        h.update(ast.dump(ast.parse(textwrap.dedent(inspect.getsource(fn)))).encode())
    return h.hexdigest()


def base_key(host_bundle):
    """Hash of everything that decides the local base image's content."""
    h = hashlib.sha256()
    h.update(json.dumps(BASE, sort_keys=True).encode())
    h.update(PATH_IN_BASE.encode())
    # The host's whole bundle: a certificate added or removed here makes a new base.
    h.update(hashlib.sha256(host_bundle.encode()).digest())
    h.update(_code_hash(build_base, extra_certificates).encode())
    return h.hexdigest()[:16]


def chroot(root, *cmd):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
           "LC_ALL": "C", "HOME": "/root"}
    run(["chroot", root] + list(cmd), env=env)


def build_base(ref, host_bundle):
    """debootstrap a Debian 12 root with BASE's packages and import it as REF."""
    os.makedirs(WORK, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="base-", dir=WORK)
    root = os.path.join(tmp, "root")
    try:
        run(["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE["packages"]),
             BASE["suite"], root, BASE["mirror"]])
        with open(root + "/etc/apt/sources.list", "w") as f:
            f.write("\n".join(BASE["sources"]) + "\n")
        with open(root + "/etc/apt/apt.conf.d/90toa-ee", "w") as f:
            f.write(BASE["apt_conf"])
        with open(root + "/etc/pip.conf", "w") as f:
            f.write(BASE["pip_conf"])
        extra = extra_certificates(host_bundle, _read(root + "/etc/ssl/certs/ca-certificates.crt"))
        for i, cert in enumerate(extra):
            with open(root + "/usr/local/share/ca-certificates/site-%d.crt" % i, "w") as f:
                f.write(cert + "\n")
        chroot(root, "update-ca-certificates")
        chroot(root, "python3.11", "-m", "venv", "--without-pip", BASE["venv"])
        chroot(root, "apt-get", "update", "-qq")
        chroot(root, "apt-get", "clean")
        for name in os.listdir(root + "/var/cache/apt"):
            if name.endswith(".bin"):
                os.unlink(os.path.join(root, "var/cache/apt", name))
        tar = subprocess.Popen(["tar", "-C", root, "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        run(["podman", "import", "--change", "ENV PATH=" + PATH_IN_BASE,
             "--change", 'CMD ["/bin/bash"]', "-", ref], stdin=tar.stdout, env=podman_env())
        tar.stdout.close()
        if tar.wait() != 0:
            raise SystemExit("build_ee: tar of the base root file system failed")
        log("base image %s: %d extra certificate(s) from %s" % (ref, len(extra), HOST_CA_BUNDLE))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_base(force=False):
    """The local base image: (ref, built?, seconds)."""
    host_bundle = _read(HOST_CA_BUNDLE)
    ref = "%s:debian12-%s" % (BASE_NAME, base_key(host_bundle))
    if image_exists(ref) and not force:
        return ref, False, 0.0
    t0 = time.time()
    build_base(ref, host_bundle)
    return ref, True, time.time() - t0


def load_definition(path):
    """An EE definition as data (read with the virtualenv's PyYAML, which
    ansible-builder brings)."""
    out = run([os.path.join(VENV_AWX, "bin", "python"), "-c",
               "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
               path], capture_output=True, text=True).stdout
    return json.loads(out)


def definition_tag(definition, path):
    """The single tag an EE definition's options.tags names."""
    tags = definition.get("options", {}).get("tags") or []
    if len(tags) != 1:
        raise SystemExit("build_ee: %s: expected one tag in options.tags, found %r" % (path, tags))
    return tags[0]


def build_args(base_ref):
    """ansible-builder build arguments for BASE_REF (None: the definition's own base)."""
    if base_ref is None:
        return {}
    return {
        "EE_BASE_IMAGE": base_ref,
        "PKGMGR": "/usr/bin/apt-get",
        "PYCMD": BASE["venv"] + "/bin/python3.11",
    }


def ee_key(definition, base_ref, args, builder_version):
    """Hash of an EE's recipe: the definition's data (its comments and layout
    change nothing), the base image, the build arguments, ansible-builder."""
    h = hashlib.sha256()
    h.update(json.dumps(definition, sort_keys=True).encode())
    h.update(json.dumps([base_ref, args, builder_version], sort_keys=True).encode())
    return h.hexdigest()[:16]


def builder_version():
    out = run([os.path.join(VENV_AWX, "bin", "ansible-builder"), "--version"],
              capture_output=True, text=True).stdout
    return out.strip()


def ensure_ee(name, base_ref, force=False):
    path = os.path.join(ROOT, EES[name])
    definition = load_definition(path)
    tag = definition_tag(definition, path)          # toa-fleet-ee:2.19
    repo, version = tag.rsplit(":", 1)
    args = build_args(base_ref)
    key = ee_key(definition, base_ref, args, builder_version())
    ref = "localhost/%s:%s-%s" % (repo, version, key)
    built, seconds = False, 0.0
    if force or not image_exists(ref):
        context = os.path.join(WORK, "context-" + name)
        shutil.rmtree(context, ignore_errors=True)
        cmd = [os.path.join(VENV_AWX, "bin", "ansible-builder"), "build", "-f", path,
               "-c", context, "-t", ref, "--container-runtime", "podman",
               "--extra-build-cli-args=--network=host", "-v", "2"]
        for k, v in sorted(args.items()):
            cmd += ["--build-arg", "%s=%s" % (k, v)]
        t0 = time.time()
        run(cmd, cwd=ROOT, env=podman_env())
        built, seconds = True, time.time() - t0
    run(["podman", "tag", ref, "localhost/" + tag], env=podman_env())
    return {"image": ref, "tag": "localhost/" + tag, "built": built, "seconds": round(seconds, 1),
            "size_mb": round(image_size(ref) / 1e6)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ee", choices=sorted(EES), action="append",
                    help="build only this EE (repeatable; default: both)")
    ap.add_argument("--local-base", action="store_true",
                    help="build on a Debian 12 base made here instead of the definitions' public base")
    ap.add_argument("--force", action="store_true", help="rebuild even when the recipe's tag exists")
    ap.add_argument("--no-setup", action="store_true", help="do not run scripts/setup.sh awx first")
    args = ap.parse_args(argv)
    if os.geteuid() != 0 and args.local_base:
        raise SystemExit("build_ee: --local-base needs root (debootstrap, chroot)")
    if not args.no_setup:
        setup()
    result = {"containers_conf": containers_conf()}
    base_ref = None
    if args.local_base:
        base_ref, built, seconds = ensure_base(args.force)
        result["base"] = {"image": base_ref, "built": built, "seconds": round(seconds, 1),
                          "size_mb": round(image_size(base_ref) / 1e6)}
        log("base %s %s" % (base_ref, "built in %.0f s" % seconds if built else "cached"))
    for name in args.ee or sorted(EES):
        result[name] = ensure_ee(name, base_ref, args.force)
        r = result[name]
        log("%s: %s %s, %d MB" % (name, r["image"], "built in %.0f s" % r["seconds"] if r["built"]
                                  else "cached", r["size_mb"]))
    print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
