#!/bin/sh
# Proximity one-line installer, run as root on a Proxmox VE node:
#
#   curl -fsSL <URL of this script> | sh -s -- [proximity install flags]
#   e.g. ... | PROXIMITY_PVE_PASSWORD='root password' sh -s -- --wan-ip 192.168.1.50/24 --wan-gw 192.168.1.1
#
# Downloads the static proximity binary of a release, checks its SHA-256 and runs
# `proximity install "$@"` (see `proximity install --help`: --dry-run, --uninstall, ...).
set -eu

# ---------------------------------------------------------------------------------------------
# PLACEHOLDER: there is no published release yet. Set these to the release's binary URL and
# its SHA-256 (the release pipeline fills them in), or override them from the environment.
PROXIMITY_URL="${PROXIMITY_URL:-https://example.invalid/proximity/releases/latest/proximity-x86_64}"
PROXIMITY_SHA256="${PROXIMITY_SHA256:-REPLACE_WITH_THE_RELEASE_SHA256}"
# ---------------------------------------------------------------------------------------------

die() { echo "proximity install.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root on the Proxmox VE node"
[ -d /etc/pve ] || die "/etc/pve not found: this is not a Proxmox VE node"
[ "$(uname -m)" = x86_64 ] || die "only x86_64 is supported (this is $(uname -m))"
command -v sha256sum >/dev/null || die "sha256sum is required"
case "$PROXIMITY_SHA256" in
  *[!0-9a-f]*|"") die "PROXIMITY_SHA256 is not set to the release checksum (64 hex digits); this copy of install.sh is a template" ;;
esac
[ "${#PROXIMITY_SHA256}" = 64 ] || die "PROXIMITY_SHA256 must be 64 hex digits"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
bin="$work/proximity"

echo "downloading $PROXIMITY_URL"
if command -v curl >/dev/null; then
  curl -fsSL --proto '=https' --tlsv1.2 -o "$bin" "$PROXIMITY_URL" || die "download failed: $PROXIMITY_URL"
elif command -v wget >/dev/null; then
  wget -q -O "$bin" "$PROXIMITY_URL" || die "download failed: $PROXIMITY_URL"
else
  die "curl or wget is required"
fi

got=$(sha256sum "$bin" | cut -d' ' -f1)
[ "$got" = "$PROXIMITY_SHA256" ] || die "checksum mismatch: expected $PROXIMITY_SHA256, got $got (download corrupted or tampered with; nothing was installed)"
chmod 0755 "$bin"

# The installer copies itself into the appliance container (--binary defaults to itself).
"$bin" install "$@"
