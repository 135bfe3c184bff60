"""The CA client's submission tasks: a new key and CSR sent to the CA, or a CSR sent again.

``<root>.key`` (0600) and ``<root>.csr`` land in the data directory, as the original's land in
``<install>/mgr/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from pki_soap import messages
from pki_soap.ca.csr import build_csr, csr_pem, load_csr
from pki_soap.ca.fingerprints import fingerprint
from pki_soap.ca.keys import (
    KeyType,
    generate_key,
    key_is_encrypted,
    key_pem,
    load_key,
    same_public_key,
)
from pki_soap.ca.names import check_root, subject_text
from pki_soap.client.configuration import client_config, connected
from pki_soap.client.soap_client import CAClient
from pki_soap.errors import DuplicateRequest, InvalidInput, PkiError, ServerUnreachable
from pki_soap.files import write_private_file, write_public_file
from pki_soap.store import ClientConfig, Store


def submit(
    store: Store,
    data_dir: Path,
    *,
    root: str,
    subject: x509.Name,
    password: bytes | None,
    key_type: KeyType = KeyType.RSA2048,
    sans: Sequence[x509.GeneralName] = (),
    client: CAClient | None = None,
) -> str:
    """Generate ``<root>.key`` and ``<root>.csr``, submit the CSR; the message to show.

    The key is written (0600, encrypted when ``password`` is given) before the CSR leaves, so
    an issued certificate always has its key.  When the submission fails both new files are
    removed again, so the same root can be used for the next attempt - unless the request may
    have reached the server (no answer in time, an unreadable answer): then both are kept.

    Raises:
        NotConfigured: the client is not configured.
        InvalidRoot: ``root`` breaks the file-name rules.
        InvalidInput: ``<root>.key`` or ``<root>.csr`` exists already (a key is never
            overwritten), or a field the server would refuse.
        ServerUnreachable: the server did not answer properly.
        PkiError: the server's fault (e.g. DuplicateRequest for a pending CSR of that name).
    """
    cfg = client_config(store)
    check_root(root)
    if password is not None and not password:
        raise InvalidInput("the key password is empty (give none to leave the key unencrypted)")
    key_path = data_dir / f"{root}.key"
    csr_path = data_dir / f"{root}.csr"
    for path in (key_path, csr_path):
        if path.exists() or path.is_symlink():
            raise InvalidInput(
                f'file "{path}" already exists; choose another root (a key is never overwritten)'
            )
    key = generate_key(key_type)
    csr = build_csr(key, subject, list(sans))
    contents = csr_pem(csr)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        write_private_file(key_path, key_pem(key, password))
        written.append(key_path)
        write_public_file(csr_path, contents.encode("ascii"))
        written.append(csr_path)
        sentence = _send(cfg, data_dir, client, root, contents, subject)
    except ServerUnreachable as exc:
        if not exc.maybe_received:
            _remove(written)
            raise
        # The server may have stored the request: its certificate will need this key.
        kept = " and ".join(str(path) for path in written)
        raise ServerUnreachable(
            f"{exc.message}; the request may have reached the server, so {kept} "
            "are kept (run `list` later, or ask the CA administrator)",
            maybe_received=True,
        ) from exc
    except DuplicateRequest as exc:
        _remove(written)
        raise _duplicate(cfg, root, exc) from exc
    except (PkiError, OSError, KeyboardInterrupt):
        _remove(written)
        raise
    return messages.request_submitted(fingerprint(csr), sentence)


def _duplicate(cfg: ClientConfig, root: str, exc: DuplicateRequest) -> DuplicateRequest:
    """The server's "ID key not unique" with what it means and what to do next."""
    name = f"{cfg.hostname}:{cfg.instance}:{root}"
    return DuplicateRequest(
        f'a request named "{name}" is already pending at the CA ({exc.message}); wait until '
        "the CA administrator issues or deletes it, or use another file name root (or, if "
        "another client uses this host name and instance, configure another --hostname or "
        "--instance)"
    )


def resubmit(store: Store, data_dir: Path, *, root: str, client: CAClient | None = None) -> str:
    """Send ``<root>.csr`` again, with its key kept; the message to show.

    For a request the CA administrator deleted (or one lost on the way): a new submission
    would need a new root, since a key is never overwritten.  Nothing is written.

    Raises:
        NotConfigured: the client is not configured.
        InvalidRoot: ``root`` breaks the file-name rules.
        InvalidInput: ``<root>.key`` or ``<root>.csr`` is missing, or the key (when it is
            not encrypted) is not the CSR's.
        InvalidCsr: ``<root>.csr`` is not a valid CSR.
        DuplicateRequest: the request is still pending at the CA.
        ServerUnreachable: the server did not answer properly.
        PkiError: the server's fault.
    """
    cfg = client_config(store)
    check_root(root)
    key_path = data_dir / f"{root}.key"
    csr_path = data_dir / f"{root}.csr"
    if not csr_path.is_file():
        raise InvalidInput(f'there is no "{csr_path}" to send again; submit a new request')
    if not key_path.is_file():
        raise InvalidInput(
            f'"{key_path}" is missing: a certificate for "{csr_path}" would be useless without '
            "it; submit a new request under another root"
        )
    csr = load_csr(csr_path.read_bytes())
    key_data = key_path.read_bytes()
    # An encrypted key would need its password to compare; the user chose that key.
    if not key_is_encrypted(key_data):
        key = load_key(key_data, None)
        if not same_public_key(key.public_key(), csr.public_key()):
            raise InvalidInput(f'"{key_path}" is not the key of "{csr_path}"')
    try:
        sentence = _send(cfg, data_dir, client, root, csr_pem(csr), csr.subject)
    except DuplicateRequest as exc:
        raise _duplicate(cfg, root, exc) from exc
    return messages.request_submitted(fingerprint(csr), sentence)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _send(
    cfg: ClientConfig,
    data_dir: Path,
    client: CAClient | None,
    root: str,
    contents: str,
    subject: x509.Name,
) -> str:
    """SubmitCSR ``<root>`` as this host and instance, with the contact; the server's sentence."""
    with connected(cfg, data_dir, client) as ca_client:
        return ca_client.submit_csr(
            name=f"{cfg.hostname}:{cfg.instance}:{root}",
            hostname=cfg.hostname,
            instance=cfg.instance,
            filename=root,
            contents=contents,
            subject=subject_text(subject),
            contact_name=cfg.contact_name,
            contact_phone=cfg.contact_phone,
            contact_email=cfg.contact_email,
        )
