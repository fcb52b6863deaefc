#!/usr/bin/env python3
"""Guest images and QEMU lifecycle for the project's real-VM test bed.

Containers share the host kernel and cannot load modules, so the role is
proven in real virtual machines.  This tool:

* builds bootable Debian/Ubuntu disk images with debootstrap (GRUB on the
  disk, so a guest that installs a new kernel and reboots comes up on it),
  cached under $TOA_CACHE/images and keyed by a hash of their recipe;
* starts guests on a copy-on-write overlay (the base image stays clean),
  with KVM when a real boot proves it works and TCG otherwise, SSH on a
  free loopback port, a serial console captured to a file;
* stops them and removes every trace (process, overlay, port) even after a
  failed or interrupted run.

Usage (run as root):
  toavm.py image GUEST            build the image if missing, print its path
  toavm.py up NAME --guest GUEST  start a guest, wait for SSH, print JSON state
  toavm.py ssh NAME [-- CMD...]   run a command (or a shell) in the guest
  toavm.py reset NAME             power-cycle the guest (reset button), wait for SSH
  toavm.py diagnose NAME          a stuck guest: an emulator fault (stale code) or the kernel's?
  toavm.py copy-to NAME SRC DST   copy a file or directory into the guest
  toavm.py down NAME | --all      stop guests and remove their overlays
  toavm.py ls                     list running guests
  toavm.py guests                 list known guest recipes and archive status
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
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request

CACHE = os.environ.get("TOA_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "toa-fleet")
IMAGES = os.path.join(CACHE, "images")
RUN = os.path.join(CACHE, "run")
SSH_DIR = os.path.join(CACHE, "ssh")
KEY = os.path.join(SSH_DIR, "id_ed25519")

DEBIAN = "http://deb.debian.org/debian"
DEBIAN_SECURITY = "http://deb.debian.org/debian-security"
UBUNTU = "http://archive.ubuntu.com/ubuntu"

# No Ubuntu keyring is packaged in Debian 12.  Fetch Ubuntu's own keyring
# package and accept it only if its hash matches this pin; debootstrap then
# verifies the Release signatures with it as usual.
UBUNTU_KEYRING_DEB = UBUNTU + "/pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb"
UBUNTU_KEYRING_SHA256 = "36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8"

# Address the guests use for the host's caching package proxy.
GUEST_PROXY = ("10.0.2.100", 3142)

BASE_PACKAGES = ["openssh-server", "python3", "systemd-sysv", "udev", "kmod", "dbus",
                 "iproute2", "sudo", "initramfs-tools", "e2fsprogs", "procps",
                 "grub-pc", "ca-certificates"]


def _debian(suite, security_suite):
    return {
        "distro": "debian", "suite": suite, "mirror": DEBIAN,
        "sources": [
            "deb %s %s main" % (DEBIAN, suite),
            "deb %s %s-updates main" % (DEBIAN, suite),
            "deb %s %s main" % (DEBIAN_SECURITY, security_suite),
        ],
        "kernel": ["linux-image-amd64"],
        "extra": [],
    }


def _ubuntu(suite, extra=(), script=None):
    pockets = ("", "-updates", "-security")
    return {
        "distro": "ubuntu", "suite": suite, "mirror": UBUNTU, "script": script,
        "sources": ["deb %s %s%s main universe" % (UBUNTU, suite, p) for p in pockets],
        "kernel": ["linux-image-virtual"],
        "extra": list(extra),
    }


GUESTS = {
    "debian11": _debian("bullseye", "bullseye-security"),
    "debian12": _debian("bookworm", "bookworm-security"),
    "debian13": _debian("trixie", "trixie-security"),
    # Python 2.7 on xenial lets the legacy ansible-core 2.16 manage it the
    # way a real legacy fleet is managed.
    "ubuntu1604": _ubuntu("xenial", extra=["python2.7", "python-minimal"]),
    "ubuntu1804": _ubuntu("bionic"),
    "ubuntu2004": _ubuntu("focal"),
    "ubuntu2204": _ubuntu("jammy"),
    # Debian 12's debootstrap has no noble script; noble bootstraps like jammy.
    "ubuntu2404": _ubuntu("noble", script="gutsy"),
}

# SSH host keys.  An image carries no host key of its own (copies of one
# image would all share it).  `up` generates a fresh ed25519 key for each
# guest on the host, records its public half in the guest's known_hosts
# (run/NAME/known_hosts) before the guest boots, and hands the private half in
# on a small read-only virtio disk with this serial; a unit in the image
# (HOSTKEY_UNIT, HOSTKEY_SCRIPT) installs it before sshd starts.  So the host
# knows the key out of band, never by trusting the first answer on the port.
# A virtio disk and not QEMU's fw_cfg: xenial's 4.4 kernel has no
# qemu_fw_cfg driver (it came with 4.6).
HOSTKEY_SERIAL = "toa-hostkey"
HOSTKEY_DISK_SIZE = 4096
HOSTKEY_SCRIPT = r"""#!/bin/sh
# Installed by testbed/toavm.py: put the SSH host key toavm.py generated for
# this guest in place before sshd starts.  The key comes on a read-only virtio
# disk whose serial is toa-hostkey: the key file padded with zero bytes.
set -eu
dev=""
tries=0
while [ -z "$dev" ] && [ "$tries" -lt 30 ]; do
    for s in /sys/block/*/serial; do
        [ -r "$s" ] || continue
        if [ "$(cat "$s")" = toa-hostkey ]; then
            dev="/dev/$(basename "$(dirname "$s")")"
        fi
    done
    [ -n "$dev" ] || { tries=$((tries + 1)); sleep 1; }
done
if [ -z "$dev" ]; then
    echo "toa-hostkey: no disk with serial toa-hostkey; sshd has no host key." \
         "Start this guest with testbed/toavm.py up, which hands one in." >&2
    exit 1
fi
umask 077
tr -d '\000' < "$dev" > /etc/ssh/ssh_host_ed25519_key.toa
# ssh-keygen -y refuses anything that is not a private key.
ssh-keygen -y -f /etc/ssh/ssh_host_ed25519_key.toa > /etc/ssh/ssh_host_ed25519_key.pub.toa
chmod 644 /etc/ssh/ssh_host_ed25519_key.pub.toa
mv -f /etc/ssh/ssh_host_ed25519_key.toa /etc/ssh/ssh_host_ed25519_key
mv -f /etc/ssh/ssh_host_ed25519_key.pub.toa /etc/ssh/ssh_host_ed25519_key.pub
echo "toa-hostkey: installed $(ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub)"
"""
HOSTKEY_UNIT = """[Unit]
Description=SSH host key handed in by testbed/toavm.py
DefaultDependencies=no
After=local-fs.target
Before=ssh.service ssh.socket sshd.service
ConditionPathExists=/usr/local/sbin/toa-hostkey

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/toa-hostkey
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
"""

# The Python Ansible should use on a guest (the inventory's
# ansible_python_interpreter) where it is not /usr/bin/python3. Kept out of
# GUESTS so that it is not part of the image key. Xenial's Python 3.5 is older
# than any ansible-core supports: manage it with Python 2.7 and the legacy
# ansible-core 2.16 ($TOA_VENV_LEGACY).
INTERPRETERS = {"ubuntu1604": "/usr/bin/python2.7"}


def log(msg):
    sys.stderr.write("toavm: %s\n" % msg)
    sys.stderr.flush()


def run(cmd, **kw):
    kw.setdefault("check", True)
    # stdout belongs to our own result (JSON from `up`, a path from `image`):
    # what the commands print goes to stderr.
    if not kw.get("capture_output") and "stdout" not in kw:
        kw["stdout"] = sys.stderr
    return subprocess.run(cmd, **kw)


def ensure_key():
    if not os.path.exists(KEY):
        os.makedirs(SSH_DIR, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "toa-fleet-testbed", "-f", KEY])
    with open(KEY + ".pub") as f:
        return f.read().strip()


# ---------------------------------------------------------------- images

def image_key(guest):
    """Hash of everything that decides an image's content."""
    h = hashlib.sha256()
    h.update(json.dumps(GUESTS[guest], sort_keys=True).encode())
    h.update(json.dumps(BASE_PACKAGES).encode())
    # The functions' syntax trees, not their text: a comment or a line
    # wrapped differently does not make a new image.
    for fn in (build_image, _configure_rootfs, _install_bootloader):
        h.update(ast.dump(ast.parse(textwrap.dedent(inspect.getsource(fn)))).encode())
    h.update((HOSTKEY_SCRIPT + HOSTKEY_UNIT).encode())
    h.update(ensure_key().encode())
    return h.hexdigest()[:16]


def image_path(guest):
    return os.path.join(IMAGES, "%s-%s.qcow2" % (guest, image_key(guest)))


def archive_answers(guest, timeout=15):
    r = GUESTS[guest]
    url = "%s/dists/%s/Release" % (r["mirror"], r["suite"])
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as resp:
            return resp.status == 200
    except Exception as e:  # noqa: BLE001 - any failure means "does not answer"
        log("archive for %s does not answer (%s): %s" % (guest, url, e))
        return False


def ubuntu_keyring(workdir):
    path = os.path.join(workdir, "ubuntu-keyring.deb")
    with urllib.request.urlopen(UBUNTU_KEYRING_DEB, timeout=60) as resp, open(path, "wb") as out:
        shutil.copyfileobj(resp, out)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != UBUNTU_KEYRING_SHA256:
        raise SystemExit("toavm: Ubuntu keyring package hash mismatch: got %s, pinned %s (%s)"
                         % (digest, UBUNTU_KEYRING_SHA256, UBUNTU_KEYRING_DEB))
    x = os.path.join(workdir, "keyring")
    run(["dpkg-deb", "-x", path, x])
    return os.path.join(x, "usr/share/keyrings/ubuntu-archive-keyring.gpg")


def chroot(root, *cmd, env=None):
    e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
         "LC_ALL": "C", "HOME": "/root"}
    e.update(env or {})
    return run(["chroot", root] + list(cmd), env=e)


def write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _configure_rootfs(root, guest, r, pubkey):
    write(root + "/etc/apt/sources.list", "\n".join(r["sources"]) + "\n")
    # Small guests: no docs, no man pages, no recommends.
    write(root + "/etc/dpkg/dpkg.cfg.d/01-toa-nodoc",
          "path-exclude=/usr/share/doc/*\npath-include=/usr/share/doc/*/copyright\n"
          "path-exclude=/usr/share/man/*\npath-exclude=/usr/share/info/*\n"
          "path-exclude=/usr/share/locale/*\npath-include=/usr/share/locale/locale.alias\n")
    write(root + "/etc/apt/apt.conf.d/90toa-norecommends",
          'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n')
    write(root + "/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)
    # Inside the guest, the only way out is the host's caching proxy
    # (testbed/aptcache.py, reached through a QEMU guestfwd).
    write(root + "/etc/apt/apt.conf.d/01toa-proxy", 'Acquire::http::Proxy "http://%s:%d/";\n' % GUEST_PROXY)
    chroot(root, "apt-get", "update", "-qq")
    pkgs = BASE_PACKAGES + r["kernel"] + r["extra"]
    chroot(root, "apt-get", "install", "-y", "-qq", "-o", "Dpkg::Use-Pty=0", *pkgs)
    os.unlink(root + "/usr/sbin/policy-rc.d")
    write(root + "/etc/hostname", guest + "\n")
    write(root + "/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost ip6-localhost\n" % guest)
    # Networking: systemd-networkd DHCP on the QEMU user-mode NIC.
    write(root + "/etc/systemd/network/10-toa-dhcp.network",
          "[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n")
    if os.path.islink(root + "/etc/resolv.conf"):
        os.unlink(root + "/etc/resolv.conf")
    write(root + "/etc/resolv.conf", "nameserver 10.0.2.3\n")
    chroot(root, "systemctl", "enable", "systemd-networkd")
    # sshd: key login as root only.
    write(root + "/root/.ssh/authorized_keys", pubkey + "\n", 0o600)
    os.chmod(root + "/root/.ssh", 0o700)
    write(root + "/etc/ssh/sshd_config.d/toa.conf" if os.path.isdir(root + "/etc/ssh/sshd_config.d")
          else root + "/etc/ssh/toa-unused.conf",
          "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\n")
    if not os.path.isdir(root + "/etc/ssh/sshd_config.d"):
        with open(root + "/etc/ssh/sshd_config", "a") as f:
            f.write("\nUseDNS no\n")
    # Host keys: one ed25519 key per guest, installed at boot by the
    # toa-hostkey unit from what `up` hands in; the keys openssh-server's
    # postinst generated here would be shared by every guest of the image.
    with open(root + "/etc/ssh/sshd_config") as f:
        lines = [ln for ln in f.read().splitlines() if not re.match(r"\s*HostKey\s", ln)]
    lines.append("HostKey /etc/ssh/ssh_host_ed25519_key")
    write(root + "/etc/ssh/sshd_config", "\n".join(lines) + "\n")
    for old in os.listdir(root + "/etc/ssh"):
        if old.startswith("ssh_host_"):
            os.unlink(os.path.join(root, "etc/ssh", old))
    write(root + "/usr/local/sbin/toa-hostkey", HOSTKEY_SCRIPT, 0o755)
    write(root + "/etc/systemd/system/toa-hostkey.service", HOSTKEY_UNIT)
    chroot(root, "systemctl", "enable", "toa-hostkey.service")
    # Kernels the guest installs later get a small initramfs built for the
    # guest's own hardware (14 min -> 2.5 min under emulation); the image's
    # first initramfs is built in a host chroot, where "dep" would size it
    # for the host, so it keeps "most".
    write(root + "/etc/initramfs-tools/conf.d/toa-modules-dep", "MODULES=dep\n")
    write(root + "/etc/default/grub",
          'GRUB_DEFAULT=0\nGRUB_TIMEOUT=1\nGRUB_DISTRIBUTOR="toa-testbed"\n'
          'GRUB_CMDLINE_LINUX_DEFAULT=""\n'
          'GRUB_CMDLINE_LINUX="console=ttyS0,115200n8 net.ifnames=0"\n'
          'GRUB_TERMINAL="serial console"\n'
          'GRUB_SERIAL_COMMAND="serial --speed=115200"\nGRUB_DISABLE_OS_PROBER=true\n'
          'GRUB_RECORDFAIL_TIMEOUT=1\n')
    chroot(root, "apt-get", "clean")
    # Every guest gets its own machine-id on first boot.
    write(root + "/etc/machine-id", "")


def _install_bootloader(root, loopdev, part):
    uuid = run(["blkid", "-s", "UUID", "-o", "value", part], capture_output=True, text=True).stdout.strip()
    write(root + "/etc/fstab", "UUID=%s / ext4 errors=remount-ro 0 1\n" % uuid)
    # Name the modules: old grub-probe (xenial) does not see the partition
    # table of a loop device and would leave part_msdos out of core.img.
    chroot(root, "grub-install", "--target=i386-pc", "--recheck", "--modules=part_msdos ext2", loopdev)
    chroot(root, "update-grub")
    # update-grub in a chroot names the loop device as root; point it at the
    # filesystem UUID (inside the guest update-grub gets this right by itself).
    cfg = root + "/boot/grub/grub.cfg"
    with open(cfg) as f:
        text = f.read()
    text = text.replace("root=%s" % part, "root=UUID=%s" % uuid)
    if "root=UUID=%s" % uuid not in text:
        raise SystemExit("toavm: could not set root=UUID in grub.cfg")
    with open(cfg, "w") as f:
        f.write(text)


def build_image(guest, out, size="6G"):
    r = GUESTS[guest]
    pubkey = ensure_key()
    os.makedirs(IMAGES, exist_ok=True)
    work = tempfile.mkdtemp(prefix="build-%s-" % guest, dir=IMAGES)
    raw = os.path.join(work, "disk.raw")
    mnt = os.path.join(work, "mnt")
    os.makedirs(mnt)
    loopdev = None
    mounts = []
    try:
        run(["truncate", "-s", size, raw])
        run(["sfdisk", "-q", raw], input=b"label: dos\nstart=2048, type=83, bootable\n")
        loopdev = run(["losetup", "-f", "--show", raw], capture_output=True, text=True).stdout.strip()
        run(["partx", "-a", loopdev])
        part = loopdev + "p1"
        # Features newer than the oldest guests' GRUB and kernel (xenial:
        # GRUB 2.02~beta2, Linux 4.4) make the disk unbootable there.
        run(["mkfs.ext4", "-q", "-L", "root", "-O", "^orphan_file,^metadata_csum_seed,^metadata_csum,^64bit", part])
        run(["mount", part, mnt])
        mounts.append(mnt)
        cmd = ["debootstrap", "--variant=minbase", "--arch=amd64", "--components=main,universe"
               if r["distro"] == "ubuntu" else "--components=main", "--include=ca-certificates"]
        if r["distro"] == "ubuntu":
            cmd.append("--keyring=" + ubuntu_keyring(work))
        cmd += [r["suite"], mnt, r["mirror"]]
        if r.get("script"):
            cmd.append("/usr/share/debootstrap/scripts/" + r["script"])
        log("debootstrap %s (%s)" % (guest, r["suite"]))
        run(cmd, stdout=subprocess.DEVNULL)
        for src, fstype in (("/proc", "proc"), ("/sys", "sysfs"), ("/dev", None), ("/dev/pts", None)):
            dst = mnt + src
            if fstype:
                run(["mount", "-t", fstype, fstype, dst])
            else:
                run(["mount", "--bind", src, dst])
            mounts.append(dst)
        log("installing kernel and base packages in %s" % guest)
        _configure_rootfs(mnt, guest, r, pubkey)
        _install_bootloader(mnt, loopdev, part)
        # Hand freed blocks back to the sparse file: a smaller qcow2.
        subprocess.run(["fstrim", mnt], check=False)
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", m], check=False)
        if loopdev:
            subprocess.run(["partx", "-d", loopdev], check=False, stderr=subprocess.DEVNULL)
            subprocess.run(["losetup", "-d", loopdev], check=False)
    tmp = out + ".tmp"
    run(["qemu-img", "convert", "-O", "qcow2", raw, tmp])
    os.rename(tmp, out)
    shutil.rmtree(work, ignore_errors=True)
    log("built %s" % out)


def cmd_image(args):
    path = ensure_image(args.guest)
    print(path)


def ensure_image(guest):
    if guest not in GUESTS:
        raise SystemExit("toavm: unknown guest %r; known: %s" % (guest, ", ".join(sorted(GUESTS))))
    path = image_path(guest)
    if os.path.exists(path):
        return path
    # One builder per guest at a time; the others wait and reuse its image.
    os.makedirs(IMAGES, exist_ok=True)
    with open(os.path.join(IMAGES, ".lock-" + guest), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path):
            return path
        return _build_locked(guest, path)


def _build_locked(guest, path):
    if not archive_answers(guest):
        raise SystemExit("toavm: SKIP %s: its package archive does not answer from here" % guest)
    # Old images of this guest (other recipe hashes) are stale: drop them,
    # but only a day after they were built: two checkouts of the project
    # with different recipes (a branch, a worktree) would otherwise delete
    # each other's image on every start.
    for old in os.listdir(IMAGES) if os.path.isdir(IMAGES) else []:
        p = os.path.join(IMAGES, old)
        if old.startswith(guest + "-") and old.endswith(".qcow2") and time.time() - os.path.getmtime(p) > 86400:
            os.unlink(p)
    t0 = time.time()
    build_image(guest, path)
    log("image %s built in %.0f s" % (guest, time.time() - t0))
    return path


# ---------------------------------------------------------------- guests

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def state_dir(name):
    return os.path.join(RUN, name)


def load_state(name):
    p = os.path.join(state_dir(name), "state.json")
    if not os.path.exists(p):
        raise SystemExit("toavm: no guest named %r is running (see `toavm.py ls`)" % name)
    with open(p) as f:
        return json.load(f)


def known_hosts_path(name):
    """Where `up` records guest NAME's SSH host key (the guest's state dir)."""
    return os.path.join(state_dir(name), "known_hosts")


def known_hosts_line(host, port, pubkey):
    """The known_hosts line for PUBKEY (an OpenSSH public key line) served at
    HOST:PORT: ssh looks a host on a port other than 22 up as [HOST]:PORT."""
    fields = pubkey.split()
    if len(fields) < 2 or not fields[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise ValueError("not an OpenSSH public key: %r" % pubkey[:60])
    addr = host if int(port) == 22 else "[%s]:%d" % (host, int(port))
    return "%s %s %s\n" % (addr, fields[0], fields[1])


def known_hosts_text(name, guest, port, pubkey):
    """The whole known_hosts file of guest NAME: a comment saying what a
    mismatch means (ssh names this file when it refuses) and the key line."""
    return ("# SSH host key of test-bed guest %s, generated and recorded by `testbed/toavm.py up %s`.\n"
            "# If ssh reports that it changed, whatever answers on port %d is not the guest\n"
            "# toavm started (or this file was edited): do not edit it, recreate the guest:\n"
            "#   testbed/toavm.py down %s && testbed/toavm.py up %s --guest %s\n"
            % (name, name, int(port), name, name, guest)) + known_hosts_line("127.0.0.1", port, pubkey)


def host_key_options(known_hosts):
    """ssh -o options: check the guest's host key against its recorded file
    only (never the user's or the system's known_hosts), strictly."""
    if not known_hosts or any(c.isspace() for c in known_hosts):
        # ssh splits UserKnownHostsFile at whitespace (it takes a list).
        raise SystemExit("toavm: unusable known_hosts path %r" % known_hosts)
    return ["-o", "UserKnownHostsFile=" + known_hosts, "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes"]


def state_known_hosts(state):
    kh = state.get("known_hosts")
    if not kh or not os.path.exists(kh):
        raise SystemExit("toavm: guest %r has no recorded SSH host key (%s): it was started by an "
                         "older toavm.py or its state dir was changed; recreate it: "
                         "toavm.py down %s && toavm.py up %s --guest %s"
                         % (state["name"], kh or known_hosts_path(state["name"]), state["name"],
                            state["name"], state.get("guest", "GUEST")))
    return kh


def make_host_key(d, name, guest, port):
    """A fresh ed25519 host key for guest NAME: the private key padded into
    the small disk image QEMU hands the guest (HOSTKEY_SERIAL), the public
    key recorded in d/known_hosts for [127.0.0.1]:PORT.  Returns both paths."""
    key = os.path.join(d, "ssh_host_ed25519_key")
    for p in (key, key + ".pub"):
        if os.path.exists(p):
            os.unlink(p)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "toa-testbed-" + name, "-f", key],
        stdin=subprocess.DEVNULL)
    with open(key, "rb") as f:
        secret = f.read()
    if len(secret) > HOSTKEY_DISK_SIZE:
        raise SystemExit("toavm: host key of %d bytes does not fit the key disk" % len(secret))
    disk = os.path.join(d, "hostkey.disk")
    fd = os.open(disk, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret + b"\0" * (HOSTKEY_DISK_SIZE - len(secret)))
    os.unlink(key)  # the disk holds the only copy the guest needs
    with open(key + ".pub") as f:
        text = known_hosts_text(name, guest, port, f.read())
    kh = known_hosts_path(name)
    write(kh, text, 0o644)
    return disk, kh


