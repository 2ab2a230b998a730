#!/bin/sh
# ST 2022-7 long run: one AES67 sender (stereo L24, 1 ms), two `estuary impair` paths with
# independent 5 % loss (seeds 1 and 2, path 1 2 ms behind), `estuary run` merging them.
# Prints each path's loss, the packets lost on both paths (expected: about p² = 0.25 % of
# them) and the daemon's merged `packets_lost`, which must equal the latter (plus any packet
# whose every copy came after its playout time, counted `late`).
#
#   sudo [LATENCY=20ms] [MAX_SKEW=20ms] scripts/st2022-7-soak.sh [SECONDS] [ESTUARY]
#   (default 600 s, `estuary` on PATH)
#
# Runs in a private network namespace (loopback only), so it needs root.
set -eu
seconds=${1:-600}
estuary=${2:-estuary}
if [ -z "${ESTUARY_NETNS:-}" ]; then
    ESTUARY_NETNS=1 exec unshare -n "$0" "$seconds" "$(command -v "$estuary")"
fi
ip link set lo up
ip link set lo multicast on
ip route add 224.0.0.0/4 dev lo
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
cat > "$dir/st2022-7.toml" <<TOML
[discovery]
sap = false
ravenna = false
sap_groups = []

[api]
bind = "127.0.0.1:15100"

[[inputs]]
name = "main"
kind = "aes67"
address = "239.69.12.1:5004"
interface = "lo"
format = "L24"
channels = 2
payload_type = 98
latency = "${LATENCY:-20ms}"
redundant = { address = "239.69.13.1:5004", interface = "lo" }
max_skew = "${MAX_SKEW:-20ms}"
TOML
"$estuary" run --config "$dir/st2022-7.toml" 2> "$dir/daemon.log" &
daemon=$!
trap 'kill "$daemon" $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
sleep 2
for p in 0 1; do
    "$estuary" impair --listen 239.69.11.1:6000 --listen-interface lo \
        --to "239.69.1$((2 + p)).1:5004" --to-interface lo --loss 5% \
        --delay "$((2 * p))ms" --seed "$((1 + p))" --record-drops \
        --report "$dir/path$p.json" > "$dir/path$p.out" &
    eval "impair$p=\$!"
done
sleep 1
"$estuary" send --to 239.69.11.1:6000 --interface lo --no-announce --no-ravenna \
    --seconds "$seconds" > /dev/null 2>&1
sleep 1
kill -INT "$impair0" "$impair1"
wait "$impair0" "$impair1" || true
curl -sf http://127.0.0.1:15100/api/inputs/main > "$dir/input.json"
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
paths = [json.load(open(f"{d}/path{p}.json")) for p in (0, 1)]
status = json.load(open(f"{d}/input.json"))["status"]
c = status["counters"]
both = set(paths[0]["dropped"]) & set(paths[1]["dropped"])
n = paths[0]["received"]
for p, r in enumerate(paths):
    print(f"path {p}: received {r['received']}, lost {r['lost']} ({100 * r['lost'] / n:.2f} %)")
p0, p1 = (r["lost"] / n for r in paths)
print(f"lost on both paths: {len(both)} of {n} ({100 * len(both) / n:.3f} %; "
      f"expected p0 x p1 = {100 * p0 * p1:.3f} %)")
print(f"merged: packets_lost {c['packets_lost']}, late {c['packets_late']}, "
      f"duplicate {c['packets_duplicate']}, reordered {c['packets_reordered']}")
red = status.get("redundancy", {})
for i, p in enumerate(red.get("paths", [])):
    print(f"api path {i}: {p}")
print(f"skew {red.get('skew_us')} us, max {red.get('max_abs_skew_us')} us")
# With independent losses p0 and p1, p0 x p1 of the packets are lost on both paths: no
# receiver can play them. Every other packet reached the box on at least one path, and must be
# played unless every copy that arrived came after its playout time (counted `late`).
extra = c["packets_lost"] - len(both)
print(f"merged loss beyond the packets lost on both paths: {extra} "
      f"(late copies counted: {c['packets_late']})")
ok = 0 <= extra <= c["packets_late"] and (extra == 0) == (c["packets_late"] == 0)
print("st2022-7: PASS (merged loss = packets lost on both paths"
      + (")" if extra == 0 else f" + {extra} late on every path that carried them)")
      if ok else "st2022-7: FAIL")
sys.exit(0 if ok else 1)
PY
