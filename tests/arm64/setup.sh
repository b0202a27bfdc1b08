#!/usr/bin/env bash
# Prepare an emulated arm64 Debian bookworm userland (the Raspberry Pi OS 64-bit base) on an x86_64
# machine, with edgeft's runtime installed, for tests/test_arm64.py. Idempotent: a second run only
# refreshes edgeft itself (a few seconds).
#
#   apt-get install -y --no-install-recommends qemu-user-static mmdebstrap   # once, as root
#   bash tests/arm64/setup.sh                                                # ~30 s the first time
#
# How (measured in shared notes, "MODE=extract"): no chroot and no binfmt_misc, so it also works in
# containers. mmdebstrap --variant=extract unpacks arm64 python3 + libstdc++; the host's pip fetches
# the aarch64 wheels (--platform … --only-binary=:all: --target); python then runs as
# `qemu-aarch64-static` with QEMU_LD_PREFIX pointing at the unpacked root.
#
# Everything goes under $EDGEFT_ARM64_ROOT (default /var/cache/edgeft-arm64):
#   root/                  the arm64 userland (python3.11, glibc 2.36, libstdc++)
#   cpu/cortex-a72|a76/    the same root (symlinks) plus a Raspberry Pi 4|5-like proc/cpuinfo, see below
#   site/                  aarch64 wheels: numpy, onnxruntime, tokenizers (--no-deps), typer and its deps
#   edgeft/                edgeft from this checkout (pure Python: built as a wheel, installed --no-deps)
#   bin/python-<cpu>       python3 of the arm64 root on that emulated CPU
#   bin/edgeft-<cpu>       `python -m edgeft` there: EDGEFT=… for the pi/ scripts
#
# Traps this avoids (all measured):
# * QEMU 7.2 passes the host's x86 /proc/cpuinfo through, and onnxruntime's cpuinfo library can
#   crash on it. qemu resolves guest paths under QEMU_LD_PREFIX first, so each CPU gets a root with
#   its own proc/cpuinfo, copied from what a Pi 4 (Cortex-A72) and a Pi 5 (Cortex-A76) print.
# * QEMU_CPU=max exposes SME on QEMU 7.2, onnxruntime then picks SME kernels and INT8 output is
#   garbage. Only the Pi CPUs are set up.
# * Without binfmt_misc, an emulated program cannot exec an arm64 binary. The wrappers pass their
#   own path as argv[0] (qemu -0), so the guest's sys.executable is the wrapper, and a child process
#   (edgeft bench's workers) is started through qemu again.
set -euo pipefail

