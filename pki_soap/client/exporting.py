"""The CA client's export task: a saved certificate as PEM, a chain, or PKCS#12 with its key.

The formats themselves are built in pki_soap.ca.export; this module finds the files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from pki_soap.ca.export import ExportFormat, chain, issuers, pem_bundle, pkcs12_bytes
from pki_soap.ca.keys import key_is_encrypted, load_key
from pki_soap.ca.names import check_root
from pki_soap.client.configuration import pinned_ca_path
from pki_soap.errors import InvalidInput, NotFound
from pki_soap.files import write_private_file, write_public_file


def export(
    data_dir: Path,
    root: str,
    kind: ExportFormat,
    *,
    out: Path | None = None,
    force: bool = False,
    password: bytes | None = None,
    key_password: Callable[[], bytes | None] = lambda: None,
) -> tuple[Path, int]:
    """Write ``<root>.cer`` (and for PKCS#12 ``<root>.key``) in another format; (file, CAs).

    The CA certificates come from the data directory: the pinned one and the ``.cer`` files
    that are CA certificates (``get-ca`` saves the CA's).  ``password`` protects a PKCS#12
    file; ``key_password`` is asked only when ``<root>.key`` is encrypted.  The file is
    ``out`` or the format's default name in the data directory (a PKCS#12 file gets mode
    0600); an existing file is replaced only with ``force``.

    Raises:
        InvalidRoot: ``root`` breaks the file-name rules.
        NotFound: ``<root>.cer`` (or ``<root>.key``) is missing, or the CA certificates needed
            are not in the data directory.
        WrongPassword: the key password does not decrypt ``<root>.key``.
        InvalidInput: no or an empty PKCS#12 password, a key that is not the certificate's,
            or the target file exists (and not ``force``).
    """
    check_root(root)
    cert_path = data_dir / f"{root}.cer"
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except FileNotFoundError:
        raise NotFound(f'no certificate "{cert_path}" (client_app.py get saves it)') from None
    except ValueError as exc:
        raise InvalidInput(f'"{cert_path}" is not a PEM certificate') from exc
    known = _certificates_at_hand(data_dir)
    try:
        cas = issuers(cert, known)
    except NotFound as exc:
        raise NotFound(
            f"{root}.cer: {exc.message} in {data_dir} (run client_app.py get-ca first)"
        ) from exc
    target = out or data_dir / kind.file_name(root)
    if (target.exists() or target.is_symlink()) and not force:
        raise InvalidInput(f'file "{target}" already exists; use --force to replace it')
    if kind is ExportFormat.P12:
        if password is None:
            raise InvalidInput("a PKCS#12 file needs a password")
        key_path = data_dir / f"{root}.key"
        try:
            pem = key_path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f'no private key "{key_path}"') from None
        key = load_key(pem, key_password() if key_is_encrypted(pem) else None)
        data = pkcs12_bytes(root, key, cert, cas, password)
        write_private_file(target, data)
        return target, len(cas)
    certs = chain(cert, cas, full=kind is ExportFormat.FULLCHAIN)
    write_public_file(target, pem_bundle(certs))
    return target, len(certs) - 1


def _certificates_at_hand(data_dir: Path) -> list[x509.Certificate]:
    """The pinned CA certificate and every readable ``.cer`` certificate in ``data_dir``."""
    found: list[x509.Certificate] = []
    for path in [pinned_ca_path(data_dir), *sorted(data_dir.glob("*.cer"))]:
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):
            continue
        if cert not in found:
            found.append(cert)
    return found
