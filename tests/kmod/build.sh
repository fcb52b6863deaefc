#!/usr/bin/env bash
# Compile matrix for the TOA kernel module (roles/toa/files/toa-src).
#
# The host cannot load modules, so this proves what a host can prove:
#   - the option parser, built in user space with sanitizers, survives
#     fixed vectors and random input;
#   - toa.ko builds without a single warning against Debian 12 6.1 headers
#     for amd64 (native) and arm64 (cross, gcc-aarch64-linux-gnu), and
#     against Debian 12's 6.12 amd64 headers (Debian 13's kernel series);
#   - modinfo shows version, license, description and every parameter.
# Kernel headers are never installed into the system: the .deb files are
# fetched with apt-get download and unpacked under
# ${TOA_CACHE:-~/.cache/toa-fleet}/kheaders.  arm64 package lists come from a
# private apt state directory there, so the host's dpkg architectures stay
# untouched.  Idempotent; prints one PASS/FAIL line per target.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../../roles/toa/files/toa-src" && pwd)
: "${TOA_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/toa-fleet}"
cache=$TOA_CACHE/kheaders
mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0

pass() { echo "PASS $1${2:+ ($2)}"; }
fail() { echo "FAIL $1: $2"; failed=1; }

# ----------------------------------------------------------------------------
# apt helpers
apt_arm64() {	# apt_arm64 APT-GET-OR-CACHE ARGS...: apt with arm64 lists
	local tool=$1 dir=$cache/apt-arm64
	shift
	mkdir -p "$dir/lists/partial" "$dir/archives/partial"
	[ -f "$dir/status" ] || : > "$dir/status"
	cat > "$dir/apt.conf" <<CONF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Dir::State::Lists "$dir/lists";
Dir::State::status "$dir/status";
Dir::Cache "$dir";
Dir::Cache::archives "$dir/archives";
CONF
	APT_CONFIG=$dir/apt.conf "$tool" "$@"
}

# newest_release SERIES FLAVOUR [arm64]: newest kernel release of a Debian
# 12 header series known to apt, e.g. "6.1.0-56-amd64" for series 6.1 or
# "6.12.117+deb12-amd64" for series 6.12 (the 6.12 kernels Debian 12 ships
# besides 6.1, the same series Debian 13 runs).
newest_release() {
	local series=$1 flavour=$2 lister=(apt-cache) re
	[ "${3:-}" = arm64 ] && lister=(apt_arm64 apt-cache)
	case $series in
	6.1) re='6\.1\.0-[0-9]+' ;;
	6.12) re='6\.12\.[0-9]+\+deb12' ;;
	esac
	"${lister[@]}" search --names-only "^linux-headers-$re-$flavour\$" 2>/dev/null |
		sed -n "s/^linux-headers-\([^ ]*\)-$flavour .*/\1/p" | sort -V | tail -1 |
		sed "s/\$/-$flavour/" | grep -v "^-$flavour\$"
}

