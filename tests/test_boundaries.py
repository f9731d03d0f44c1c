"""The core never imports Ray or MLflow (checked in a fresh interpreter), and only
contralord/training/distributed.py touches torch.distributed."""

import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "contralord"


def test_core_imports__neither_ray_nor_mlflow():
    code = ("import sys, contralord, contralord.run.trainer, contralord.cli.main, contralord.cli.bench, "
            "contralord.data; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'mlflow')); print(bad)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_torch_distributed__only_in_distributed_py():
    pattern = re.compile(r"torch\.distributed|from torch import distributed")
    offenders = [p.name for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text()) and p.name != "distributed.py"]
    assert offenders == []


def test_no_ray_or_mlflow_import_statements_in_core():
    pattern = re.compile(r"^\s*(import|from)\s+(ray|mlflow)\b", re.MULTILINE)
    assert [p.name for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text())] == []
