#!/usr/bin/env bash
# Every check CI runs: installs what it needs, then format, lints, example configs, a fuzz
# smoke run of every parser, and all tests (unit, property, scenario, interop with real peers).
# The interop tests create network namespaces, so they need root (or CAP_SYS_ADMIN).
set -euo pipefail
cd "$(dirname "$0")"
# Every "==>" line carries the seconds since the start, so a slow run says where time went.
SECONDS=0
step() { printf '==> [%4ss] %s\n' "$SECONDS" "$*"; }
scripts/deps.sh test

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "estuary check-config on every example"
cargo build --quiet -p estuary
for f in examples/*.toml packaging/estuary.toml; do
  target/debug/estuary check-config "$f"
done

# The aarch64 step (cross-compiled engine and wire unit tests under qemu-user) is CPU work:
# it runs beside the fuzz runs and the test build, in its own target directory (one cargo
# build directory takes one cargo at a time), and is done before the integration tests
# start, whose real-time audio a busy CPU would make late.
mkdir -p target
aarch64_log=target/aarch64-ci.log
(
  CARGO_TARGET_DIR=target/aarch64-ci scripts/cross-aarch64.sh test \
    -p estuary-wire -p estuary-engine --lib --quiet -- \
    --skip drift::tests::resampler_tracks_drift_and_rate
) >"$aarch64_log" 2>&1 &
aarch64_pid=$!

step "fuzz smoke run (${FUZZ_SECONDS:=5} s per target)"
(
  cd fuzz
  export RUSTC_BOOTSTRAP=1
  for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true
    printf '  %-16s ' "$target"
    cargo fuzz run --release "$target" "corpus/$target" -- \
      -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 2>&1 | grep -E '^Done|SUMMARY|panicked' || true
    # A crash leaves an artifact and a non-zero exit above (pipefail); say which target.
    [ -z "$(ls -A "artifacts/$target" 2>/dev/null)" ] || { echo "fuzz target $target crashed"; exit 1; }
  done
)

step "cargo test (workspace)"
cargo test --workspace --no-run --quiet
# The drift resampler's test is pure arithmetic that takes over 2 minutes under emulation; it
# runs natively below, and every other engine and wire test runs under qemu.
step "aarch64: the sans-IO and engine unit tests, cross-compiled, under qemu-user"
aarch64=0
wait "$aarch64_pid" || aarch64=$?
cat "$aarch64_log"
tests=0
cargo test --workspace --no-fail-fast 2>&1 | tee target/test.log || tests=$?
if [ "$tests" -ne 0 ]; then
  step "cargo test failed ($tests); the failed tests once more, each alone"
  scripts/retry-flaky.sh target/test.log || { echo "cargo test failed"; exit 1; }
fi
[ "$aarch64" -eq 0 ] || { echo "aarch64 tests failed ($aarch64)"; exit 1; }
step "all checks passed"