def ssh_options(state):
    """The -i and -o options ssh and scp share for a guest."""
    # ConnectTimeout also bounds the wait for sshd's banner: a guest that is
    # slow to fork sshd (a debug kernel under TCG on a loaded host) needs
    # more than the default 10 s; TOA_SSH_TIMEOUT raises it.
    timeout = int(os.environ.get("TOA_SSH_TIMEOUT") or 10)
    return ["-i", state["key"], *host_key_options(state_known_hosts(state)),
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=%d" % timeout, "-o", "BatchMode=yes"]


def ssh_base(state):
    return ["ssh", "-p", str(state["port"]), *ssh_options(state), "root@127.0.0.1"]


HOST_KEY_FAILED = "Host key verification failed"


def host_key_refused(state, stderr_text):
    """The message for an ssh that refused the guest's host key (None when
    it did not): what it means and what to do."""
    if HOST_KEY_FAILED not in (stderr_text or ""):
        return None
    return ("toavm: guest %s: the SSH host key on port %d is not the one recorded in %s when the "
            "guest was started, so ssh refused to connect. Whatever answers there is not the guest "
            "toavm started (or the recorded key was changed). Do not switch checking off: "
            "recreate the guest with `toavm.py down %s` and `toavm.py up %s --guest %s`."
            % (state["name"], state["port"], state_known_hosts(state), state["name"], state["name"],
               state.get("guest", "GUEST")))


def ssh_ok(state, timeout=20):
    # ConnectTimeout does not bound the wait for the banner when QEMU's port
    # forward accepts before sshd is up: bound the whole attempt.
    try:
        r = subprocess.run(ssh_base(state) + ["true"], timeout=timeout,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    except subprocess.TimeoutExpired:
        return False
    refused = host_key_refused(state, r.stderr)
    if refused:
        # Waiting longer cannot help: the guest answers with another key.
        raise SystemExit(refused)
    return r.returncode == 0


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def proxy_cmd():
    """The command QEMU runs for each connection to the package proxy."""
    mirror = os.path.join(CACHE, "mirror")
    os.makedirs(mirror, exist_ok=True)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "aptcache.py")
    cmd = "%s %s stdio --mirror-dir %s" % (sys.executable, script, mirror)
    return cmd.replace(",", ",,")  # QEMU option syntax: a literal comma is doubled


def qemu_cmd(d, image_overlay, port, accel, mem, smp, icount=None, hostkey_disk=None):
    if accel == "kvm":
        cpu = ["-accel", "kvm", "-cpu", "host"]
    elif icount is None:
        cpu = ["-accel", "tcg,thread=multi", "-cpu", "max"]
    else:
        # The guest's clock counts executed instructions (2**icount ns
        # each), so CPU-bound timings inside it do not depend on how busy
        # the host is.  Needs single-threaded TCG: all vCPUs on one thread.
        cpu = ["-accel", "tcg,thread=single", "-cpu", "max", "-icount", "shift=%d,sleep=on" % icount]
    # debug-threads: each vCPU thread is named ("CPU 1/TCG"), so a host-side
    # look (top -H, /proc/PID/task/*/comm) tells which guest CPU starves.
    return ["qemu-system-x86_64", "-name", "%s,debug-threads=on" % os.path.basename(d), *cpu,
            "-m", str(mem), "-smp", str(smp),
            # bootindex: SeaBIOS boots the first disk only, and the key
            # disk below must not take that place.
            "-drive", "file=%s,if=none,id=root,cache=unsafe,discard=unmap" % image_overlay,
            "-device", "virtio-blk-pci,drive=root,bootindex=0",
            # restrict=on: the guest reaches nothing but the SSH forward and
            # the package proxy.
            "-netdev", "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:22,guestfwd=tcp:%s:%d-cmd:%s"
            % ((port,) + GUEST_PROXY + (proxy_cmd(),)),
            "-device", "virtio-net-pci,netdev=n0",
            # The guest's SSH host key (make_host_key), read by the image's
            # toa-hostkey unit, which finds it by its serial.
            *(["-drive", "file=%s,if=none,id=toahostkey,format=raw,readonly=on" % hostkey_disk,
               "-device", "virtio-blk-pci,drive=toahostkey,serial=" + HOSTKEY_SERIAL]
              if hostkey_disk else []),
            "-device", "virtio-rng-pci",
            "-display", "none", "-vga", "none",
            "-serial", "file:" + os.path.join(d, "console.log"),
            "-monitor", "unix:%s,server,nowait" % os.path.join(d, "monitor.sock"),
            "-pidfile", os.path.join(d, "qemu.pid"), "-daemonize"]


def start(name, guest, accel, mem, smp, boot_timeout, icount=None):
    d = state_dir(name)
    if os.path.exists(os.path.join(d, "state.json")):
        st = load_state(name)
        if pid_alive(st["pid"]):
            raise SystemExit("toavm: guest %r is already running (port %d)" % (name, st["port"]))
        stop(name)
    os.makedirs(d, exist_ok=True)
    base = ensure_image(guest)
    overlay = os.path.join(d, "overlay.qcow2")
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay])
    port = free_port()
    disk, kh = make_host_key(d, name, guest, port)
    q = subprocess.run(qemu_cmd(d, overlay, port, accel, mem, smp, icount, hostkey_disk=disk),
                       capture_output=True, text=True)
    if q.returncode != 0:
        raise SystemExit("toavm: QEMU (%s) failed to start %r: %s" % (accel, name, q.stderr.strip()))
    with open(os.path.join(d, "qemu.pid")) as f:
        pid = int(f.read().strip())
    st = {"name": name, "guest": guest, "port": port, "pid": pid, "key": KEY, "accel": accel,
          "icount": icount, "dir": d, "console": os.path.join(d, "console.log"), "image": base,
          "started": time.time(), "python": INTERPRETERS.get(guest, "/usr/bin/python3"),
          "known_hosts": kh}
    with open(os.path.join(d, "state.json"), "w") as f:
        json.dump(st, f, indent=1)
    deadline = time.time() + boot_timeout
    while time.time() < deadline:
        if not pid_alive(pid):
            raise SystemExit("toavm: QEMU for %r exited during boot; console: %s" % (name, st["console"]))
        if ssh_ok(st):
            st["boot_seconds"] = round(time.time() - st["started"], 1)
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump(st, f, indent=1)
            return st
        time.sleep(2)
    return None


