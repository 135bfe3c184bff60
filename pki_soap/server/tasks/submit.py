"""Submitting a CSR: the checks every front end shares, the limits, the pending requests."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509

from pki_soap import messages
from pki_soap.ca import fingerprints, names, policy
from pki_soap.ca.csr import csr_pem, load_csr
from pki_soap.errors import (
    InvalidField,
    InvalidInput,
    MissingField,
    TooManyRequests,
    UnknownRequest,
)
from pki_soap.server.tasks.base import TaskBase, check_text, given_or_none, is_given
from pki_soap.store import PendingRequest


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


class SubmitTasks(TaskBase):
    """SubmitCSR, and the administrator's view of the pending requests."""

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
            if not is_given(value):
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
            check_text(field, value)
        check_text("Contents", contents, allowed="\n")
        names.check_root(req.filename)
        email = given_or_none(req.contact_email)
        # Something that tries to be an address must be exactly one.  A value without any
        # "@" is kept as IRIS keeps it, and never mailed: the real wget client fills this
        # field with the contact's name (shared/real-clients/01).
        if email is not None and "@" in email and not names.is_email_address(email.strip()):
            raise InvalidField("ContactEmail must be one e-mail address such as jane@example.com")
        name = req.name if is_given(req.name) else f"{req.hostname}:{req.instance}:{req.filename}"
        check_text("Name", name)
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
                    contact_phone=given_or_none(req.contact_phone),
                    contact_email=None if email is None else email.strip(),
                    received=now,
                )
            )
            if counted_as is not None and limits is not None and limits.per_address:
                self.store.record_submission(counted_as, now, forget_before=now - limits.window)
        self._notify(
            "request_received", lambda notifier: notifier.request_received(stored, fingerprint)
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
        with contextlib.suppress(UnknownRequest):
            return self.store.request(text)
        fits = [r for r in self.store.requests() if r.filename == text or r.name.startswith(text)]
        if len(fits) == 1:
            return fits[0]
        if not fits or not text:
            raise UnknownRequest(f'no pending Certificate Signing Request "{text}"')
        listed = ", ".join(r.name for r in fits[:10]) + (", ..." if len(fits) > 10 else "")
        raise InvalidInput(
            f'"{text}" fits {len(fits)} pending requests ({listed}); give more of the Name'
        )


def _fingerprint_if_readable(contents: str) -> str:
    """The SHA-1 fingerprint of a CSR stored unchecked, or a note that it cannot be read."""
    try:
        csr = x509.load_pem_x509_csr(contents.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return "(none: the request is not a readable PEM CSR)"
    return fingerprints.fingerprint(csr)
