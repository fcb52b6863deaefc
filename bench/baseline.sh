#!/usr/bin/env bash
# The bare-minimum TOA install that the role's first converge (module route)
# is compared with, over ONE ssh connection:
#   bench/baseline.sh PORT KEY KNOWN_HOSTS [HOST] [USER]
# Installs the running kernel's headers and a compiler, builds toa.ko from
# roles/toa/files/toa-src, installs it under /lib/modules, loads it with the
# role's default parameters and writes the autoload files the role writes
# (/etc/modules-load.d/toa.conf, /etc/modprobe.d/toa.conf). No DKMS, no
# verification, no idempotence: it is a stopwatch baseline, not an installer.
# It gets what the role's module route gets: the apt indexes refreshed only
# when older than toa_apt_cache_valid_time, and make with as many jobs as
# DKMS uses (one per CPU).
set -euo pipefail
if [ $# -lt 3 ]; then
	echo "usage: $0 PORT KEY KNOWN_HOSTS [HOST] [USER]   (port, key and known_hosts as toavm.py up printed them)" >&2
	exit 2
fi
# The guest's host key is checked strictly against KNOWN_HOSTS (the file
# testbed/toavm.py recorded when it started the guest).
port=$1 key=$2 known_hosts=$3 host=${4:-127.0.0.1} user=${5:-root}
[ -s "$known_hosts" ] || { echo "$0: no recorded host key in $known_hosts" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../roles/toa/files/toa-src"
[ -f "$src/Kbuild" ] || { echo "$0: no module source at $src" >&2; exit 2; }

# The remote script carries the source as base64 in a here-document, so the
# whole install is one ssh session reading one stream.
remote() {
	cat <<'EOS'
set -eu
export DEBIAN_FRONTEND=noninteractive
rel=$(uname -r)
mkdir -p /root/toa-baseline
base64 -d <<'TGZ' | tar -C /root/toa-baseline -xzf -
EOS
	(cd "$src" && tar -czf - Kbuild Makefile dkms.conf ./*.c ./*.h) | base64
	cat <<'EOS'
TGZ
t0=$(date +%s)
# The same index rule as the role (toa_apt_cache_valid_time, 3600 s by
# default): refresh only when the last refresh is older than that.
stamp=/var/lib/apt/periodic/update-success-stamp
[ -e "$stamp" ] || stamp=/var/lib/apt/lists
if [ $(( $(date +%s) - $(stat -c %Y "$stamp") )) -ge "${TOA_APT_CACHE_VALID_TIME:-3600}" ]; then
	apt-get update -qq
fi
apt-get install -y -qq --no-install-recommends "linux-headers-$rel" gcc make libc6-dev >/root/toa-baseline/apt.log 2>&1 ||
	{ tail -20 /root/toa-baseline/apt.log; exit 1; }
t1=$(date +%s)
# As many jobs as DKMS gives its builds (its default: the number of CPUs).
make -j"$(nproc)" -C "/lib/modules/$rel/build" M=/root/toa-baseline modules >/root/toa-baseline/build.log 2>&1 ||
	{ tail -20 /root/toa-baseline/build.log; exit 1; }
t2=$(date +%s)
install -D -m 0644 /root/toa-baseline/toa.ko "/lib/modules/$rel/updates/toa.ko"
depmod "$rel"
echo 'options toa ipv4_kinds=200 ipv6_kinds=253,254 trusted_cidrs=' >/etc/modprobe.d/toa.conf
echo toa >/etc/modules-load.d/toa.conf
modprobe toa
grep -q '^toa ' /proc/modules
t3=$(date +%s)
echo "baseline: toa loaded on $rel (apt $((t1 - t0)) s, build $((t2 - t1)) s, install+load $((t3 - t2)) s)"
EOS
}

remote | ssh -T -p "$port" -i "$key" -o UserKnownHostsFile="$known_hosts" -o GlobalKnownHostsFile=/dev/null \
	-o StrictHostKeyChecking=yes \
	-o LogLevel=ERROR -o ConnectTimeout=60 "$user@$host" bash -s
