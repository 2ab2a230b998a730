#!/usr/bin/env bash
# The demo: a built-in AES67 tone on loopback -> Estuary -> SRT listener on 127.0.0.1:9000.
# Installs what it needs, builds, runs. Arguments go to `estuary demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh build
cargo build --release --quiet -p estuary
exec target/release/estuary demo "$@"
