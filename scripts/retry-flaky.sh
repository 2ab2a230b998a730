#!/usr/bin/env bash
# Reruns, once and alone, the tests a `cargo test --no-fail-fast` log shows failing, and
# passes only if every one of them passes on its own.
#
# Why: the integration tests run real-time audio through real peers (GStreamer, FFmpeg,
# ptp4l, netaudio) on shared 2-core machines. A stall of tens of milliseconds there makes a
# transmitter skip audio, which the daemon counts, and most tests accept exactly what was
# counted; the few that cannot tell a stall from a fault get one more try. A test that fails
# twice fails CI, and so does a log with more than MAX_RETRIED failures (that is a broken
# build, not a loaded machine). Every retried test is listed as FLAKY in the output and in
# target/flaky-tests.txt, so a test that keeps needing a retry is seen and mended.
#
# Usage: scripts/retry-flaky.sh LOG
set -euo pipefail
log=$1
max=${MAX_RETRIED:-3}

# "ARGS<TAB>name name ..." per failed test target, from the harness's lines
# ("test NAME ... FAILED") and cargo's ("error: test failed, to rerun pass `ARGS`").
plan=$(awk '
  /^test .* \.\.\. FAILED$/ { names = names " " $2; next }
  /to rerun pass `/ {
    match($0, /`[^`]*`/); args = substr($0, RSTART + 1, RLENGTH - 2)
    # Doc tests are named by file and line, not by a word: rerun the whole target.
    if (args ~ /--doc/) names = ""
    print args "\t" names; names = ""
  }
' "$log")

if [ -z "$plan" ]; then
  echo "cargo test failed, but no failed test is named in its log (a build error?)"
  exit 1
fi
count=$(printf '%s\n' "$plan" | awk -F'\t' '{ n += split($2, a, " ") } END { print n }')
if [ "$count" -gt "$max" ]; then
  echo "$count tests failed (more than $max): not retried"
  exit 1
fi

status=0
: >target/flaky-tests.txt
while IFS=$'\t' read -r args names; do
  # shellcheck disable=SC2086 # ARGS and the names are words.
  if [ -z "$names" ]; then
    echo "==> retrying: cargo test $args (no test named; the whole target)"
    cargo test $args || status=1
    continue
  fi
  echo "==> retrying alone: cargo test $args -- --exact$names"
  want=$(wc -w <<<"$names")
  # shellcheck disable=SC2086
  if cargo test $args -- --exact --test-threads=1 $names 2>&1 | tee target/retry.log &&
    # A name that matched nothing would pass by running nothing.
    grep -Eq "^test result: ok\. $want passed" target/retry.log; then
    for name in $names; do
      echo "FLAKY (failed, then passed alone): $args $name" | tee -a target/flaky-tests.txt
    done
  else
    status=1
  fi
done <<<"$plan"
exit "$status"
