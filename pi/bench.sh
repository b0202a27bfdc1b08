#!/usr/bin/env bash
# Measure a bundle on this device and write a report to share: bench.json + bench.md.
#
#   pi/bench.sh ~/bundle                   # → bench-<host>-<date>/bench.json, bench.md (~1 minute)
#   pi/bench.sh ~/bundle results/pi5       # into results/pi5/
#   edgeft bench --compare results/pi5/bench.json laptop.json --markdown pi5-vs-laptop.md
#
# Raspberry Pi settings: batch 1 (one request at a time, the serving case), real sentences (the
# SST-2 sample shipped with edgeft, each padded only to its own length), 1 to 4 threads (never more
# than the cores), 300 timed runs per setting after 30 warm-up runs; cold start (process start →
# first prediction) and peak memory come from fresh processes. A Pi slows down when hot (over 80 °C)
# or underpowered: the firmware's throttling flags are recorded before and after, with a warning.
#
# A text-generation bundle (`edgeft export-lm`) is timed instead on a 128-token prompt and 64 greedy
# tokens: time to first token, prefill and decode tokens/s, peak memory, 5 runs per thread count.
#
# Settings: EDGEFT (the edgeft command, as in run.sh), THREADS (default 1,…,min(4, cores)),
# RUNS, WARMUP, SEQ_LEN (default real), BATCH (default 1), DATA (a .txt/.jsonl of your own sentences);
# text generation: PROMPT_TOKENS (default 128), NEW_TOKENS (default 64), RUNS (default 5), WARMUP (1).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
bundle=$1
out=${2:-bench-$(hostname)-$(date +%Y%m%d-%H%M)}

# shellcheck source=find-edgeft.sh source-path=SCRIPTDIR
. "$(dirname "$0")/find-edgeft.sh"
find_edgeft bench.sh
cores=$(nproc)
threads=${THREADS:-$(seq -s, 1 $((cores < 4 ? cores : 4)))}
data=()
[ -z "${DATA:-}" ] || data=(--data "$DATA")

throttled() {  # the Pi firmware's flags: 0x0 = never throttled or under-voltage since boot
    if command -v vcgencmd >/dev/null; then
        echo "$(vcgencmd get_throttled) $(vcgencmd measure_temp) $(vcgencmd measure_clock arm)"
    else
        echo "no vcgencmd (not a Raspberry Pi OS)"
    fi
}
mkdir -p "$out"
before=$(throttled)
if grep -q '"task": "text-generation"' "$bundle/edgeft.json" 2>/dev/null; then
    # a decoder: time to first token of a PROMPT_TOKENS prompt, prefill and decode tokens/s, peak memory
    "$edgeft" bench "$bundle" --threads "$threads" --prompt-tokens "${PROMPT_TOKENS:-128}" \
        --new-tokens "${NEW_TOKENS:-64}" --runs "${RUNS:-5}" --warmup "${WARMUP:-1}" \
        --json "$out/bench.json" --markdown "$out/bench.md"
else
    "$edgeft" bench "$bundle" --threads "$threads" --batch "${BATCH:-1}" --seq-len "${SEQ_LEN:-real}" \
        --runs "${RUNS:-300}" --warmup "${WARMUP:-30}" "${data[@]}" --json "$out/bench.json" --markdown "$out/bench.md"
fi
after=$(throttled)
printf '\n- throttling before: %s\n- throttling after: %s\n' "$before" "$after" >> "$out/bench.md"
case "$before $after" in
    *throttled=0x[1-9a-f]*) echo "bench.sh: warning: the Pi was throttled ($after); see bench.md, cool it or use the official power supply, then rerun" >&2 ;;
esac
echo "report: $out/bench.json, $out/bench.md"
echo "compare with another machine: $edgeft bench --compare $out/bench.json OTHER.json"