def detect_accel():
    """KVM only when a real boot proves it; cached per boot of the host."""
    forced = os.environ.get("TOA_ACCEL")
    if forced:
        return forced
    verdict = os.path.join(RUN, ".accel")
    if os.path.exists(verdict) and os.path.getmtime(verdict) > time.time() - 12 * 3600:
        with open(verdict) as f:
            return f.read().strip()
    accel = "tcg"
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        log("probing KVM with a real boot (deadline 60 s)")
        try:
            st = start(".kvm-probe", "debian12", "kvm", 512, 1, 60)
            if st:
                accel = "kvm"
        except SystemExit as e:
            log("KVM probe failed: %s" % e)
        finally:
            stop(".kvm-probe")
    os.makedirs(RUN, exist_ok=True)
    with open(verdict, "w") as f:
        f.write(accel)
    log("accelerator: %s" % accel)
    return accel


def stop(name):
    d = state_dir(name)
    pidfile = os.path.join(d, "qemu.pid")
    if os.path.exists(pidfile):
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
        except ValueError:
            pid = 0
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not pid_alive(pid):
                    break
                time.sleep(0.1)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    shutil.rmtree(d, ignore_errors=True)


def cmd_up(args):
    if args.icount is not None:
        if args.accel == "kvm":
            raise SystemExit("toavm: --icount needs TCG: drop --accel kvm")
        accel = "tcg"
    else:
        accel = args.accel or detect_accel()
    st = start(args.name, args.guest, accel, args.mem, args.smp, args.boot_timeout, args.icount)
    if not st:
        tail = ""
        con = os.path.join(state_dir(args.name), "console.log")
        if os.path.exists(con):
            with open(con, errors="replace") as f:
                tail = "".join(f.readlines()[-20:])
        stop(args.name)
        raise SystemExit("toavm: guest %r did not answer SSH within %d s; console tail:\n%s"
                         % (args.name, args.boot_timeout, tail))
    log("guest %s (%s, %s) up in %.1f s on port %d" % (args.name, args.guest, accel,
                                                      st["boot_seconds"], st["port"]))
    print(json.dumps(st))


