#!/usr/bin/env bash
# Installs what Estuary needs, idempotently: Debian packages (only the missing ones, one
# `apt-get update` at most) and, for `test`, cargo-fuzz. Safe to run again and again.
#   scripts/deps.sh build   - to build and run the daemon
#   scripts/deps.sh test    - also the independent peers the tests talk to, and the
#                             dashboard test's Chromium + playwright-core
set -euo pipefail

profile=${1:-build}
build_pkgs=(build-essential pkg-config libsrt-gnutls-dev libopus-dev iproute2
            libavcodec-dev libavformat-dev libavutil-dev libswresample-dev libswscale-dev)
test_pkgs=(ffmpeg srt-tools gstreamer1.0-tools gstreamer1.0-plugins-base
           gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
           avahi-daemon avahi-utils dbus-daemon python3-aiosmtpd
           curl openssl python3-venv chromium nodejs
           sox flac mount linuxptp tshark
           systemd tmux nftables debootstrap help2man
           gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
           icecast2 nginx libnginx-mod-rtmp libnginx-mod-stream)

case "$profile" in
  build) wanted=("${build_pkgs[@]}") ;;
  test) wanted=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  *) echo "usage: $0 build|test" >&2; exit 2 ;;
esac

missing=()
for pkg in "${wanted[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

# npm: Debian's package, unless a Node.js build that bundles npm (e.g. NodeSource) is there.
if [ "$profile" = test ] && ! command -v npm >/dev/null; then
  missing+=(npm)
fi

if ((${#missing[@]})); then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  echo "==> installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  cat >&2 <<'MSG'
cargo not found. Estuary needs Rust 1.88 or newer (edition 2024); Debian's packaged rustc is
older. Install it with rustup (https://rustup.rs) and run this command again.
MSG
  exit 1
fi

# schemathesis fuzzes the live API from its OpenAPI document (tests/api.rs); a venv keeps it
# away from the system Python.
if [ "$profile" = test ] && ! [ -x /opt/estuary-venv/bin/st ]; then
  echo "==> installing schemathesis into /opt/estuary-venv (once)"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo /usr/bin/python3 -m venv /opt/estuary-venv
  $sudo /opt/estuary-venv/bin/pip install --quiet schemathesis
fi

# netaudio is the Dante controller the Dante tests drive (tests/dante.rs): an independent
# implementation of the controller side. Pinned: its ARC dialect checks change between releases.
if [ "$profile" = test ] && ! [ -x /opt/estuary-venv/bin/netaudio ]; then
  echo "==> installing netaudio 0.4.2 into /opt/estuary-venv (once)"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo /opt/estuary-venv/bin/pip install --quiet "netaudio==0.4.2"
fi
# Renames: netaudio 0.4.2 renames channels in a newer ARC dialect whose probes are not
# documented; the 0.2 series uses the legacy rename messages. 0.2.4 does not import on
# Debian 12's Python 3.11 (a 3.12-only f-string), so the tests use 0.2.5, in its own venv.
if [ "$profile" = test ] && ! [ -x /opt/estuary-venv-netaudio02/bin/netaudio ]; then
  echo "==> installing netaudio 0.2.5 into /opt/estuary-venv-netaudio02 (once)"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo /usr/bin/python3 -m venv /opt/estuary-venv-netaudio02
  $sudo /opt/estuary-venv-netaudio02/bin/pip install --quiet "netaudio==0.2.5"
fi

# The aarch64 unit tests (test.sh) cross-compile for the Raspberry Pi's target.
if [ "$profile" = test ] && ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
  echo "==> adding the Rust target aarch64-unknown-linux-gnu (once)"
  rustup target add aarch64-unknown-linux-gnu
fi

if [ "$profile" = test ] && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz (once)"
  cargo install --locked --quiet cargo-fuzz
fi

# The dashboard's browser test: playwright-core (pinned in package-lock.json) drives Debian's
# Chromium; no browser download.
dashboard_e2e="$(cd "$(dirname "$0")/.." && pwd)/crates/estuary/tests/dashboard"
if [ "$profile" = test ] && [ ! -d "$dashboard_e2e/node_modules/playwright-core" ]; then
  echo "==> installing playwright-core for the dashboard test (once)"
  (cd "$dashboard_e2e" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
fi

# The package test (tests/inst.rs) installs the .deb into a clean Debian bookworm root, built
# once per machine with debootstrap from this machine's mirror (like the packages above, not
# once per clone: a fresh clone would pay two minutes for the same root).
debroot="${ESTUARY_DEBROOT:-/var/cache/estuary-ci/deb-root/bookworm}"
# Rebuilt when it lacks a library the package depends on (FFmpeg's, since the Icecast outputs).
if [ "$profile" = test ] && { [ ! -x "$debroot/usr/bin/setpriv" ] ||
    ! ls "$debroot"/usr/lib/*/libavformat.so.59* >/dev/null 2>&1; }; then
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "==> building a clean bookworm root for the package test (once, ~2 min): $debroot"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo rm -rf "$debroot.tmp"
  $sudo rm -rf "$debroot"
  $sudo mkdir -p "$(dirname "$debroot")"
  $sudo debootstrap --variant=minbase \
    --include=libsrt1.5-gnutls,libopus0,libavcodec59,libavformat59,libavutil57,libswresample4,util-linux,adduser \
    bookworm "$debroot.tmp" "$mirror" >/dev/null
  $sudo mv "$debroot.tmp" "$debroot"
fi
