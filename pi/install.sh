#!/usr/bin/env bash
# Install edgeft's device runtime on a Raspberry Pi running Raspberry Pi OS (64-bit), or on any
# 64-bit Debian/Ubuntu: a virtual environment with edgeft, numpy, onnxruntime, tokenizers and typer,
# and nothing for training (no torch, no transformers, no Hugging Face hub client).
#
#   bash pi/install.sh                      # venv in ~/edgeft-venv, edgeft from PyPI
#   EDGEFT_SPEC=./edgeft-0.1.0-py3-none-any.whl bash pi/install.sh   # a wheel copied from the build machine
#   EDGEFT_VENV=/opt/edgeft bash pi/install.sh                       # somewhere else
#   bash pi/install.sh --dry-run            # check this machine, print the commands, change nothing
#   bash pi/install.sh --serve              # also the serve extra (starlette, uvicorn): `edgeft serve`
#
# Needs: python3 >= 3.10 with venv (Raspberry Pi OS bookworm: 3.11; `sudo apt install python3-venv`
# if it is missing) and internet access to PyPI. Takes about a minute; nothing is compiled: every
# package comes as a binary wheel (--only-binary), so a missing wheel fails at once instead of
# building for an hour.
set -euo pipefail

VENV=${EDGEFT_VENV:-$HOME/edgeft-venv}
SPEC=${EDGEFT_SPEC:-edgeft}
PYTHON=${PYTHON:-python3}
DRY_RUN=0
SERVE=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        --serve) SERVE=1 ;;
        *) echo "usage: bash pi/install.sh [--dry-run] [--serve]   (settings: EDGEFT_VENV, EDGEFT_SPEC, PYTHON)" >&2; exit 2 ;;
    esac
done

die() { printf 'install.sh: %s\n' "$*" >&2; exit 2; }
run() {  # show a command, then run it (--dry-run: only show it)
    printf '+ %s\n' "$*"
    [ "$DRY_RUN" = 1 ] || "$@"
}

# 1. A 64-bit OS. onnxruntime publishes no wheels for 32-bit ARM (armv7l/armhf). A 32-bit Raspberry
#    Pi OS on a Pi 4 or 5 boots a 64-bit kernel, so `uname -m` says aarch64: the userland decides.
machine=$(uname -m)
bits=$(getconf LONG_BIT 2>/dev/null || echo 64)
userland=$(dpkg --print-architecture 2>/dev/null || echo "$machine")
case "$machine:$userland" in
    armv6l:* | armv7l:* | armv8l:* | i?86:* | *:armhf | *:armel | *:i386) bits=32 ;;
esac
if [ "$bits" != 64 ]; then
    die "this is a 32-bit OS (kernel $machine, userland $userland). onnxruntime has no 32-bit ARM wheels, so edgeft
cannot run here. Install Raspberry Pi OS (64-bit) — in Raspberry Pi Imager: Raspberry Pi OS (other) →
Raspberry Pi OS (64-bit) or Lite (64-bit) — on a Pi 3, 4, 5 or Zero 2 W, then run this script again."
fi
case "$machine" in
    aarch64 | arm64 | x86_64 | amd64) ;;
    *) echo "install.sh: warning: $machine is untested; continuing" >&2 ;;
esac

# 2. Python >= 3.10 with the venv module.
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: sudo apt install python3 python3-venv"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    die "edgeft needs Python >= 3.10, and $PYTHON is $("$PYTHON" -V 2>&1). Raspberry Pi OS bookworm has 3.11."
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null || die "the venv module is missing: sudo apt install python3-venv"

echo "installing the edgeft runtime ($SPEC) into $VENV on $machine ($("$PYTHON" -V 2>&1))"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
run "$PYTHON" -m venv "$VENV"
# edgeft first without dependencies, then its base requirements read from its own metadata (the
# runtime; the [train] extra is left out). tokenizers goes in with --no-deps: it declares
# huggingface-hub, ~20 MB a device never uses (a bundle carries its own tokenizer.json).
run "${pip[@]}" install --no-deps "$SPEC"
if [ "$DRY_RUN" = 1 ]; then
    echo "+ ${pip[*]} install --only-binary=:all: --no-deps <edgeft's tokenizers requirement>"
    echo "+ ${pip[*]} install --only-binary=:all: <edgeft's other requirements>"
    [ "$SERVE" = 0 ] || echo "+ ${pip[*]} install --only-binary=:all: <edgeft's serve extra: starlette, uvicorn>"
    exit 0
fi
mapfile -t requirements < <("$VENV/bin/python" -c '
from importlib.metadata import requires
for r in requires("edgeft") or []:
    if "extra ==" not in r:
        print(r.split(";")[0].strip())')
deps=() nodeps=()
for r in "${requirements[@]}"; do
    case "$r" in tokenizers*) nodeps+=("$r") ;; *) deps+=("$r") ;; esac
done
[ ${#nodeps[@]} = 0 ] || run "${pip[@]}" install --only-binary=:all: --no-deps "${nodeps[@]}"
run "${pip[@]}" install --only-binary=:all: "${deps[@]}"
if [ "$SERVE" = 1 ]; then  # the serve extra: pure-Python wheels (starlette, uvicorn and theirs)
    mapfile -t serve < <("$VENV/bin/python" -c '
from importlib.metadata import requires
for r in requires("edgeft") or []:
    if "extra ==" in r and "serve" in r.split("extra ==")[1]:
        print(r.split(";")[0].strip())')
    run "${pip[@]}" install --only-binary=:all: "${serve[@]}"
fi

# 3. Check: the runtime imports, and nothing from training came along.
"$VENV/bin/python" - <<'EOF'
import importlib.util, platform
import numpy, onnxruntime, tokenizers
import edgeft.runtime.predictor  # noqa: F401
extra = [m for m in ("torch", "transformers", "huggingface_hub") if importlib.util.find_spec(m)]
assert not extra, f"training packages in the runtime venv: {extra}"
print(f"ok: edgeft runtime on {platform.machine()}, python {platform.python_version()}, onnxruntime "
      f"{onnxruntime.__version__} ({', '.join(onnxruntime.get_available_providers())}), numpy {numpy.__version__}, "
      f"tokenizers {tokenizers.__version__}")
EOF
"$VENV/bin/edgeft" --help >/dev/null
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cat <<EOF

Next:
  on the build machine, copy a bundle here:  scp -r runs/arm64/bundle $(id -un)@$(hostname).local:bundle
  label texts:                               $here/run.sh ~/bundle "a gripping, beautifully shot film"
  measure this device:                       $here/bench.sh ~/bundle
  serve it over HTTP (--serve):              $VENV/bin/edgeft serve ~/bundle   (and pi/edgeft-serve.service)
EOF
