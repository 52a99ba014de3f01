"""Write deploy/constraints.txt: every dependency of the image, pinned (`make constraints`).

Run with the Python of a fresh venv in which ``pip install .`` has just run
(the Makefile does that, without the machine's pip configuration). A pin made
on one Python must also serve the image's, which may be older or newer: a
dependency that this interpreter skips because of its environment marker
(``async-timeout; python_full_version < "3.11.3"`` in redis-py) is installed
as well, so it is pinned too. Constraints never install anything by
themselves, so a pin that a Python does not need costs nothing there.
"""

from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

# The Pythons the image may be built on (pyproject: requires-python >= 3.10).
PYTHONS = ("3.10.0", "3.11.0", "3.11.2", "3.12.0", "3.13.0", "3.14.0")


def needed_elsewhere(marker: Marker) -> bool:
    """The marker is false here, but true on some Python the image may use (no extras asked for)."""
    if marker.evaluate({"extra": ""}):
        return False
    for version in PYTHONS:
        environment = {"python_version": version.rsplit(".", 1)[0], "python_full_version": version, "extra": ""}
        if marker.evaluate(environment):
            return True
    return False


def missing() -> set[str]:
    installed = {(dist.metadata["Name"] or "").lower() for dist in metadata.distributions()}
    wanted = set()
    for dist in metadata.distributions():
        for text in dist.requires or ():
            requirement = Requirement(text)
            if requirement.marker is not None and needed_elsewhere(requirement.marker):
                if requirement.name.lower() not in installed:
                    wanted.add(str(Requirement(f"{requirement.name}{requirement.specifier}")))
    return wanted


def main() -> int:
    for _ in range(5):  # what those bring may have markers of its own
        extra = missing()
        if not extra:
            break
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *sorted(extra)], check=True)
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude", "queuewatch", "--exclude", "pip"],
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    header = (
        "# Every dependency of the image, pinned: its Dockerfile installs with --constraint this file.\n"
        f"# Made by `make constraints` on {datetime.date.today()} with Python {platform.python_version()}, plus what\n"
        "# other Pythons need (scripts/make-constraints.py). Do not edit by hand.\n"
    )
    Path(sys.argv[1]).write_text(header + frozen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
