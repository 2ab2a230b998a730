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
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig
if [ "$cmd" = build ]; then
  exec cargo build --target "$target" -p estuary "$@"   # add --release for the package
fi
# Test binaries link glibc statically: under qemu-user on our CI machines a dynamically linked
# aarch64 program spins forever in glibc's locking the first time it starts a thread (in
# pthread_create, reproduced with a five-line C program on qemu 7.2 and 10.0), while the same
# program linked statically runs. The Rust test harness starts a thread for every test.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
exec cargo test --target "$target" "$@"
