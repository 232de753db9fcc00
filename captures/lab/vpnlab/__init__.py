"""pcapvpn capture lab: real strongSwan / OpenVPN daemons in network namespaces.

Run as root: ``captures/lab/run --help``.  The package only uses the standard
library so that it runs with the system python3 as well as the project venv.
"""

from __future__ import annotations

from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent.parent
BUILD_DIR = LAB_DIR / ".build"

__all__ = ["LAB_DIR", "BUILD_DIR"]
