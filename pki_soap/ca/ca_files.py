"""The CA's files on disk: where they live (``.cer``, ``.key``, ``.srl``) and reading them.

Reading checks what a CA needs: a CA certificate that may sign, a key of mode 0600 that
belongs to it.
"""

from __future__ import annotations

import contextlib
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from pki_soap.ca import names
from pki_soap.ca.keys import PrivateKey, same_public_key
from pki_soap.errors import CAFileError


@dataclass(frozen=True)
class CAPaths:
    """Where a CA's files live: ``<directory>/<root>.cer``, ``.key`` and ``.srl``.

    ``directory`` is used as given; making a relative one relative to the data
    directory is the caller's job.

    Raises:
        InvalidRoot: ``root`` breaks the file-name root rules (names.check_root).
    """

    directory: Path
    root: str
    cer: Path = field(init=False, repr=False, compare=False)
    """The PEM CA certificate."""
    key: Path = field(init=False, repr=False, compare=False)
    """The PEM (normally encrypted PKCS#8) CA private key, mode 0600."""
    srl: Path = field(init=False, repr=False, compare=False)
    """The serial counter file."""
    crlnumber: Path = field(init=False, repr=False, compare=False)
    """The CRL number counter file (kept like the serial file, beside it)."""

    def __post_init__(self) -> None:
        names.check_root(self.root)
        directory = Path(self.directory)
        object.__setattr__(self, "directory", directory)
        for suffix in ("cer", "key", "srl", "crlnumber"):
            object.__setattr__(self, suffix, directory / f"{self.root}.{suffix}")

    def old(self, path: Path) -> Path:
        """Where a lone ``path`` is moved aside: ``<name>.old`` (``.old.1``, ... if taken)."""
        candidate = path.with_name(path.name + ".old")
        counter = 0
        while candidate.exists() or candidate.is_symlink():
            counter += 1
            candidate = path.with_name(f"{path.name}.old.{counter}")
        return candidate


def make_private_directory(directory: Path) -> None:
    """Create the CA directory with mode 0700 if missing (an existing one is used as it is).

    Raises:
        CAFileError: ``directory`` is a file, or cannot be created.
    """
    try:
        directory.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        if not directory.is_dir():
            raise CAFileError(f"{directory} exists and is not a directory") from None
        return
    except OSError as exc:
        raise CAFileError(f"cannot create the CA directory {directory}: {exc}") from exc
    # mkdir's mode is narrowed by the umask; make it exactly owner-only.
    directory.chmod(0o700)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise CAFileError(f"the {what} {path} does not exist") from exc
    except OSError as exc:
        raise CAFileError(f"cannot read the {what} {path}: {exc}") from exc


def read_ca_certificate(path: Path) -> x509.Certificate:
    """The first certificate in the PEM file ``path``, which must be a CA's that may sign.

    Raises:
        CAFileError: missing, unreadable, not PEM, not a CA certificate, or without keyCertSign.
    """
    data = _read(path, "CA certificate")
    try:
        # A file from a commercial CA may carry its chain after it; the first one counts.
        certificate = x509.load_pem_x509_certificates(data)[0]
    except ValueError as exc:
        raise CAFileError(f"{path} is not a PEM certificate: {exc}") from exc
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = constraints.ca
    except x509.ExtensionNotFound:
        is_ca = False
    except ValueError as exc:
        raise CAFileError(f"{path} has unreadable extensions: {exc}") from exc
    if not is_ca:
        raise CAFileError(f"{path} is not a CA certificate (basicConstraints CA:TRUE is missing)")
    with contextlib.suppress(x509.ExtensionNotFound):  # no keyUsage: any use is allowed
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.key_cert_sign:
            raise CAFileError(f"{path} may not sign certificates (keyUsage lacks keyCertSign)")
    return certificate


def read_key_file(path: Path) -> bytes:
    """The PEM bytes of the CA key file ``path``, narrowed to mode 0600 if it was wider.

    Raises:
        CAFileError: the file is missing or unreadable.
    """
    data = _read(path, "CA private key")
    try:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            # A key placed by hand may be readable by others; it is ours now.
            path.chmod(0o600)
    except OSError:
        pass  # owned by another user: readable, but its mode is not ours to change
    return data


def check_pair(paths: CAPaths, certificate: x509.Certificate, key: PrivateKey) -> None:
    """Refuse a key that is not the certificate's (CAFileError names both files)."""
    if not same_public_key(key.public_key(), certificate.public_key()):
        raise CAFileError(f"{paths.key} is not the private key of {paths.cer}")
