"""Checks `make install` runs before pip: a Python new enough, and one that accepts installs.

Debian/Ubuntu's system Python (and Homebrew's) refuse `pip install` outside a virtual environment
(PEP 668, "externally-managed-environment"); say so in one paragraph instead of pip's long error.
Exit status 1 with the message, 0 when all is well.
"""

from __future__ import annotations

import os
import sys
import sysconfig

MIN_PYTHON = (3, 10)


def problems(version: tuple[int, ...], prefix: str, base_prefix: str, stdlib: str) -> list[str]:
    found = []
    if tuple(version[:2]) < MIN_PYTHON:
        found.append(f"graphgpo needs Python >= {'.'.join(map(str, MIN_PYTHON))}; this is "
                     f"{'.'.join(map(str, version[:3]))} ({sys.executable}). Run make with PYTHON=python3.11 (or "
                     f"another recent one), or activate an environment that has one.")
    in_venv = prefix != base_prefix
    if not in_venv and os.path.exists(os.path.join(stdlib, "EXTERNALLY-MANAGED")):
        found.append(f"{sys.executable} is a system Python that refuses pip installs (PEP 668). Create and "
                     f"activate a virtual environment first, then run make again:\n"
                     f"    python3 -m venv .venv && . .venv/bin/activate")
    return found


def main() -> int:
    found = problems(sys.version_info, sys.prefix, sys.base_prefix, sysconfig.get_path("stdlib"))
    for message in found:
        print(f"make install: {message}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
