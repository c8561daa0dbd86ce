#!/usr/bin/env bash
# Build the Proximity appliance: a Proxmox CT template (.tar.zst) from an Alpine minirootfs,
# the static proximity binary and the rootfs/ overlay. Reproducible: fixed mtimes, owners
# and file order.
#
# usage: appliance/build-image.sh --minirootfs PATH|URL [--binary PATH] [--apk-cache DIR]
#                                 [--out DIR] [--version V] [--zstd-level N] [--allow-dynamic]
#   --minirootfs  Alpine minirootfs tarball (alpine-minirootfs-3.xx-x86_64.tar.gz); a URL is
#                 downloaded only when given explicitly.
#   --binary      static proximity binary (default: `make static`, target/static/...).
#   --apk-cache   directory with nftables and its dependencies as .apk files; without it the
#                 appliance installs nftables with `apk add nftables` on first boot.
#   --out         output directory (default: dist/).
#   --zstd-level  compression level (default 19; tests use a low level to stay fast).
#   --allow-dynamic  accept a dynamically linked binary (tests only: it will not run on Alpine).
set -euo pipefail
umask 022
cd "$(dirname "$0")/.."

minirootfs="" binary="" apk_cache="" out="dist" version="" zstd_level=19 allow_dynamic=0
while [ $# -gt 0 ]; do
  case "$1" in
    --minirootfs) minirootfs="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --apk-cache) apk_cache="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --zstd-level) zstd_level="$2"; shift 2 ;;
    --allow-dynamic) allow_dynamic=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$minirootfs" ] || { echo "error: --minirootfs PATH|URL is required (Alpine minirootfs tarball)" >&2; exit 2; }
[ -n "$version" ] || version=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
for tool in tar zstd sha256sum; do command -v $tool >/dev/null || { echo "error: $tool is required" >&2; exit 2; }; done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"

case "$minirootfs" in
  http://*|https://*) echo "downloading $minirootfs"; curl -fsSL -o "$work/minirootfs.tar.gz" "$minirootfs"; minirootfs="$work/minirootfs.tar.gz" ;;
esac
[ -f "$minirootfs" ] || { echo "error: $minirootfs does not exist" >&2; exit 2; }
tar -xpf "$minirootfs" -C "$root"

if [ -z "$binary" ]; then
  echo "building the static binary (make static: crt-static, profile appliance)"
  make static
  binary=target/static/x86_64-unknown-linux-gnu/appliance/proximity
fi
[ -x "$binary" ] || { echo "error: binary $binary not found" >&2; exit 2; }
if command -v file >/dev/null && ! file -L "$binary" | grep -q 'static'; then
  if [ "$allow_dynamic" = 1 ]; then
    echo "WARNING: $binary is dynamically linked (--allow-dynamic): this image is for tests only" >&2
  else
    echo "error: $binary is not statically linked (file says: $(file -L "$binary")); build it with make static" >&2; exit 2
  fi
fi

# Overlay and binary.
cp -a rootfs/. "$root/"
install -D -m 0755 "$binary" "$root/usr/bin/proximity"
mkdir -p "$root/var/lib/proximity" "$root/etc/runlevels/default" "$root/etc/runlevels/boot"
chmod 0700 "$root/var/lib/proximity"
ln -sf /etc/init.d/proximity "$root/etc/runlevels/default/proximity"
[ -e "$root/etc/init.d/sysctl" ] && ln -sf /etc/init.d/sysctl "$root/etc/runlevels/boot/sysctl"
[ -e "$root/etc/init.d/networking" ] && ln -sf /etc/init.d/networking "$root/etc/runlevels/default/networking"

# nftables: from the given apk cache, or on first boot.
if [ -n "$apk_cache" ]; then
  for apk in "$apk_cache"/*.apk; do
    [ -e "$apk" ] || { echo "error: no .apk files in $apk_cache" >&2; exit 2; }
    tar -xzf "$apk" -C "$root" --exclude='.PKGINFO' --exclude='.SIGN.*' --exclude='.pre-*' --exclude='.post-*' --exclude='.trigger' 2>/dev/null
  done
else
  mkdir -p "$root/etc/local.d" "$root/etc/runlevels/default"
  cat > "$root/etc/local.d/proximity-firstboot.start" <<'FIRSTBOOT'
#!/bin/sh
# First boot: install nftables (the image was built without an apk cache).
command -v nft >/dev/null || apk add --no-cache nftables
rm -f /etc/local.d/proximity-firstboot.start
FIRSTBOOT
  chmod 0755 "$root/etc/local.d/proximity-firstboot.start"
  [ -e "$root/etc/init.d/local" ] && ln -sf /etc/init.d/local "$root/etc/runlevels/default/local"
fi

mkdir -p "$out"
name="proximity-appliance-${version}-amd64.tar.zst"
epoch="${SOURCE_DATE_EPOCH:-1767225600}"   # 2026-01-01T00:00:00Z unless given
# Same bytes from the same inputs: sorted names, one mtime, root owner, no atime/ctime, and
# single-threaded zstd.
tar --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$root" -cf - . | zstd -q "-$zstd_level" -T1 -f -o "$out/$name"
(cd "$out" && sha256sum "$name" > "$name.sha256")

bin_size=$(stat -c %s "$binary")
img_size=$(stat -c %s "$out/$name")
echo "binary:   $binary $((bin_size / 1024 / 1024)) MiB ($bin_size bytes; budget 25 MiB)"
echo "template: $out/$name $((img_size / 1024 / 1024)) MiB ($img_size bytes; budget 30 MiB)"
echo "sha256:   $(cut -d' ' -f1 "$out/$name.sha256")"
