# Sourced by run.sh and bench.sh: sets $edgeft to the command to run.
# Order: $EDGEFT, the venv pi/install.sh made ($EDGEFT_VENV, default ~/edgeft-venv), edgeft on PATH.
# shellcheck shell=bash
find_edgeft() {  # $1: the calling script's name, for the error message
    edgeft=${EDGEFT:-}
    [ -n "$edgeft" ] && return 0
    if [ -x "${EDGEFT_VENV:-$HOME/edgeft-venv}/bin/edgeft" ]; then
        edgeft=${EDGEFT_VENV:-$HOME/edgeft-venv}/bin/edgeft
    elif command -v edgeft >/dev/null; then
        edgeft=edgeft
    else
        echo "$1: edgeft not found: run pi/install.sh first, or set EDGEFT=/path/to/edgeft" >&2
        exit 2
    fi
}