def cmd_ssh(args):
    st = load_state(args.name)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        os.execvp("ssh", ssh_base(st)[:-1] + ["-t", "root@127.0.0.1"])
    sys.exit(run_explained(st, ssh_base(st) + [" ".join(cmd) if len(cmd) > 1 else cmd[0]]))


def run_explained(state, argv):
    """Run ssh or scp with its stderr passed on as it comes; when it failed
    on its own (rc 255) because of the host key, say what that means."""
    p = subprocess.Popen(argv, stderr=subprocess.PIPE)
    tail = []
    for line in iter(p.stderr.readline, b""):
        sys.stderr.buffer.write(line)
        sys.stderr.flush()
        tail = (tail + [line])[-50:]
    rc = p.wait()
    refused = rc == 255 and host_key_refused(state, b"".join(tail).decode(errors="replace"))
    if refused:
        log(refused.replace("toavm: ", "", 1))
    return rc


def scp_base(state):
    return ["scp", "-r", "-q", "-P", str(state["port"]), *ssh_options(state)]


def cmd_copy_to(args):
    st = load_state(args.name)
    sys.exit(run_explained(st, scp_base(st) + [args.src, "root@127.0.0.1:" + args.dst]))


def cmd_down(args):
    names = args.names
    if (args.all or args.prefix) and os.path.isdir(RUN):
        names = [n for n in os.listdir(RUN) if not n.startswith(".") and n.startswith(args.prefix or "")]
    for n in names:
        stop(n)
        log("stopped %s" % n)