# fetch_headers ARCH RELEASE: unpack headers + common + kbuild of RELEASE
# (e.g. 6.1.0-56-amd64) and echo the kernel build directory.  The packages'
# Makefile includes the common tree by absolute /usr/src path: point it into
# the cache instead.  The arm64 headers' scripts/ is a symlink into
# linux-kbuild, whose amd64 build tools serve the cross build.
fetch_headers() {
	local arch=$1 rel=$2 root debs kdir base kbuild
	base=${rel%-*}				# 6.1.0-56 / 6.12.117+deb12
	case $base in
	6.1.0-*) kbuild=linux-kbuild-6.1 ;;
	*) kbuild=linux-kbuild-$base ;;
	esac
	root=$cache/root-$rel
	kdir=$root/usr/src/linux-headers-$rel
	if [ ! -f "$root/.complete" ]; then
		debs=$cache/debs-$rel
		rm -rf "$root" "$debs"
		mkdir -p "$debs" "$root"
		(cd "$debs" && apt-get download -q "linux-headers-$base-common" "$kbuild" \
			>/dev/null 2>&1) || return 1
		if [ "$arch" = amd64 ]; then
			(cd "$debs" && apt-get download -q "linux-headers-$rel" >/dev/null 2>&1) ||
				return 1
		else
			(cd "$debs" && apt_arm64 apt-get download -q "linux-headers-$rel" >/dev/null 2>&1) ||
				return 1
		fi
		for d in "$debs"/*.deb; do
			dpkg-deb -x "$d" "$root" || return 1
		done
		sed -i "s#^include /usr/src/#include $root/usr/src/#" "$kdir/Makefile"
		touch "$root/.complete"
		rm -rf "$debs"
	fi
	echo "$kdir"
}

# ----------------------------------------------------------------------------
# 1. the version modinfo must show (that VERSION, toa.h and dkms.conf agree,
# and that the version moves with the source, is a unit test:
# tests/unit/test_toa_src_hash.py)
version=$(tr -d ' \n' < "$src/VERSION")

# 2. user-space parser test with sanitizers
if gcc -std=gnu11 -O1 -g -Wall -Wextra -Werror -fsanitize=address,undefined \
	-fno-sanitize-recover=all -I"$src" -include "$here/opt_shim.h" \
	-o "$work/opt_test" "$here/opt_test.c" "$src/toa_opt.c" >"$work/opt.log" 2>&1 &&
	"$work/opt_test" >>"$work/opt.log" 2>&1; then
	pass parser "$(tail -1 "$work/opt.log")"
else
	fail parser "$(tail -5 "$work/opt.log" | tr '\n' ' ')"
fi

# 3. kernel builds
assert_modinfo() {	# assert_modinfo KO RELEASE MACHINE
	local ko=$1 rel=$2 machine=$3 mi p
	mi=$(/sbin/modinfo "$ko" 2>&1) || { echo "modinfo failed: $mi"; return 1; }
	grep -qx "version: *$version" <<<"$mi" || { echo "version not $version"; return 1; }
	grep -qx "license: *GPL" <<<"$mi" || { echo "license not GPL"; return 1; }
	grep -q "^description: *[^ ]" <<<"$mi" || { echo "no description"; return 1; }
	grep -q "^author: *[^ ]" <<<"$mi" || { echo "no author"; return 1; }
	grep -q "^vermagic: *$rel " <<<"$mi" || { echo "vermagic not $rel"; return 1; }
	for p in enabled max_entries netns_max_entries ipv4_kinds ipv6_kinds trusted_cidrs syn_toa hook_mode buckets maxactive; do
		grep -q "^parm: *$p:[^ ]" <<<"$mi" || { echo "parameter $p missing or undocumented"; return 1; }
	done
	readelf -h "$ko" | grep -q "Machine: *$machine" || { echo "not a $machine object"; return 1; }
}

build_target() {	# build_target NAME SERIES ARCH FLAVOUR MACHINE [make args...]
	local name=$1 series=$2 arch=$3 flavour=$4 machine=$5 rel kdir bdir log why
	shift 5
	if [ "$arch" = arm64 ] && ! command -v aarch64-linux-gnu-gcc-12 >/dev/null; then
		fail "$name" "aarch64-linux-gnu-gcc-12 missing (apt-get install gcc-aarch64-linux-gnu)"
		return
	fi
	# arm64 package lists: refreshed at most once a day
	if [ "$arch" = arm64 ] &&
		[ -z "$(find "$cache/apt-arm64/lists" -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
		apt_arm64 apt-get -qq update >/dev/null 2>&1
	fi
	rel=$(if [ "$arch" = arm64 ]; then newest_release "$series" "$flavour" arm64; else
		newest_release "$series" "$flavour"; fi)
	if [ -z "$rel" ]; then	# offline: reuse the newest cached tree of the series
		rel=$(ls -d "$cache/root-$series".*"-$flavour" "$cache/root-$series-"*"-$flavour" 2>/dev/null |
			sed 's#.*/root-##' | sort -V | tail -1)
	fi
	if [ -z "$rel" ]; then
		fail "$name" "no linux-headers for $series/$flavour known to apt and none cached"
		return
	fi
	if ! kdir=$(fetch_headers "$arch" "$rel"); then
		fail "$name" "cannot download headers for $rel"
		return
	fi
	bdir=$work/$name
	cp -r "$src" "$bdir"
	log=$work/$name.log
	# No BTF for the module: it needs pahole and proves nothing about the C.
	if ! make -C "$kdir" M="$bdir" CONFIG_DEBUG_INFO_BTF_MODULES= "$@" modules >"$log" 2>&1; then
		fail "$name" "build failed: $(grep -m3 -iE 'error|warning' "$log" | tr '\n' ' ')"
		return
	fi
	# Any warning from compiler, modpost or kbuild fails the target.
	if grep -iE 'warning|error' "$log" | grep -q .; then
		fail "$name" "warnings: $(grep -m3 -iE 'warning|error' "$log" | tr '\n' ' ')"
		return
	fi
	if ! why=$(assert_modinfo "$bdir/toa.ko" "$rel" "$machine"); then
		fail "$name" "modinfo: $why"
		return
	fi
	pass "$name" "$rel, no warnings, modinfo ok"
}

build_target debian12-amd64 6.1 amd64 amd64 'Advanced Micro Devices X86-64'
build_target debian12-arm64 6.1 arm64 arm64 AArch64 ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-
# Debian 12's 6.12 series: the kernel generation of Debian 13
build_target debian12-6.12-amd64 6.12 amd64 amd64 'Advanced Micro Devices X86-64'

exit $failed
