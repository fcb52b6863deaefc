#!/usr/bin/env python3
"""Make a deliberately broken TOA kernel package for the boot-once test.

    make_broken_kernel.py IMAGE_DEB OUT_DIR  ->  prints the catalogue row as JSON

The package carries the real TOA kernel image of IMAGE_DEB under the release
"<release>-broken", but no modules and no initramfs, and its maintainer
scripts only regenerate grub.cfg. GRUB boots it; the kernel cannot find its
root filesystem (root=UUID=... needs the initramfs, the disk driver is a
module) and panics. That is the failure the role's boot-once must survive.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile


def main():
    image_deb, out_dir = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        unpacked = os.path.join(tmp, "unpacked")
        subprocess.run(["dpkg-deb", "-x", image_deb, unpacked], check=True)
        kernels = [n for n in os.listdir(os.path.join(unpacked, "boot")) if n.startswith("vmlinuz-")]
        if len(kernels) != 1:
            raise SystemExit("%s: expected one /boot/vmlinuz-*, found %s" % (image_deb, kernels))
        release = kernels[0][len("vmlinuz-"):] + "-broken"
        root = os.path.join(tmp, "pkg")
        os.makedirs(os.path.join(root, "DEBIAN"))
        os.makedirs(os.path.join(root, "boot"))
        os.rename(os.path.join(unpacked, "boot", kernels[0]), os.path.join(root, "boot", "vmlinuz-" + release))
        name = "linux-image-" + release
        with open(os.path.join(root, "DEBIAN", "control"), "w") as f:
            f.write("Package: %s\nVersion: 1\nArchitecture: amd64\nMaintainer: toa-fleet tests <root@localhost>\n"
                    "Section: kernel\nPriority: optional\n"
                    "Description: TOA kernel without modules or initramfs (panics at boot; a test fixture)\n"
                    % name)
        for script in ("postinst", "postrm"):
            path = os.path.join(root, "DEBIAN", script)
            with open(path, "w") as f:
                f.write("#!/bin/sh\nset -e\nif command -v update-grub >/dev/null; then update-grub; fi\n")
            os.chmod(path, 0o755)
        os.makedirs(out_dir, exist_ok=True)
        deb = os.path.join(out_dir, "%s_1_amd64.deb" % name)
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zxz", "--build", root, deb], check=True,
                       stdout=subprocess.DEVNULL)
    with open(deb, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(json.dumps({
        "id": "debian12-x86_64-broken", "distribution": "debian", "major": "12", "arch": "x86_64",
        "kernel": release, "format": "deb", "image": os.path.basename(deb), "headers": None,
        "sha256": {os.path.basename(deb): digest}}))


if __name__ == "__main__":
    main()
