import os
import sys
from pathlib import Path

# Import the package from the source tree (no install step).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[2]


def pytest_report_header(config):
    lib = os.environ.get("SPARSEJIT_LIBRARY", "(search: beside the package, then build*/)")
    return [f"sparsejit library: {lib}"]
