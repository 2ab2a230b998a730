#!/usr/bin/env bash
# Builds the Debian package: the binary, the systemd units, the default config (a conffile),
# the man page (help2man, from `estuary --help`), postinst creating the `estuary` user.
#   scripts/build-deb.sh [BINARY] [OUTDIR]
# Without BINARY it builds the release binary. Prints the path of the .deb.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin=${1:-}
out=${2:-"${CARGO_TARGET_DIR:-$root/target}/deb"}
if [ -z "$bin" ]; then
  cargo build --release --quiet -p estuary --manifest-path "$root/Cargo.toml"
  bin="${CARGO_TARGET_DIR:-$root/target}/release/estuary"
fi
for tool in dpkg-deb dpkg-shlibdeps help2man; do
  command -v "$tool" >/dev/null || { echo "$tool missing: run scripts/deps.sh test" >&2; exit 1; }
done
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pkg"

install -D -m 755 "$bin" "$pkg/usr/bin/estuary"
strip --strip-debug "$pkg/usr/bin/estuary"
install -D -m 644 "$root/packaging/systemd/estuary.service" "$pkg/lib/systemd/system/estuary.service"
install -D -m 644 "$root/packaging/systemd/estuary@.service" "$pkg/lib/systemd/system/estuary@.service"
install -D -m 640 "$root/packaging/estuary.toml" "$pkg/etc/estuary/estuary.toml"
install -d "$pkg/usr/share/doc/estuary/examples" "$pkg/usr/share/man/man1"
install -m 644 "$root"/docs/*.md "$root/README.md" "$pkg/usr/share/doc/estuary/"
install -m 644 "$root"/examples/*.toml "$root"/examples/*.sdp \
  "$pkg/usr/share/doc/estuary/examples/"
install -m 644 "$root/examples/setup/answers.toml" "$pkg/usr/share/doc/estuary/examples/setup-answers.toml"
install -m 644 "$root/LICENSE" "$pkg/usr/share/doc/estuary/copyright"
help2man --no-info --section=1 --name="audio-over-IP gateway: AES67 / ST 2110-30 / RAVENNA in, SRT out" \
  --version-string="$version" "$pkg/usr/bin/estuary" | gzip -9n > "$pkg/usr/share/man/man1/estuary.1.gz"

# Shared-library dependencies (libsrt, libopus, libc) as dpkg-shlibdeps finds them.
mkdir -p "$stage/debian"
printf 'Source: estuary\n\nPackage: estuary\nArchitecture: any\n' > "$stage/debian/control"
depends=$(cd "$stage" && dpkg-shlibdeps -O "$pkg/usr/bin/estuary" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')

install -d "$pkg/DEBIAN"
install -m 755 "$root"/packaging/deb/{postinst,prerm,postrm} "$pkg/DEBIAN/"
echo /etc/estuary/estuary.toml > "$pkg/DEBIAN/conffiles"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: estuary
Version: $version
Architecture: $arch
Maintainer: Estuary developers <estuary@localhost>
Depends: $depends, adduser
Section: net
Priority: optional
Installed-Size: $(du -sk "$pkg" | cut -f1)
Description: audio-over-IP gateway: AES67 / ST 2110-30 / RAVENNA in, SRT out
 Receives AES67 streams (discovered over SAP and RAVENNA), meters them, raises alarms
 and sends them over SRT as Opus or PCM (SMPTE 302M) in MPEG-TS. REST API and dashboard.
CONTROL
mkdir -p "$out"
deb="$out/estuary_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "$deb"