ROOT=${EDGEFT_ARM64_ROOT:-/var/cache/edgeft-arm64}
MIRROR=${EDGEFT_ARM64_MIRROR:-http://deb.debian.org/debian}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CPUS=(cortex-a72 cortex-a76)
PY=${PYTHON:-python3}  # host python with pip: only fetches wheels and builds edgeft's wheel

say() { printf 'arm64 setup: %s\n' "$*" >&2; }

for tool in qemu-aarch64-static mmdebstrap; do
    if ! command -v "$tool" >/dev/null; then
        say "$tool not found; install it first: apt-get install -y --no-install-recommends qemu-user-static mmdebstrap"
        exit 2
    fi
done
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
start=$SECONDS

# 1. The arm64 userland: python3 (3.11.2 in bookworm, as on Raspberry Pi OS) and the C++ runtime the
#    wheels link against. Unpacked into a temp folder and renamed, so a killed run leaves nothing half-made.
if [ ! -x "$ROOT/root/usr/bin/python3.11" ]; then
    say "unpacking arm64 bookworm (python3, libstdc++) from $MIRROR"
    rm -rf "$ROOT/root.tmp"
    mmdebstrap --quiet --variant=extract --architectures=arm64 --include=python3,libstdc++6,libgcc-s1 \
        bookworm "$ROOT/root.tmp" "$MIRROR"
    rm -rf "$ROOT/root"
    mv "$ROOT/root.tmp" "$ROOT/root"
fi

# 2. One root per emulated CPU: symlinks to the shared root, plus that CPU's /proc/cpuinfo.
#    One "processor" block per host CPU, so /sys (which qemu does not hide) and cpuinfo agree.
cpuinfo() {  # $1: cortex-a72 | cortex-a76
    local features variant part revision model
    if [ "$1" = cortex-a72 ]; then
        features="fp asimd evtstrm crc32 cpuid"; variant=0x0; part=0xd08; revision=3
        model="Raspberry Pi 4-like cpuinfo (qemu-aarch64 cortex-a72, emulated)"
    else
        features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
        variant=0x4; part=0xd0b; revision=1
        model="Raspberry Pi 5-like cpuinfo (qemu-aarch64 cortex-a76, emulated)"
    fi
    for ((i = 0; i < $(nproc); i++)); do
        printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$i" "$features"
        printf 'CPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$variant" "$part" "$revision"
    done
    printf 'Revision\t: 0000\nModel\t\t: %s\n' "$model"
}
for cpu in "${CPUS[@]}"; do
    dir=$ROOT/cpu/$cpu
    mkdir -p "$dir/proc"
    # Not tmp: qemu resolves a guest path under the prefix first, so a guest's realpath("/tmp/x") would
    # follow the prefix's tmp symlink to /root/tmp/x, which does not exist, and onnxruntime (which
    # canonicalises a model's folder before reading its external data) refuses the model. Without the
    # link, guest /tmp is the host's /tmp, where the tests' bundles are.
    rm -f "$dir/tmp"
    for entry in "$ROOT"/root/*; do
        name=$(basename "$entry")
        [ "$name" = proc ] || [ "$name" = tmp ] || ln -sfn "../../root/$name" "$dir/$name"
    done
    cpuinfo "$cpu" > "$dir/proc/cpuinfo"
done

# 3. The runtime's dependencies as aarch64 wheels, at the versions this host runs, so that x86 and
#    arm64 outputs are compared across the same library versions. tokenizers goes in with --no-deps:
#    its huggingface-hub dependency is ~20 MB a device never uses (a bundle carries tokenizer.json).
pin() {  # "pkg==version" of the host's package, or just "pkg" when the host lacks it
    "$PY" - "$1" <<'EOF'
import sys
from importlib import metadata
try:
    print(f"{sys.argv[1]}=={metadata.version(sys.argv[1])}")
except metadata.PackageNotFoundError:
    print(sys.argv[1])
EOF
}
deps=("$(pin numpy)" "$(pin onnxruntime)" "$(pin typer)")
nodeps=("$(pin tokenizers)")
want="${deps[*]} | ${nodeps[*]}"
platforms=(--platform manylinux2014_aarch64)
for minor in $(seq 17 36); do  # glibc 2.36 in bookworm: every manylinux_2_N with N <= 36 runs
    platforms+=(--platform "manylinux_2_${minor}_aarch64")
done
quiet=(--quiet --disable-pip-version-check --root-user-action=ignore --no-warn-conflicts)
wheel_args=("${quiet[@]}" --only-binary=:all: --implementation cp --python-version 3.11
            "${platforms[@]}")
if [ "$(cat "$ROOT/site/.edgeft-deps" 2>/dev/null)" != "$want" ]; then
    say "installing aarch64 wheels: $want"
    rm -rf "$ROOT/site.tmp"
    "$PY" -m pip install "${wheel_args[@]}" --target "$ROOT/site.tmp" "${deps[@]}"
    "$PY" -m pip install "${wheel_args[@]}" --no-deps --target "$ROOT/site.tmp" "${nodeps[@]}"
    echo "$want" > "$ROOT/site.tmp/.edgeft-deps"
    rm -rf "$ROOT/site"
    mv "$ROOT/site.tmp" "$ROOT/site"
fi

# 4. edgeft itself, from this checkout, every run (it changes as you work). It is pure Python, so
#    the wheel the host builds is the one a Pi would install.
say "installing edgeft from $REPO"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src=$REPO
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then  # build from a copy: no build/ race in the checkout
    src=$work/src
    mkdir -p "$src"
    (  # tracked and new files; a tracked file deleted in the working tree is skipped
        cd "$REPO"
        git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$src" 2>/dev/null || true
    )
fi
"$PY" -m pip wheel "${quiet[@]:0:2}" --no-deps --no-build-isolation -w "$work/dist" "$src"
"$PY" -m pip install "${quiet[@]}" --no-deps --target "$work/edgeft" "$work"/dist/edgeft-*.whl
rm -rf "$ROOT/edgeft"
mv "$work/edgeft" "$ROOT/edgeft"

# 5. Wrappers. A caller may put a fresher edgeft first with EDGEFT_ARM64_PYTHONPATH.
mkdir -p "$ROOT/bin"
for cpu in "${CPUS[@]}"; do
    cat > "$ROOT/bin/python-$cpu.tmp" <<EOF
#!/bin/sh
# python3 of the arm64 root on an emulated $cpu (made by tests/arm64/setup.sh).
export QEMU_CPU=$cpu QEMU_LD_PREFIX='$ROOT/cpu/$cpu'
export PYTHONPATH="\${EDGEFT_ARM64_PYTHONPATH:+\$EDGEFT_ARM64_PYTHONPATH:}$ROOT/edgeft:$ROOT/site"
exec qemu-aarch64-static -0 '$ROOT/bin/python-$cpu' '$ROOT/cpu/$cpu/usr/bin/python3.11' "\$@"
EOF
    cat > "$ROOT/bin/edgeft-$cpu.tmp" <<EOF
#!/bin/sh
# edgeft on an emulated $cpu (made by tests/arm64/setup.sh). PYTHONSAFEPATH: a checkout of edgeft
# in the current folder must not shadow the installed one (its runtime/ is not under edgeft/).
PYTHONSAFEPATH=1 exec '$ROOT/bin/python-$cpu' -m edgeft "\$@"
EOF
    chmod +x "$ROOT/bin/python-$cpu.tmp" "$ROOT/bin/edgeft-$cpu.tmp"
    mv "$ROOT/bin/python-$cpu.tmp" "$ROOT/bin/python-$cpu"
    mv "$ROOT/bin/edgeft-$cpu.tmp" "$ROOT/bin/edgeft-$cpu"
done

# 6. Proof that it runs: import the runtime on each CPU and print what onnxruntime sees.
for cpu in "${CPUS[@]}"; do
    (cd / && "$ROOT/bin/python-$cpu" -c 'import platform, numpy, onnxruntime, tokenizers, edgeft.runtime.predictor
print(f"arm64 setup: {platform.machine()} python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, "
      f"numpy {numpy.__version__}, tokenizers {tokenizers.__version__}")' >&2)
done
date -u +%FT%TZ > "$ROOT/.ready"
say "ready in $((SECONDS - start)) s: $ROOT (EDGEFT_ARM64_ROOT)"
