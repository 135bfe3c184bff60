"""``tools/system-packages``, the step of ``make test`` that installs the Debian packages.

Against the machine's real dpkg: everything the tests use is installed by the time they run,
so the step must find nothing to do, say nothing, and not touch apt.  A package that is
missing, for a user who is neither root nor allowed sudo, must stop the step at once with the
exact command to run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
SCRIPT = REPOSITORY / "tools" / "system-packages"
MISSING = "pki-soap-no-such-package"


def test_nothing_to_do_when_everything_is_installed() -> None:
    done = subprocess.run(
        [SCRIPT], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_without_root_or_sudo_it_stops_with_the_exact_command(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None
    path = os.pathsep.join([str(Path(node).parent), "/usr/bin", "/bin"])
    # The script's text as an argument: the unprivileged user need not reach the checkout.
    command = ["bash", "-c", SCRIPT.read_text(), "system-packages", MISSING]
    if os.geteuid() == 0:
        # nobody: not root, and not in sudoers (sudo -n fails), with no terminal to ask on.
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    else:
        # Ourselves, with a PATH where no sudo can be found.
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        for tool in ("bash", "dpkg-query", "apt-get", "apt-cache", "id", "sed", "python3"):
            found = shutil.which(tool)
            assert found is not None, tool
            (bin_dir / tool).symlink_to(found)
        path = os.pathsep.join([str(Path(node).parent), str(bin_dir)])
    done = subprocess.run(
        command,
        cwd="/",
        env={"PATH": path, "HOME": "/", "LANG": "C"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert (done.returncode, done.stdout) == (1, "")
    prefix = "error: missing Debian packages: "
    assert done.stderr.startswith(prefix)
    listed, command_text = done.stderr[len(prefix) :].rstrip("\n").split("; as root, run: ")
    assert MISSING in listed.split()
    assert command_text == (
        f"apt-get update && apt-get install -y --no-install-recommends {listed}"
    )
