#!/usr/bin/env bash
# Label texts with a bundle on the device: `edgeft predict` from the venv install.sh made.
#
#   pi/run.sh ~/bundle "a gripping film" "dull"                 # texts → label, score, text (one line each)
#   pi/run.sh ~/bundle --input reviews.txt --output out.jsonl   # a file: .txt (a text per line) or .jsonl ({"text": …})
#   journalctl -f -o cat | pi/run.sh ~/bundle -                 # stdin: a JSON line out per line in, as lines arrive
#   pi/run.sh ~/bundle --follow /var/lib/edgeft/inbox.txt       # lines appended to a file, until stopped
#                                                                 (the systemd example: edgeft-classify.service)
# Output lines (files, stdin, --follow): {"line", "label", "score", "scores", "truncated"}; NER bundles
# give {"line", "entities": [...], "truncated"}; text-generation bundles reply to each prompt (a .txt line,
# a .jsonl {"prompt"} or {"messages": [...]} row) with {"line", "text", "finish_reason", ...}, e.g.
#   pi/run.sh ~/lm "Tell me a joke" --max-new-tokens 64
# Any other `edgeft predict` option passes through.
#
# Settings: EDGEFT (the edgeft command; default ~/edgeft-venv/bin/edgeft, else edgeft on PATH),
# THREADS (onnxruntime threads; default: the physical cores, at most 4).
set -euo pipefail

usage() {
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}
[ $# -ge 2 ] || usage
bundle=$1
shift

# shellcheck source=find-edgeft.sh source-path=SCRIPTDIR
. "$(dirname "$0")/find-edgeft.sh"
find_edgeft run.sh
threads=()
[ -z "${THREADS:-}" ] || threads=(--threads "$THREADS")

case "$1" in
    -)  # --chunk 1: answer each line as soon as it is read, not after 512 of them
        exec "$edgeft" predict "$bundle" --input - --chunk 1 "${threads[@]}" "${@:2}" ;;
    --follow)
        [ $# -ge 2 ] || usage
        # tail -F keeps reading across log rotation; -n 0: only lines written from now on. The model
        # is loaded once, and edgeft is the process the service manager watches (exec).
        exec "$edgeft" predict "$bundle" --input - --chunk 1 "${threads[@]}" "${@:3}" < <(exec tail -n 0 -F "$2") ;;
    *)
        exec "$edgeft" predict "$bundle" "${threads[@]}" "$@" ;;
esac
