"""The user-facing messages of the original, in one place for the CLI and the portal."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


def server_configured(*, created: bool, cer: Path, fingerprint: str, mailed_to: str | None) -> str:
    """What the original prints after configuring the CA server."""
    stem = str(cer.with_suffix(""))
    if created:
        files = f"Created new files: {stem}.cer .key, and .srl."
    else:
        files = f"Using existing files: {stem}.cer and .key"
    lines = [
        "Certificate Authority server successfully configured.",
        files,
        "Certificate Authority Certificate SHA-1 fingerprint:",
        fingerprint,
    ]
    if mailed_to:
        lines.append(f"Confirmation email sent to: {mailed_to}")
    return "\n".join(lines)


def moved_aside(path: Path, old: Path) -> str:
    """A lone ``<root>.cer`` or ``<root>.key`` was renamed before a new pair was made."""
    return f'Renamed "{path}" to "{old}": its partner file was missing, so a new pair was made.'


def server_reconfigured(changed: tuple[str, ...]) -> str:
    """After ``configure`` on a configured CA: which settings changed."""
    if not changed:
        return "Certificate Authority server configuration unchanged."
    return "Certificate Authority server configuration updated: " + ", ".join(changed) + "."


def certificate_issued(number: int, request_name: str) -> str:
    return f'Certificate number {number} issued for Certificate Signing Request "{request_name}"'


def request_deleted(request_name: str) -> str:
    return f'Certificate Signing Request "{request_name}" deleted.'


def server_reinitialized() -> str:
    return "Certificate Authority server reinitialized."


def client_configured() -> str:
    return "Certificate Authority client successfully configured."


def submission_sentence(filename: str, instance: str, node: str) -> str:
    """The SubmitCSR result string the server returns (wire-protocol.md §3.1, Q1)."""
    return (
        f'Certificate Signing Request "{filename}" successfully submitted to the '
        f"Certificate Authority at instance {instance} on node {node}"
    )


def request_submitted(csr_fingerprint: str, server_sentence: str) -> str:
    """What the client shows: the CSR's fingerprint, then the server's sentence."""
    return f"SHA-1 Fingerprint:\n{csr_fingerprint},\n{server_sentence}"


def ca_certificate_saved(fingerprint: str, path: Path) -> str:
    return (
        f"Certificate Authority Certificate (SHA-1 Fingerprint: {fingerprint}) "
        f'saved in file "{path}"'
    )


def certificate_saved(number: int, fingerprint: str, path: Path) -> str:
    return f'Certificate number {number} (SHA-1 Fingerprint: {fingerprint}) saved in file "{path}"'


def confirmation_queued(recipient: str, reason: str) -> str:
    """Instead of "Confirmation email sent to": the message waits in the outbox."""
    return (
        f"Confirmation email to {recipient} not delivered yet ({reason}); "
        "it stays queued and is retried."
    )


def certificate_revoked(number: int, reason: str) -> str:
    """After ``revoke``: the certificate and, unless unspecified, the reason."""
    why = "" if reason == "unspecified" else f" (reason: {reason})"
    return f"Certificate number {number} revoked{why}."


def hold_released(number: int) -> str:
    return f"Certificate number {number} released from hold: it is valid again."


def crl_signed(number: int, entries: int, next_update: datetime) -> str:
    return (
        f"CRL number {number} signed: {entries} revoked certificate(s), "
        f"next update {next_update:%Y-%m-%d %H:%M:%S} UTC."
    )


def crl_current(number: int, next_update: datetime | None) -> str:
    until = f" until {next_update:%Y-%m-%d %H:%M:%S} UTC" if next_update else ""
    return f"CRL number {number} is current{until}; nothing to do."


def ocsp_signer_issued(not_after: datetime) -> str:
    return f"OCSP signing certificate issued, valid until {not_after:%Y-%m-%d %H:%M:%S} UTC."
