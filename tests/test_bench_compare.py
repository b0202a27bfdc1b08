"""`edgeft bench --compare a.json b.json`: two saved bench runs (say a Raspberry Pi and the build
machine) side by side, as text and as markdown; and the machine line a Pi's report carries.

The reports are written by hand here (the schema `edgeft bench --json` writes, tested in
test_runtime_cli.py), so every number in the table is known in advance."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from edgeft.cli import app
from edgeft.runtime.bench import machine_info

runner = CliRunner()

# What a Raspberry Pi 4 running Raspberry Pi OS 64-bit prints (4 cores; two shown).
PI4_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

processor\t: 1
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

Hardware\t: BCM2835
Revision\t: c03114
Serial\t\t: 100000002a7c3b1e
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


def report(cpu: str, arch: str, models: dict[str, dict[tuple[int, int, str], float]], board: str = "") -> dict:
    """A bench report: models = {name: {(threads, batch, seq_len): p50 ms}}; p90 = 1.5 × p50."""
    rows = [{"model": name, "threads": t, "batch": b, "seq_len": s, "p50_ms": p50, "p90_ms": 1.5 * p50,
             "p99_ms": 2 * p50, "mean_ms": p50, "throughput": b * 1000 / p50, "runs": 10}
            for name, configs in models.items() for (t, b, s), p50 in configs.items()]
    cold = {str(t): {"load_ms": 50.0, "first_prediction_ms": 400.0 if arch == "aarch64" else 200.0,
                     "peak_rss_mb": 110.0} for configs in models.values() for t, _, _ in configs}
    return {"machine": {"cpu": cpu, "board": board, "isa": [], "logical_cores": 4, "physical_cores": 4, "arch": arch,
                        "os": "Linux", "python": "3.11.2"},
            "versions": {"onnxruntime": "1.32.0"}, "settings": {}, "skipped": [], "rows": rows,
            "models": [{"name": n, "kind": "bundle", "path": n, "size_bytes": 23_000_000, "cold": cold} for n in models]}


def write(tmp_path, name: str, rep: dict):
    path = tmp_path / name
    path.write_text(json.dumps(rep))
    return path


def table_rows(text: str, model: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.split()[:1] == [model]]


def test_pi_against_laptop_rows_matched_by_model_name(tmp_path):
    pi = write(tmp_path, "pi.json", report("Cortex-A72", "aarch64", {"bundle": {(1, 1, "real"): 12.0, (4, 1, "real"): 5.0}},
                                           board="Raspberry Pi 4 Model B Rev 1.4"))
    # the laptop run timed the FP32 bundle first: matching is by name, not position
    laptop = write(tmp_path, "laptop.json", report("Intel(R) Xeon(R)", "x86_64", {
        "fp32": {(1, 1, "real"): 5.0}, "bundle": {(1, 1, "real"): 2.0, (2, 1, "real"): 1.5}}))
    result = runner.invoke(app, ["bench", "--compare", str(pi), str(laptop)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("a: Raspberry Pi 4 Model B Rev 1.4, Cortex-A72 (aarch64, 4 cores), onnxruntime 1.32.0")
    assert "\nb: Intel(R) Xeon(R) (x86_64, 4 cores)" in out
    assert table_rows(out, "bundle")[:3] == [
        ["bundle", "1", "1", "real", "12.00", "2.00", "18.00", "3.00", "0.17"],  # b/a = 2 / 12
        ["bundle", "4", "1", "real", "5.00", "—", "7.50", "—", "—"],  # only the Pi ran 4 threads
        ["bundle", "2", "1", "real", "—", "1.50", "—", "2.25", "—"],  # only the laptop ran 2
    ]
    assert table_rows(out, "fp32") == [["fp32", "1", "1", "real", "—", "5.00", "—", "7.50", "—"]]
    # cold start and memory, for the thread counts both ran
    assert ["bundle", "1", "400.0", "200.0", "110.0", "110.0"] in table_rows(out, "bundle")


def test_reports_without_a_common_name_are_matched_by_position(tmp_path):
    a = write(tmp_path, "a.json", report("Cortex-A76", "aarch64", {"pi-bundle": {(1, 1, "real"): 4.0}}))
    b = write(tmp_path, "b.json", report("Intel", "x86_64", {"runs/arm64/bundle": {(1, 1, "real"): 2.0}}))
    result = runner.invoke(app, ["bench", "--compare", str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert ["pi-bundle", "|", "runs/arm64/bundle", "1", "1", "real", "4.00", "2.00", "6.00", "3.00", "0.50"] in \
        table_rows(result.stdout, "pi-bundle")


def test_compare_writes_markdown_to_share(tmp_path):
    pi = write(tmp_path, "pi.json", report("Cortex-A76", "aarch64", {"bundle": {(1, 1, "real"): 3.0}},
                                           board="Raspberry Pi 5 Model B Rev 1.0"))
    laptop = write(tmp_path, "laptop.json", report("Intel", "x86_64", {"bundle": {(1, 1, "real"): 1.5}}))
    md = tmp_path / "out" / "compare.md"
    result = runner.invoke(app, ["bench", "--compare", str(pi), str(laptop), "--markdown", str(md)])
    assert result.exit_code == 0, result.output
    assert f"comparison → {md}" in result.stdout
    text = md.read_text()
    assert text.startswith("# edgeft bench: pi.json (a) vs laptop.json (b)\n\n- a: Raspberry Pi 5 Model B Rev 1.0")
    assert "| model | threads | batch | seq | a p50 ms | b p50 ms | a p90 ms | b p90 ms | b/a |" in text
    assert "| bundle | 1 | 1 | real | 3.00 | 1.50 | 4.50 | 2.25 | 0.50 |" in text
    assert not list(md.parent.glob("*.tmp")), "written atomically"


def test_compare_needs_two_reports(tmp_path):
    one = write(tmp_path, "one.json", report("x", "x86_64", {"m": {(1, 1, "real"): 1.0}}))
    for args in ([str(one)], [str(one), str(one), str(one)]):
        result = runner.invoke(app, ["bench", "--compare", *args])
        assert result.exit_code == 2 and "--compare needs exactly two bench JSON files" in result.output
    (tmp_path / "bad.json").write_text("[1, 2")
    result = runner.invoke(app, ["bench", "--compare", str(one), str(tmp_path / "bad.json")])
    assert result.exit_code == 2 and "bad.json: cannot read a bench report" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_machine_info_names_a_raspberry_pi(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(PI4_CPUINFO)
    m = machine_info(str(cpuinfo), str(tmp_path / "no-device-tree"))
    assert (m["cpu"], m["board"], m["isa"]) == ("Cortex-A72", "Raspberry Pi 4 Model B Rev 1.4", ["asimd"])
    tree = tmp_path / "model"
    tree.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")  # the device tree's string ends in NUL
    assert machine_info(str(cpuinfo), str(tree))["board"] == "Raspberry Pi 5 Model B Rev 1.0"
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 143\nmodel name\t: Intel(R) Xeon(R)\n"
                   "flags\t\t: fpu avx2 avx512_vnni\n")
    m = machine_info(str(x86), str(tmp_path / "none"))
    assert (m["cpu"], m["board"], m["isa"]) == ("Intel(R) Xeon(R)", "", ["avx2", "avx512_vnni"])