def monitor(name, commands, pause=1.0):
    """Send HMP commands to a guest's QEMU monitor; return the replies' text."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(5)
    conn.connect(os.path.join(state_dir(name), "monitor.sock"))
    out = b""
    for c in [""] + list(commands):
        if c.startswith("#sleep "):
            time.sleep(float(c.split()[1]))
            continue
        conn.sendall(c.encode() + b"\n")
        time.sleep(pause)
        try:
            while True:
                d = conn.recv(65536)
                if not d:
                    break
                out += d
        except socket.timeout:
            pass
    conn.close()
    return out.decode(errors="replace")


def breakpoint_storm(int_log):
    """From QEMU's `log int` output: {address: count} of breakpoint (#BP,
    vector 3) exceptions taken in kernel mode."""
    hits = {}
    for m in re.finditer(r"v=03 e=[0-9a-f]+ i=\d cpl=0 IP=[0-9a-f]+:([0-9a-f]+)", int_log):
        hits[int(m.group(1), 16)] = hits.get(int(m.group(1), 16), 0) + 1
    return hits


def memory_bytes(x_reply):
    """The bytes of an HMP `x /Nxb ADDR` reply."""
    return [int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})\b", x_reply.split(":", 1)[-1])]


def cmd_diagnose(args):
    """Tell a stuck guest's emulator fault from a kernel one: a vCPU that
    keeps taking breakpoint exceptions where guest memory holds no int3
    (0xcc) runs a stale translation of code another vCPU rewrote (ftrace,
    kprobes and static keys patch code this way): QEMU's fault, and the
    kernel's int3 handler retries it forever."""
    load_state(args.name)
    path = os.path.join(state_dir(args.name), "int.log")
    if os.path.exists(path):
        os.unlink(path)
    monitor(args.name, ["logfile " + path, "log int", "#sleep %g" % args.seconds, "log none"])
    with open(path, errors="replace") as f:
        text = f.read()
    os.unlink(path)
    hits = breakpoint_storm(text)
    if not hits:
        print("toavm diagnose %s: no breakpoint exceptions in %g s" % (args.name, args.seconds))
        return
    fault = False
    for addr, n in sorted(hits.items(), key=lambda kv: -kv[1])[:3]:
        seen = []
        for cpu in range(args.cpus):
            reply = monitor(args.name, ["cpu %d" % cpu, "x /1xb 0x%x" % addr], pause=0.5)
            got = memory_bytes(reply.rsplit("x /1xb", 1)[-1])
            seen.append("%02x" % got[0] if got else "?")
        stale = n >= 1000 and all(b not in ("cc", "?") for b in seen)
        fault = fault or stale
        print("toavm diagnose %s: %d breakpoint exceptions in %g s at 0x%x; memory there (per vCPU): %s%s"
              % (args.name, n, args.seconds, addr, " ".join(seen),
                 " -> EMULATOR FAULT: no int3 in memory, the vCPU runs a stale translation" if stale else ""))
    sys.exit(3 if fault else 0)


