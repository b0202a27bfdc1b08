"""Target presets: the registry, its validation, x86 ISA detection and ``edgeft targets``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgeft.errors import ConfigError
from edgeft.targets import TARGETS, Target, cpu_flags, get_target, register_target, resolve_target

VALID = "arm64, rpi4, rpi5, android-arm64, x86_64, x86_64-vnni, x86_64-avx2"


def test_the_issue_presets_are_registered():
    assert {"arm64", "rpi4", "rpi5", "android-arm64", "x86_64"} <= set(TARGETS)
    assert get_target("android-arm64").extra_artifacts == ("ort",)
    assert get_target("x86_64-avx2").reduce_range and not get_target("x86_64-vnni").reduce_range
    for name in ("arm64", "rpi4", "rpi5", "android-arm64"):  # ARM widens before accumulating: no reduce_range
        assert not get_target(name).reduce_range and get_target(name).activation_type == "int8"


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        get_target("pi4")
    assert str(e.value) == f"unknown target 'pi4'; valid targets: {VALID} (see `edgeft targets`)."


def test_duplicate_registration_is_refused_and_registry_unchanged():
    before = dict(TARGETS)
    with pytest.raises(ConfigError) as e:
        register_target(Target("rpi4", "again"))
    assert str(e.value) == ("target 'rpi4' is already registered; give the new preset another name or change the "
                            "existing entry in edgeft/targets.py.")
    assert TARGETS == before


@pytest.mark.parametrize("kwargs, message", [
    ({"weight_type": "int4"}, "weight/activation types must be one of ('int8', 'uint8')"),
    ({"op_types": ("MatMul", "Conv")}, "unknown op types ['Conv']; choose from ('MatMul', 'Gemm', 'Gather', 'Attention')"),
    ({"graph_optimization": "max"}, "graph_optimization must be one of ('disable', 'basic', 'extended', 'all')"),
    ({"extra_artifacts": ("tflite",)}, "unknown extra artifacts ['tflite']; choose from ('ort',)"),
    ({"opset": 9}, "opset 9 is outside 13..23"),
    ({"threads": -1}, "threads must be >= 0 (0 = ONNX Runtime's default)"),
])
def test_bad_preset_values(kwargs, message):
    with pytest.raises(ConfigError) as e:
        Target("mine", "a custom board", **kwargs)
    assert str(e.value) == f"target 'mine': {message}."


@pytest.mark.parametrize("flags, reduce_range, chosen", [
    ({"avx2", "avx512_vnni"}, False, "x86_64-vnni"),
    ({"avx2", "avx_vnni"}, False, "x86_64-vnni"),
    ({"avx2", "fma"}, True, "x86_64-avx2"),  # vpmaddubsw saturates: 7-bit weights
    (set(), True, "x86_64-avx2"),
])
def test_x86_64_picks_settings_from_cpu_flags(flags, reduce_range, chosen):
    t = resolve_target("x86_64", frozenset(flags))
    assert t.name == "x86_64" and t.reduce_range is reduce_range and not t.detect_isa
    assert f"→ {chosen} settings" in t.summary


def test_non_x86_targets_are_not_resolved():
    assert resolve_target("rpi5", frozenset({"avx2"})) is get_target("rpi5")


def test_cpu_flags_reads_x86_and_arm_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu avx2 avx512_vnni\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\nCPU part\t: 0xd0b\n")
    assert cpu_flags(x86) == {"fpu", "avx2", "avx512_vnni"}
    assert "asimddp" in cpu_flags(arm)
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_targets_command_prints_one_line_each():
    from edgeft.cli import app

    result = CliRunner().invoke(app, ["targets"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[:len(TARGETS)]] == list(TARGETS)
    assert lines[len(TARGETS)] == ""
    assert lines[-1].startswith("x86_64 on this machine: this CPU has ")
    as_json = json.loads(CliRunner().invoke(app, ["targets", "--json"]).stdout)
    assert set(as_json) == set(TARGETS) and as_json["rpi4"]["threads"] == 4


def test_unknown_target_on_the_command_line(tmp_path):
    from edgeft.cli import app

    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a", "label": "x"}\n')
    result = CliRunner().invoke(app, ["quantize", str(tmp_path), "--target", "pi4", "--data", str(data),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: unknown target 'pi4'; valid targets: {VALID} (see `edgeft targets`)."
    assert not (tmp_path / "out").exists()
