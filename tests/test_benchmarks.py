"""The layer benchmarks run at a micro size and print a row for every layer they time (figures are theirs to
print, not a test's to judge)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MICRO = ["--seq", "32", "--batch", "2", "--hidden", "32", "--heads", "2", "--repeats", "1", "--segment-len", "8"]


@pytest.mark.parametrize("script,extra,rows", [
    ("layer.py", ["--only", "baseline"], ["plain NeoX attention", "baseline deltanet", "baseline gated deltanet",
                                          "baseline sliding window", "baseline full attention"]),
    ("layer.py", ["--only", "hier"], ["plain NeoX attention", "hier 4 soft", "hier 4 hard"]),
    ("baselines.py", ["--window", "8", "--chunk-size", "16"], ["memory single", "memory multi 4", "sliding window 8",
                                                                "full attention", "deltanet", "gated deltanet"]),
])
def test_a_layer_benchmark_times_each_layer(script, extra, rows):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *MICRO, *extra], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    printed = [line.split("  ")[0].strip() for line in out.stdout.splitlines()]
    assert all(r in printed for r in rows), out.stdout
    if "--only" in extra:
        assert not any(p.startswith(("single", "multi")) for p in printed)
