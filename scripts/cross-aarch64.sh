#!/usr/bin/env bash
# Cross-compiles for aarch64-unknown-linux-gnu (Raspberry Pi 4/5) with Debian's cross toolchain
# and arm64 multiarch libraries, and runs the tests under qemu-user.
#   scripts/cross-aarch64.sh deps                 # install the toolchain (once, as root)
#   scripts/cross-aarch64.sh test [CARGO ARGS]    # e.g. test -p estuary-wire -p estuary-engine
#   scripts/cross-aarch64.sh build [--release]    # the estuary binary
set -euo pipefail
target=aarch64-unknown-linux-gnu
case "${1:-}" in
  deps)
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
      dpkg --add-architecture arm64
      apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user \
      libsrt-gnutls-dev:arm64 libopus-dev:arm64 >/dev/null
    rustup target add "$target"
    exit 0 ;;
  test|build) ;;
  *) echo "usage: $0 deps|test|build [cargo args]" >&2; exit 2 ;;
esac
cmd=$1; shift
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# The loader and libc must come from one glibc build: with Debian's multiarch arm64 libc
# installed (libc6:arm64, pulled in by the arm64 libsrt/libopus), qemu's `-L` prefix would give
# the cross toolchain's ld.so (/usr/aarch64-linux-gnu) but fall back to the multiarch
# libc.so.6, and that mix spins forever in glibc the first time a program starts a thread.
if [ -e /lib/ld-linux-aarch64.so.1 ]; then
  qemu_root=/
else
  qemu_root=/usr/aarch64-linux-gnu
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L $qemu_root"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
if [ "$cmd" = build ]; then
  exec cargo build --target "$target" -p estuary "$@"   # add --release for the package
fi
exec cargo test --target "$target" "$@"
