"""The CA server's tasks (IRIS ``PKI.CAServer``): configure, submit, issue, delete, list, get.

The SOAP service, the portal and the command line all call :class:`CAServer`; it owns the
rules (what a valid submission is, how an issue is made atomic) so that every front end
behaves the same.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509

from pki_soap import messages
from pki_soap.ca import fingerprints, keys, names, policy
from pki_soap.ca.authority import CertificateAuthority, Usage, check_days
from pki_soap.ca.ca_files import CAPaths
from pki_soap.ca.csr import cert_pem, csr_pem, load_csr
from pki_soap.ca.keys import KeyType, PrivateKey
from pki_soap.ca.names import CSR_FIELD_LIMITS, DEFAULT_INSTANCE
from pki_soap.errors import (
    CAFileError,
    InvalidCsr,
    InvalidField,
    InvalidInput,
    MissingField,
    NotConfigured,
    PkiError,
    TooManyRequests,
    UnknownRequest,
)
from pki_soap.escaping import has_control
from pki_soap.server import revocation
from pki_soap.server.revocation import Reason, Refreshed, Revocations, RevokeResult
from pki_soap.store import IssuedCertificate, PendingRequest, Revocation, ServerConfig, Store

log = logging.getLogger(__name__)

# A certificate Number is at most 20 octets: 49 decimal digits.
_NUMBER = re.compile(r"0|[1-9][0-9]{0,48}")


class Notifications(Protocol):
    """What the CA server tells people (pki_soap.server.mail.Notifier implements it)."""

    def ca_configured(self, cfg: ServerConfig, fingerprint: str) -> str | None:
        """Confirm a configuration to the administrator; return the recipient or None."""

    def request_received(self, req: PendingRequest, fingerprint: str) -> None:
        """Tell the administrator a CSR arrived (``fingerprint``: the CSR's SHA-1)."""

    def certificate_issued(self, cert: IssuedCertificate, req: PendingRequest) -> None:
        """Tell the request's contact the certificate is ready."""

    def request_deleted(self, req: PendingRequest) -> None:
        """Tell the request's contact the request was deleted."""

    def certificate_revoked(self, cert: IssuedCertificate, revocation: Revocation) -> None:
        """Tell the certificate's contact it was revoked (or put on hold)."""

    def hold_released(self, cert: IssuedCertificate) -> None:
        """Tell the certificate's contact its hold was released (removeFromCRL)."""


class _Silent:
    """No notifications at all (no notifier available or wanted)."""

    def ca_configured(self, cfg: ServerConfig, fingerprint: str) -> str | None:
        return None

    def request_received(self, req: PendingRequest, fingerprint: str) -> None:
        return None

    def certificate_issued(self, cert: IssuedCertificate, req: PendingRequest) -> None:
        return None

    def request_deleted(self, req: PendingRequest) -> None:
        return None

    def certificate_revoked(self, cert: IssuedCertificate, revocation: Revocation) -> None:
        return None

    def hold_released(self, cert: IssuedCertificate) -> None:
        return None


@dataclass(frozen=True)
class ConfigureResult:
    """What :meth:`CAServer.configure` did (messages.server_configured prints it)."""

    created: bool
    paths: CAPaths
    fingerprint: str
    mailed_to: str | None
    changed: tuple[str, ...] = ()
    """The settings a configuration of an already configured CA changed."""
    encrypted_key: bool = False
    """True when an unencrypted CA key file was found and encrypted with the password."""
    moved_aside: tuple[tuple[Path, Path], ...] = ()
    """(file, new name) of each lone ``<root>.cer`` or ``.key`` renamed ``.old`` on the way."""


@dataclass(frozen=True)
class IssueResult:
    """What :meth:`CAServer.issue_many` did with one request: a certificate or an error."""

    name: str
    request: PendingRequest | None = None
    """The request as it was pending (None when it was not pending)."""
    certificate: IssuedCertificate | None = None
    error: PkiError | None = None
    """Why no certificate was issued: UnknownRequest, or the CSR's InvalidInput."""


@dataclass(frozen=True)
class SubmissionLimits:
    """How much an anonymous SOAP client may make the CA store (0: no limit).

    ``per_address`` accepted submissions per client address (IPv6: per /64, what one
    subscriber usually gets) within ``window``; ``pending`` requests waiting overall, and
    ``pending_per_host`` with the same Hostname.  The defaults are the SOAP service's.
    """

    per_address: int = 20
    window: timedelta = timedelta(minutes=1)
    pending: int = 1000
    pending_per_host: int = 50

    def __post_init__(self) -> None:
        for name in ("per_address", "pending", "pending_per_host"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidInput(f"the submission limit {name} must be a whole number >= 0")
        if self.window <= timedelta(0):
            raise InvalidInput("the submission rate window must be positive")


def client_key(address: str | None) -> str | None:
    """The key a client address is counted under: the address, or its /64 for IPv6."""
    if not address:
        return None
    try:
        parsed = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def _check_text(field: str, value: str, *, allowed: str = "") -> None:
    """Refuse a value longer than its MAXLEN or holding control characters.

    Raises:
        InvalidField: too long, or a control character (other than ``allowed``).
    """
    limit = CSR_FIELD_LIMITS[field]
    if len(value) > limit:
        raise InvalidField(f"{field} is longer than {limit} characters ({len(value)})")
    if has_control(value, allowed):
        raise InvalidField(f"{field} holds a control character")


def _present(value: str | None) -> bool:
    return value is not None and value.strip() != ""


def _optional(value: str | None) -> str | None:
    return value if _present(value) else None


class CAServer:
    """The Certificate Authority server of one data directory."""

    def __init__(self, store: Store, data_dir: Path, notifier: Notifications | None = None) -> None:
        """Serve from ``store``; CA files in relative directories live under ``data_dir``.

        ``notifier`` receives the notices; None sends none.  A notifier that raises never
        fails the operation (the failure is logged).
        """
        self.store = store
        self.data_dir = Path(data_dir)
        self.notifier: Notifications = notifier if notifier is not None else _Silent()

    def close(self) -> None:
        """Close the store."""
        self.store.close()

    def __enter__(self) -> CAServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _notify(self, what: str, call: Callable[[], object]) -> object:
        try:
            return call()
        except Exception as exc:
            # Only the kind and text of the failure: never the message body or SMTP settings.
            log.warning("notification %s failed: %s: %s", what, type(exc).__name__, exc)
            return None

    # -- configuration ------------------------------------------------------------------

    def ca_paths(self, cfg: ServerConfig) -> CAPaths:
        """Where the CA files of ``cfg`` are (a relative directory is under the data directory).

        Raises:
            InvalidRoot: the configured root is not valid.
        """
        directory = Path(cfg.directory).expanduser()
        if not directory.is_absolute():
            directory = self.data_dir / directory
        return CAPaths(directory, cfg.root)

    def configure(
        self,
        *,
        root: str,
        directory: str,
        password: bytes | None,
        days: int | None,
        subject: x509.Name | None = None,
        ca_days: int | None = None,
        key_type: KeyType = KeyType.RSA2048,
        smtp_server: str | None = None,
        smtp_port: int | None = None,
        smtp_user: str | None = None,
        smtp_password: str | None = None,
        admin_email: str | None = None,
        instance: str | None = None,
        node: str | None = None,
        public_url: str | None = None,
        revocation_urls: bool | None = None,
        crl_days: int | None = None,
    ) -> ConfigureResult:
        """Configure the CA: use ``<root>.cer``/``.key`` in ``directory`` or create them.

        Every setting is checked before any file is touched.  The first configuration needs
        ``days`` and ``password``; it stores the configuration and saves the CA certificate
        as certificate number 0 (Filename = root, Hostname = node, Instance = instance).
        ``instance`` defaults to :data:`DEFAULT_INSTANCE`, ``node`` to this host's name.

        On a configured CA the root and directory are fixed, as the original's "can not be
        changed" (``reinitialize`` first): only the settings given change (``days``, the
        SMTP settings, the administrator's address, instance and node, the revocation
        settings), ``None`` keeps a setting and ``""`` removes an optional one; ``password``
        is then needed only to encrypt a CA key found unencrypted (one given is checked).
        An existing unencrypted CA key is encrypted with ``password`` (never a CA that
        accepts any password).

        ``public_url`` (the URL clients reach the server at) makes newly issued certificates
        carry the CRL and OCSP URLs unless ``revocation_urls`` is False; ``crl_days`` is how
        long each CRL is valid (default :data:`~pki_soap.server.revocation.DEFAULT_CRL_DAYS`).

        Raises:
            InvalidRoot: ``root`` breaks the file-name root rules.
            MissingField: ``directory`` is empty.
            InvalidInput: ``days``/``ca_days``/``smtp_port``/``crl_days`` out of range, a new
                CA without subject or validity, no password where one is needed, another root
                or directory than the configured ones, a public URL that is not http(s).
            InvalidField: a setting too long or holding control characters.
            WrongPassword: the password does not decrypt the existing key.
            CAFileError: the existing files are unusable or the directory is not writable.
        """
        names.check_root(root)
        if not _present(directory):
            raise MissingField("the CA directory is required")
        if has_control(directory):
            raise InvalidField("the CA directory holds a control character")
        if days is not None:
            check_days(days, "the validity of issued certificates")
        if ca_days is not None:
            check_days(ca_days, "the validity of the CA certificate")
        if smtp_port is not None and not 1 <= smtp_port <= 65535:
            raise InvalidInput(f"SMTP port {smtp_port} is not between 1 and 65535")
        if crl_days is not None:
            revocation.check_crl_days(crl_days)
        if public_url is not None:
            public_url = public_url.strip()
            if public_url:
                revocation.public_base(public_url)
        for label, value in (
            ("SMTP server", smtp_server),
            ("SMTP user", smtp_user),
            ("SMTP password", smtp_password),
            ("administrator e-mail", admin_email),
        ):
            # A line break here would let a value add mail headers.
            if value is not None and has_control(value):
                raise InvalidField(f"the {label} holds a control character")
        if _present(admin_email) and not names.is_email_address((admin_email or "").strip()):
            raise InvalidField(f"the administrator e-mail {admin_email!r} is not one address")
        previous = self.store.server_config()
        if previous is not None:
            self.check_files_unchanged(previous, root, directory)
        elif days is None:
            raise InvalidInput("the validity of issued certificates (days) is required")
        cfg = _updated(
            previous,
            root=root,
            directory=directory,
            days=days,
            instance=instance,
            node=node,
            smtp_server=smtp_server,
            smtp_port=smtp_port,
            smtp_user=smtp_user,
            smtp_password=smtp_password,
            admin_email=admin_email,
            public_url=public_url,
            revocation_urls=revocation_urls,
            crl_days=crl_days,
        )
        _check_text("Instance", cfg.instance)
        _check_text("Hostname", cfg.node)
        paths = self.ca_paths(cfg)
        old_before = _old_files(paths)
        if previous is not None:
            authority, created = CertificateAuthority.load(paths), False
            encrypted = authority.encrypt_key(password)
            if password is not None and not encrypted:
                authority.private_key(password)  # a password given must be the right one
        else:
            if password is None:
                raise InvalidInput("the CA key password is required")
            plain_key = paths.key.exists() and not keys.key_file_encrypted(paths.key)
            authority, created = CertificateAuthority.configure(
                paths, password=password, subject=subject, ca_days=ca_days, key_type=key_type
            )
            encrypted = plain_key and not created
        # Seen, not predicted: the .old files that appeared are the ones configure made.
        moved_aside = tuple(
            (old.with_name(old.name.split(".old", 1)[0]), old)
            for old in sorted(_old_files(paths) - old_before)
        )
        with self.store.transaction():
            self.store.save_server_config(cfg)
            self.store.add_certificate(
                IssuedCertificate(
                    number=0,
                    hostname=cfg.node,
                    instance=cfg.instance,
                    filename=root,
                    contents=authority.certificate_pem,
                    subject=authority.subject_text,
                    usage=None,
                    issued=authority.certificate.not_valid_before_utc,
                    not_after=authority.not_after,
                ),
                replace=True,
            )
        mailed_to = self._notify(
            "ca_configured", lambda: self.notifier.ca_configured(cfg, authority.fingerprint)
        )
        return ConfigureResult(
            created=created,
            paths=paths,
            fingerprint=authority.fingerprint,
            mailed_to=mailed_to if isinstance(mailed_to, str) else None,
            changed=_changes(previous, cfg),
            encrypted_key=encrypted,
            moved_aside=moved_aside,
        )

    def check_files_unchanged(self, previous: ServerConfig, root: str, directory: str) -> None:
        """Refuse another root or directory than the configured ones (IRIS: "can not be changed").

        Raises:
            InvalidInput: the CA files named differ from the configured ones.
        """
        wanted = self.ca_paths(dataclasses.replace(previous, root=root, directory=directory))
        configured = self.ca_paths(previous)
        if wanted.cer.resolve() != configured.cer.resolve():
            raise InvalidInput(
                f"the CA is configured with root {previous.root} in {previous.directory}; "
                "its files cannot be changed: run `reinitialize` first to configure another CA"
            )

    def config(self) -> ServerConfig:
        """The stored configuration.

        Raises:
            NotConfigured: the CA server has not been configured.
        """
        cfg = self.store.server_config()
        if cfg is None:
            raise NotConfigured("the Certificate Authority server is not configured")
        return cfg

    def authority(self) -> CertificateAuthority:
        """The configured CA, loaded from its files (the key stays encrypted on disk).

        What it signs carries the revocation URLs of the configuration, if any.

        Raises:
            NotConfigured: the CA server has not been configured.
            CAFileError: the CA files are missing or unusable.
            InvalidInput: the configured public URL is not usable.
        """
        cfg = self.config()
        authority = CertificateAuthority.load(self.ca_paths(cfg))
        authority.revocation_urls = revocation.revocation_urls(cfg)
        return authority

    def revocations(self, authority: CertificateAuthority | None = None) -> Revocations:
        """The revocation side (records, CRLs, OCSP signer) of the configured CA.

        Raises:
            NotConfigured: the CA server has not been configured.
            CAFileError: the CA files are missing or unusable.
        """
        return Revocations(
            self.store, authority or self.authority(), crl_days=self.config().crl_days
        )

    def reinitialize(self) -> None:
        """Forget the configuration, pending CSRs and certificates; the CA files stay.

        The serial file is untouched, so numbering continues after a new configuration.
        """
        self.store.reinitialize()

    # -- requests -----------------------------------------------------------------------

    def submit(
        self,
        req: PendingRequest,
        *,
        as_received: bool = False,
        client_address: str | None = None,
        limits: SubmissionLimits | None = None,
    ) -> str:
        """Check and store a CSR as a pending request; notify the administrator.

        ``Name`` defaults to ``Hostname:Instance:Filename``; CR LF in ``Contents`` become
        LF and the CSR is stored as canonical PEM.  Nothing is stored unless everything
        is valid, the issuance policy accepts the CSR and ``limits`` allow it (the SOAP
        service passes its own; None: no limits).  ``client_address`` is who sent it,
        for the rate per address.  With ``as_received`` (IRIS-strict mode) ``Contents`` is
        stored exactly as it came, unchecked, as IRIS stores it: the CSR (and the issuance
        policy) are checked when it is issued; the limits and the ContactEmail check apply.

        Returns:
            The original's sentence: 'Certificate Signing Request "<Filename>" successfully
            submitted to the Certificate Authority at instance <instance> on node <node>'.

        Raises:
            NotConfigured: the CA server has not been configured.
            MissingField: Hostname, Instance, Filename, Contents or ContactName is empty.
            InvalidField: a field longer than its MAXLEN, or holding a control character;
                a ContactEmail that is not one e-mail address.
            InvalidRoot: Filename breaks the file-name root rules.
            InvalidCsr: Contents is not exactly one PEM CSR with a valid signature
                (not with ``as_received``).
            UnacceptableKey: the CSR's key is not one the CA certifies (not with
                ``as_received``).
            PolicyViolation: the issuance policy refuses the CSR (or its MD5/SHA-1 signature;
                not with ``as_received``).
            TooManyRequests: a submission limit is reached (nothing stored).
            DuplicateRequest: a pending CSR with the same Name exists.
        """
        cfg = self.config()
        for field, value in (
            ("Hostname", req.hostname),
            ("Instance", req.instance),
            ("Filename", req.filename),
            ("Contents", req.contents),
            ("ContactName", req.contact_name),
        ):
            if not _present(value):
                raise MissingField(f"{field} is required")
        contents = req.contents.replace("\r\n", "\n")
        checks = {
            "Hostname": req.hostname,
            "Instance": req.instance,
            "Filename": req.filename,
            "Subject": req.subject or "",
            "ContactName": req.contact_name,
            "ContactPhone": req.contact_phone or "",
            "ContactEmail": req.contact_email or "",
        }
        for field, value in checks.items():
            _check_text(field, value)
        _check_text("Contents", contents, allowed="\n")
        names.check_root(req.filename)
        email = _optional(req.contact_email)
        # Something that tries to be an address must be exactly one.  A value without any
        # "@" is kept as IRIS keeps it, and never mailed: the real wget client fills this
        # field with the contact's name (shared/real-clients/01).
        if email is not None and "@" in email and not names.is_email_address(email.strip()):
            raise InvalidField("ContactEmail must be one e-mail address such as jane@example.com")
        name = req.name if _present(req.name) else f"{req.hostname}:{req.instance}:{req.filename}"
        _check_text("Name", name)
        counted_as = client_key(client_address)
        now = datetime.now(UTC)
        self._check_limits(limits, req.hostname, counted_as, now)  # cheap, before the CSR
        # The one check of the CSR at submission (IRIS has none: see as_received).
        if as_received:
            stored_contents, fingerprint = req.contents, _fingerprint_if_readable(contents)
        else:
            csr = load_csr(contents)
            policy.check(csr)
            stored_contents, fingerprint = csr_pem(csr), fingerprints.fingerprint(csr)
        with self.store.transaction():
            # Again under the write lock: another worker may have stored one meanwhile.
            self._check_limits(limits, req.hostname, counted_as, now)
            stored = self.store.add_request(
                dataclasses.replace(
                    req,
                    name=name,
                    contents=stored_contents,
                    subject=req.subject or "",
                    contact_phone=_optional(req.contact_phone),
                    contact_email=None if email is None else email.strip(),
                    received=now,
                )
            )
            if counted_as is not None and limits is not None and limits.per_address:
                self.store.record_submission(counted_as, now, forget_before=now - limits.window)
        self._notify(
            "request_received", lambda: self.notifier.request_received(stored, fingerprint)
        )
        return messages.submission_sentence(req.filename, cfg.instance, cfg.node)

    def _check_limits(
        self,
        limits: SubmissionLimits | None,
        hostname: str,
        counted_as: str | None,
        now: datetime,
    ) -> None:
        if limits is None:
            return
        if counted_as is not None and limits.per_address:
            recent = self.store.count_submissions(counted_as, now - limits.window)
            if recent >= limits.per_address:
                raise TooManyRequests(
                    f"too many Certificate Signing Requests from {counted_as}: at most "
                    f"{limits.per_address} per {int(limits.window.total_seconds())} seconds "
                    "from one address; try again later"
                )
        if limits.pending and self.store.count_requests() >= limits.pending:
            raise TooManyRequests(
                f"the Certificate Authority already has {limits.pending} pending Certificate "
                "Signing Requests, its limit; try again after the administrator has "
                "processed some"
            )
        if limits.pending_per_host and (
            self.store.count_requests(hostname) >= limits.pending_per_host
        ):
            raise TooManyRequests(
                f"host {hostname} already has {limits.pending_per_host} pending Certificate "
                "Signing Requests, the limit per host; try again after the administrator "
                "has processed them"
            )

    def pending(self) -> list[PendingRequest]:
        """The pending CSRs, oldest first."""
        return self.store.requests()

    def request(self, name: str) -> PendingRequest:
        """The pending CSR called ``name``.

        Raises:
            UnknownRequest: no pending CSR has that name.
        """
        return self.store.request(name)

    def find_request(self, text: str) -> PendingRequest:
        """The pending CSR that ``text`` names: its Name, its Filename, or a prefix of its Name.

        A Name (``host:instance:file``) is long to type; the administrator may give what
        ``pending`` shows in the Filename column, or the start of the Name, as long as exactly
        one pending request fits.  The whole Name always wins.

        Raises:
            UnknownRequest: no pending CSR fits.
            InvalidInput: several fit (the message lists their Names).
        """
        try:
            return self.store.request(text)
        except UnknownRequest:
            pass
        fits = [r for r in self.store.requests() if r.filename == text or r.name.startswith(text)]
        if len(fits) == 1:
            return fits[0]
        if not fits or not text:
            raise UnknownRequest(f'no pending Certificate Signing Request "{text}"')
        listed = ", ".join(r.name for r in fits[:10]) + (", ..." if len(fits) > 10 else "")
        raise InvalidInput(
            f'"{text}" fits {len(fits)} pending requests ({listed}); give more of the Name'
        )

    def delete_request(self, name: str) -> PendingRequest:
        """Delete (reject) the pending CSR ``name``, notify its contact, return it.

        Raises:
            UnknownRequest: no pending CSR has that name.
        """
        removed = self.store.remove_request(name)
        self._notify("request_deleted", lambda: self.notifier.request_deleted(removed))
        return removed

    def issue(
        self,
        name: str,
        usage: Usage,
        password: bytes | None = None,
        *,
        key: PrivateKey | None = None,
    ) -> IssuedCertificate:
        """Issue a certificate for the pending CSR ``name``; notify the request's contact.

        Give exactly one of ``password`` (the CA key is decrypted here, before anything
        else, so a wrong password consumes nothing) and ``key`` (the CA key, already
        decrypted: see :meth:`CertificateAuthority.private_key`).  Then one store
        transaction reads the request, checks that the CSR can be signed for ``usage``,
        takes the next serial number, signs, stores the certificate and removes the
        request.  The serial file is written durably before the number is used, so a crash
        anywhere leaves at most a gap in the numbers: never a number used twice, never a
        request both issued and pending.

        Raises:
            InvalidInput: both or neither of ``password`` and ``key`` given.
            NotConfigured: the CA server has not been configured.
            WrongPassword: ``password`` does not decrypt the CA key.
            CAFileError: the CA files are unusable, ``key`` is not the CA's key, or the
                serial file is behind the store.
            UnknownRequest: no pending CSR has that name.
            InvalidCsr, UnacceptableKey, InvalidInput: the CSR cannot be signed for ``usage``
                (checked before a number is taken).
        """
        cfg = self.config()
        authority = self.authority()
        key = self._signing_key(authority, password, key)
        with self.store.transaction():
            req = self.store.request(name)
            csr = _stored_csr(req)
            # Every refusal sign() could make, made before a number is spent: one request
            # is worth the second check (issue_many, built for speed, checks once).
            authority.preview_extensions(csr, usage)
            number = authority.serials.take(after=self.store.highest_number())
            issued = self._signed(authority, req, csr, usage, key, cfg.days, number)
            self.store.record_issued([(name, issued)])
        self._notify("certificate_issued", lambda: self.notifier.certificate_issued(issued, req))
        self._refresh_revocation(authority, key)
        return issued

    def issue_own(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        hostname: str,
        filename: str,
        days: int,
        password: bytes,
    ) -> IssuedCertificate:
        """Issue a TLS certificate for a CSR of the CA server itself (its HTTPS certificate).

        No pending request is involved and nobody is notified; otherwise as :meth:`issue`:
        the CA key is decrypted first, then one transaction takes the next serial number,
        signs for :attr:`Usage.TLS` and records the certificate (Hostname ``hostname``, the
        configured instance, Filename ``filename``), so it is listed (and can be revoked) like
        any other; a CRL or OCSP signer that is due is renewed while the key is at hand.

        Raises:
            NotConfigured: the CA server has not been configured.
            WrongPassword: ``password`` does not decrypt the CA key.
            CAFileError: the CA files are unusable or the CA certificate has expired.
            InvalidCsr, UnacceptableKey, InvalidInput: ``csr`` cannot be signed, or ``days``
                is out of range.
        """
        check_days(days, "the certificate's validity")
        cfg = self.config()
        authority = self.authority()
        key = authority.private_key(password)
        request = PendingRequest(
            name=f"{hostname}:{cfg.instance}:{filename}",
            hostname=hostname,
            instance=cfg.instance,
            filename=filename,
            contents=csr_pem(csr),
            subject=names.subject_text(csr.subject),
            contact_name=cfg.node,
        )
        with self.store.transaction():
            authority.preview_extensions(csr, Usage.TLS)
            number = authority.serials.take(after=self.store.highest_number())
            issued = self._signed(authority, request, csr, Usage.TLS, key, days, number)
            self.store.add_certificate(issued)
        self._refresh_revocation(authority, key)
        return issued

    def issue_many(
        self,
        names: Iterable[str],
        usage: Usage,
        *,
        key: PrivateKey,
        batch: int = 100,
        on_batch: Callable[[list[IssueResult]], object] | None = None,
    ) -> list[IssueResult]:
        """Issue certificates for many pending CSRs with the decrypted CA ``key``.

        The requests are taken ``batch`` at a time.  For each batch: read the requests
        still pending (another process may have issued or deleted one since it was listed:
        it is reported as :class:`UnknownRequest`), reserve one serial number per request
        in one durable write to the serial file, sign each CSR (parsed and checked once),
        then in one store transaction re-read the requests and replace each one still
        pending exactly as it was read by its certificate; then notify the contacts and
        give the batch's results to ``on_batch``.  Signing outside the transaction keeps
        the database free for the running server's submissions.

        Numbers are given out in the order of ``names`` to the certificates signed; those a
        refused CSR left unused, those of a request another process decided meanwhile, and
        those of a batch cut short by a crash are gaps.  Never a number used twice, never a
        request both issued and pending or lost: a request is removed only in the
        transaction that stores its certificate.

        Returns:
            One :class:`IssueResult` per name, in the order given: the certificate, or the
            error that left this request alone (unknown or already decided, InvalidCsr,
            UnacceptableKey, InvalidInput for a CSR that cannot be signed for ``usage``).

        Raises:
            InvalidInput: ``batch`` is not a positive whole number.
            NotConfigured: the CA server has not been configured.
            CAFileError: the CA files are unusable, ``key`` is not the CA's key, the CA
                certificate has expired, or the serial file cannot be written.
            PkiError: a number is already in the store (the serial file is behind it).
                Batches committed before the error stay issued (``on_batch`` saw them);
                the failing batch changes nothing in the store.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidInput(
                f"the batch size must be a whole number of at least 1, not {batch!r}"
            )
        cfg = self.config()
        authority = self.authority()
        key = self._signing_key(authority, None, key)
        wanted = list(names)
        results: list[IssueResult] = []
        for first in range(0, len(wanted), batch):
            done = self._issue_batch(authority, wanted[first : first + batch], usage, key, cfg)
            for result in done:
                if result.certificate is not None and result.request is not None:
                    self._notify(
                        "certificate_issued",
                        functools.partial(
                            self.notifier.certificate_issued, result.certificate, result.request
                        ),
                    )
            results += done
            if on_batch is not None:
                on_batch(done)
        self._refresh_revocation(authority, key)
        return results

    def _issue_batch(
        self,
        authority: CertificateAuthority,
        names_in_batch: list[str],
        usage: Usage,
        key: PrivateKey,
        cfg: ServerConfig,
    ) -> list[IssueResult]:
        # Signing happens outside the write transaction, so a SubmitCSR of the running
        # server (or a second issuer) waits for a few inserts, not for a batch of signatures.
        pending = self.store.requests_named(names_in_batch)
        parsed: dict[str, x509.CertificateSigningRequest] = {}
        outcome: dict[str, IssueResult] = {}
        for name in dict.fromkeys(names_in_batch):  # numbers follow the order given
            req = pending.get(name)
            if req is None:
                continue
            try:
                parsed[name] = _stored_csr(req)
            except InvalidCsr as exc:
                outcome[name] = IssueResult(name, request=req, error=exc)
        signed: list[tuple[str, IssuedCertificate]] = []
        if parsed:
            highest = self.store.highest_number()
            numbers = iter(authority.serials.take_block(len(parsed), after=highest))
            number = next(numbers)
            for name, csr in parsed.items():
                req = pending[name]
                try:
                    cert = self._signed(authority, req, csr, usage, key, cfg.days, number)
                except InvalidInput as exc:  # InvalidCsr, UnacceptableKey: this CSR only
                    # Its number goes to the next one; only the block's tail is a gap.
                    outcome[name] = IssueResult(name, request=req, error=exc)
                    continue
                signed.append((name, cert))
                number = next(numbers, 0)
        if signed:
            with self.store.transaction():
                # Only a request still pending exactly as it was read is replaced by its
                # certificate; one issued, deleted or submitted anew meanwhile is left to
                # whoever changed it, and its number becomes a gap.
                current = self.store.requests_named([name for name, _ in signed])
                kept = [(name, cert) for name, cert in signed if current.get(name) == pending[name]]
                self.store.record_issued(kept)
            for name, cert in kept:
                outcome[name] = IssueResult(name, request=pending[name], certificate=cert)
            for name, _ in signed:
                if name not in outcome:
                    raced = UnknownRequest(
                        f'Certificate Signing Request "{name}" was issued, deleted or'
                        " submitted anew by someone else meanwhile"
                    )
                    outcome[name] = IssueResult(name, request=pending[name], error=raced)
        results: list[IssueResult] = []
        for name in names_in_batch:
            result = outcome.pop(name, None)  # pop: a name given twice is done once
            if result is None:
                result = IssueResult(
                    name, error=UnknownRequest(f'no pending Certificate Signing Request "{name}"')
                )
            results.append(result)
        return results

    def _refresh_revocation(self, authority: CertificateAuthority, key: PrivateKey) -> None:
        """While the CA key is at hand: renew the OCSP signer and the CRL if they are due.

        A failure is logged and never fails the issue (``status`` shows what is overdue).
        """
        try:
            self.revocations(authority).refresh(key)
        except PkiError as exc:
            log.warning("CRL or OCSP signer not renewed: %s: %s", type(exc).__name__, exc.message)

    # -- revocation ---------------------------------------------------------------------

    def revoke(
        self,
        number: int,
        reason: Reason = Reason.UNSPECIFIED,
        password: bytes | None = None,
        *,
        revoked_by: str,
        key: PrivateKey | None = None,
    ) -> RevokeResult:
        """Revoke certificate ``number`` (see :meth:`Revocations.revoke`); notify its contact.

        Give exactly one of ``password`` and ``key`` (as for :meth:`issue`); a wrong
        password changes nothing.  ``revoked_by`` is recorded (the CLI user, the portal).

        Raises:
            InvalidInput: both or neither of ``password`` and ``key``; number 0; already
                revoked; removeFromCRL for a certificate not on hold.
            NotConfigured: the CA server has not been configured.
            WrongPassword: ``password`` does not decrypt the CA key.
            UnknownCertificate: this CA issued no certificate with that number.
            CAFileError: the CA files are unusable, or the CRL cannot be made.
        """
        authority = self.authority()
        key = self._signing_key(authority, password, key)
        result = self.revocations(authority).revoke(number, reason, revoked_by=revoked_by, key=key)
        if result.revocation is not None:
            recorded = result.revocation
            self._notify(
                "certificate_revoked",
                lambda: self.notifier.certificate_revoked(result.certificate, recorded),
            )
        else:
            self._notify("hold_released", lambda: self.notifier.hold_released(result.certificate))
        return result

    def refresh_revocation(
        self,
        password: bytes | None = None,
        *,
        key: PrivateKey | None = None,
        force_crl: bool = True,
    ) -> Refreshed:
        """Sign a new CRL (or only when due: ``force_crl=False``) and renew the OCSP signer
        when due.  Give exactly one of ``password`` and ``key``.

        Raises:
            InvalidInput, NotConfigured, WrongPassword, CAFileError: as for :meth:`revoke`.
        """
        authority = self.authority()
        key = self._signing_key(authority, password, key)
        return self.revocations(authority).refresh(key, force_crl=force_crl)

    def _signing_key(
        self, authority: CertificateAuthority, password: bytes | None, key: PrivateKey | None
    ) -> PrivateKey:
        if (password is None) == (key is None):
            raise InvalidInput("give exactly one of the CA key password and the CA key")
        if key is None:
            return authority.private_key(password)
        if not keys.same_public_key(key.public_key(), authority.certificate.public_key()):
            raise CAFileError("the private key given is not the CA certificate's key")
        return key

    @staticmethod
    def _signed(
        authority: CertificateAuthority,
        req: PendingRequest,
        csr: x509.CertificateSigningRequest,
        usage: Usage,
        key: PrivateKey,
        days: int,
        number: int,
    ) -> IssuedCertificate:
        certificate = authority.sign(csr, usage, key=key, days=days, serial_number=number)
        return IssuedCertificate(
            number=number,
            hostname=req.hostname,
            instance=req.instance,
            filename=req.filename,
            contents=cert_pem(certificate),
            subject=names.subject_text(certificate.subject),
            usage=usage.value,
            issued=datetime.now(UTC),
            not_after=certificate.not_valid_after_utc,
            contact_name=req.contact_name,
            contact_email=req.contact_email,
        )

    # -- certificates -------------------------------------------------------------------

    def certificates(
        self,
        hostname: str | None = "",
        instance: str | None = "",
        *,
        iris_order: bool = False,
    ) -> Generator[IssuedCertificate, None, None]:
        """ListCertificates' rows (wire-protocol.md §3.2), in number order, never number 0.

        Both empty (or None) lists every certificate; otherwise both must match, ignoring case
        and trailing blanks as IRIS's SQLUPPER collation does (the store's ``_OWNER_MATCH``
        says why), so one empty and one given lists nothing (IRIS SQL compares with NULL).
        With ``iris_order`` (IRIS-strict mode) the numbers sort as IRIS sorts them, as text
        ("10" before "9").  The rows stream from the store; ``close()`` the generator to stop
        early.
        """
        hostname, instance = hostname or "", instance or ""
        if not hostname and not instance:
            return self.store.certificates(iris_order=iris_order)
        if not hostname or not instance:
            return _no_certificates()
        return self.store.certificates(hostname, instance, iris_order=iris_order)

    def certificate_rows(
        self,
        hostname: str | None = "",
        instance: str | None = "",
        *,
        iris_order: bool = False,
    ) -> Generator[tuple[int, str, str, str], None, None]:
        """ListCertificates' rows as ``(number, hostname, instance, filename)``, lean.

        Exactly the rows, order and wire semantics of :meth:`certificates` (§3.2: both
        empty lists every certificate, one empty lists nothing; ``iris_order`` as
        there), without the PEM text or dates.  The rows stream from the store;
        ``close()`` the generator to stop early.
        """
        hostname, instance = hostname or "", instance or ""
        if not hostname and not instance:
            return self.store.certificate_rows(iris_order=iris_order)
        if not hostname or not instance:
            return _no_rows()
        return self.store.certificate_rows(hostname, instance, iris_order=iris_order)

    def certificate(self, number: str | int) -> IssuedCertificate | None:
        """GetCertificate (wire-protocol.md §3.3): the certificate whose Number is ``number``.

        ``number`` is matched as IRIS's ``%OpenId`` matches the stored decimal string:
        ``"0"`` is the CA certificate; ``"00"``, ``" 0"``, ``"+1"`` or ``"abc"`` match nothing.
        """
        text = str(number)
        if not _NUMBER.fullmatch(text):
            return None
        return self.store.certificate(int(text))


def _stored_csr(req: PendingRequest) -> x509.CertificateSigningRequest:
    """Parse a stored CSR without checking it: ``sign`` checks it, once.

    Raises:
        InvalidCsr: the stored text is not a PEM CSR (a row written by hand).
    """
    try:
        return x509.load_pem_x509_csr(req.contents.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidCsr(f'the stored CSR of "{req.name}" is not readable: {exc}') from exc


def _fingerprint_if_readable(contents: str) -> str:
    """The SHA-1 fingerprint of a CSR stored unchecked, or a note that it cannot be read."""
    try:
        csr = x509.load_pem_x509_csr(contents.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return "(none: the request is not a readable PEM CSR)"
    return fingerprints.fingerprint(csr)


def _updated(previous: ServerConfig | None, **given: str | int | None) -> ServerConfig:
    """``previous`` with the settings given (None keeps one, "" removes an optional one)."""
    if previous is None:
        previous = ServerConfig(
            root=str(given["root"]),
            directory=str(given["directory"]),
            days=0,
            instance=DEFAULT_INSTANCE,
            node=socket.gethostname(),
        )
    if given.get("smtp_server") is not None and given.get("smtp_port") is None:
        given["smtp_port"] = ""  # a new SMTP server without a port: the default port
    changes: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        if isinstance(value, str) and name not in ("root", "directory", "instance", "node"):
            value = value if _present(value) else None
        elif isinstance(value, str) and not _present(value):
            continue  # instance and node are never removed
        changes[name] = value
    return dataclasses.replace(previous, **changes)


_SETTING_LABELS = {
    "days": "validity of issued certificates",
    "instance": "instance",
    "node": "node",
    "smtp_server": "SMTP server",
    "smtp_port": "SMTP port",
    "smtp_user": "SMTP user",
    "smtp_password": "SMTP password",
    "admin_email": "administrator e-mail",
    "public_url": "public URL",
    "revocation_urls": "revocation URLs in new certificates",
    "crl_days": "validity of each CRL",
}


def _changes(previous: ServerConfig | None, cfg: ServerConfig) -> tuple[str, ...]:
    if previous is None:
        return ()
    return tuple(
        label
        for name, label in _SETTING_LABELS.items()
        if getattr(previous, name) != getattr(cfg, name)
    )


def _old_files(paths: CAPaths) -> set[Path]:
    """The ``<root>.cer.old*`` and ``<root>.key.old*`` files now in the CA directory."""
    found: set[Path] = set()
    for path in (paths.cer, paths.key):
        found.update(paths.directory.glob(f"{path.name}.old*"))
    return found


def _no_certificates() -> Generator[IssuedCertificate, None, None]:
    yield from ()


def _no_rows() -> Generator[tuple[int, str, str, str], None, None]:
    yield from ()