def cmd_reset(args):
    """Power-cycle a guest (QEMU's system_reset, like the reset button) and wait for SSH again."""
    st = load_state(args.name)
    monitor(args.name, ["system_reset"])
    log("reset %s (power cycle)" % args.name)
    if args.wait <= 0:
        return
    deadline = time.time() + args.wait
    time.sleep(5)
    while time.time() < deadline:
        if ssh_ok(st):
            log("guest %s answers SSH again" % args.name)
            return
        time.sleep(3)
    raise SystemExit("toavm: guest %r did not answer SSH within %d s of the reset; console: %s"
                     % (args.name, args.wait, os.path.join(state_dir(args.name), "console.log")))


def cmd_ls(args):
    if not os.path.isdir(RUN):
        return
    for n in sorted(os.listdir(RUN)):
        p = os.path.join(RUN, n, "state.json")
        if os.path.exists(p):
            with open(p) as f:
                st = json.load(f)
            print("%-20s %-11s port %-6d %s %s" % (n, st["guest"], st["port"], st["accel"],
                                                  "running" if pid_alive(st["pid"]) else "dead"))


def cmd_guests(args):
    for g in sorted(GUESTS):
        p = image_path(g)
        print("%-11s %-9s %s" % (g, GUESTS[g]["suite"], p if os.path.exists(p) else "(not built)"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("image")
    p.add_argument("guest")
    p.set_defaults(func=cmd_image)
    p = sub.add_parser("up")
    p.add_argument("name")
    p.add_argument("--guest", default="debian12")
    p.add_argument("--accel", choices=["kvm", "tcg"])
    p.add_argument("--mem", type=int, default=1024)
    p.add_argument("--smp", type=int, default=2)
    p.add_argument("--boot-timeout", type=int, default=300)
    p.add_argument("--icount", type=int, metavar="SHIFT", choices=range(0, 11),
                   help="TCG with an instruction-counted guest clock (2**SHIFT ns per instruction): "
                   "for benchmarks that must not depend on host load")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("ssh")
    p.add_argument("name")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_ssh)
    p = sub.add_parser("copy-to")
    p.add_argument("name")
    p.add_argument("src")
    p.add_argument("dst")
    p.set_defaults(func=cmd_copy_to)
    p = sub.add_parser("down")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true")
    p.add_argument("--prefix", help="stop every guest whose name starts with PREFIX")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("reset", help="power-cycle a guest and wait for SSH")
    p.add_argument("name")
    p.add_argument("--wait", type=int, default=600, help="seconds to wait for SSH (0: do not wait)")
    p.set_defaults(func=cmd_reset)
    p = sub.add_parser("diagnose", help="tell an emulator fault from a kernel one in a stuck guest")
    p.add_argument("name")
    p.add_argument("--seconds", type=float, default=1.0, help="how long to log the vCPUs' exceptions")
    p.add_argument("--cpus", type=int, default=2, help="vCPUs to read the memory through")
    p.set_defaults(func=cmd_diagnose)
    p = sub.add_parser("ls")
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("guests")
    p.set_defaults(func=cmd_guests)
    args = ap.parse_args()
    if os.geteuid() != 0 and args.command in ("image", "up"):
        raise SystemExit("toavm: building images and starting guests needs root (loop devices, chroot)")
    args.func(args)


if __name__ == "__main__":
    main()
