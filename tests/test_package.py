"""The installable package: a wheel built from the sources, installed in a fresh virtual
environment outside the repository, serving and being served with its console commands.

The fresh environment gets the pinned dependencies of the test environment through a path
file (no network in tests), never pki_soap itself: the test checks that the package it runs
is the installed one.  ``pip check`` then proves the wheel's declared dependencies are met.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.service_support import free_port, openssl

REPOSITORY = Path(__file__).resolve().parents[1]
# What a source distribution needs to build the wheel (the rest of the checkout is not).
SOURCES = ("pyproject.toml", "README.md", "requirements.txt", "pki_soap")
PASSWORD = b"wheel test CA password"


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built (no network, no build isolation) from a copy of the sources."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        origin = REPOSITORY / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / name)
    out = tmp_path_factory.mktemp("dist")
    _run(
        sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
        "--no-build-isolation", "--wheel-dir", out, source,
        cwd=source,
    )  # fmt: skip
    (built,) = out.glob("pki_soap-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment, outside the repository, with the wheel installed."""
    home = tmp_path_factory.mktemp("fresh") / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", home, cwd=home.parent)
    python = home / "bin" / "python"
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                        cwd=home.parent).strip())  # fmt: skip
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (purelib / "pinned_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    _run(
        sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-index",
        "--no-deps", wheel,
        cwd=home.parent,
    )  # fmt: skip
    return home


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PKI_", "PYTHON"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_wheel_carries_the_wsdl_the_portal_and_both_commands(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    assert "pki_soap/soap/CAServer.wsdl" in names
    assert "pki_soap/portal/templates/login.html" in names
    assert "pki_soap/portal/static/portal.css" in names
    assert "pki-server = pki_soap.cli.server_app:main" in scripts
    assert "pki-client = pki_soap.cli.client_app:main" in scripts


def test_installed_copy_serves_and_its_client_gets_a_certificate(
    venv: Path, tmp_path: Path
) -> None:
    env = _env(venv)
    work = tmp_path / "elsewhere"  # neither the repository nor anything beside it
    work.mkdir()
    python = venv / "bin" / "python"
    where = _run(python, "-c", "import pki_soap; print(pki_soap.__file__)", cwd=work, env=env)
    assert Path(where.strip()).is_relative_to(venv)
    # Every Requires-Dist of the wheel is met by the pinned versions.
    _run(sys.executable, "-m", "pip", "--python", python, "check", cwd=work, env=env)
    help_text = _run("pki-server", "--help", cwd=work, env=env)
    assert help_text.startswith("usage: pki-server ")

    (work / "ca.pw").write_bytes(PASSWORD + b"\n")
    (work / "ca.pw").chmod(0o600)
    _run(
        "pki-server", "configure", "--data-dir", "server", "--root", "WheelCA", "--dir", "CA",
        "--subject", "/O=pki-soap/CN=Wheel CA", "--ca-days", "30", "--days", "7",
        "--key-type", "ec256", "--password-file", "ca.pw", "--node", "127.0.0.1",
        cwd=work, env=env,
    )  # fmt: skip
    (work / "portal.pw").write_text("portal password of the wheel test\n")
    _run("pki-server", "portal-password", "--data-dir", "server", "--password-file", "portal.pw",
         cwd=work, env=env)  # fmt: skip
    port = free_port()
    serve = subprocess.Popen(
        ["pki-server", "--data-dir", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wsdl = _wait_for(f"{base}/isc/pki/PKI.CAServer.cls?WSDL", serve)
        assert b"<definitions" in wsdl and f"{base}/isc/pki/PKI.CAServer.cls".encode() in wsdl
        login = _wait_for(f"{base}/pki/login", serve)  # the packaged template and style sheet
        assert b'<input type="password"' in login and b"/pki/static/portal.css" in login
        assert b"font" in _wait_for(f"{base}/pki/static/portal.css", serve)

        client = ("pki-client", "--data-dir", "client")
        _run(
            *client, "configure", "--server", "127.0.0.1", "--port", str(port),
            "--contact-name", "Wheel Tester", "--hostname", "wheelhost", cwd=work, env=env,
        )  # fmt: skip
        _run(*client, "get-ca", cwd=work, env=env)
        submitted = _run(
            *client, "submit", "--root", "wheel_client", "--subject", "/CN=wheelhost",
            "--key-type", "ec256", cwd=work, env=env,
        )  # fmt: skip
        assert "successfully submitted" in submitted
        issued = _run(
            "pki-server", "issue", "--data-dir", "server", "wheel_client", "--usage", "tls",
            "--password-file", "ca.pw", cwd=work, env=env,
        )  # fmt: skip
        number = issued.split()[2]
        saved = _run(*client, "get", number, cwd=work, env=env)
        assert saved.startswith(f"Certificate number {number} ")
        shown = _run(*client, cwd=work, env=env)  # no command: where the client stands
        assert f"wheel_client: certificate number {number} saved" in shown
    finally:
        serve.terminate()
        serve.wait(30)
        if serve.stdout is not None:
            serve.stdout.close()
    verified = openssl(
        "verify", "-CAfile", work / "client" / "WheelCA.cer", work / "client" / "wheel_client.cer"
    )
    assert verified.strip().endswith(": OK")


def _wait_for(url: str, serve: subprocess.Popen[bytes]) -> bytes:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            output = serve.stdout.read() if serve.stdout else b""
            pytest.fail(f"pki-server exited with {serve.returncode}: {output.decode()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                body: bytes = answer.read()
                return body
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not answer within 60 s")
