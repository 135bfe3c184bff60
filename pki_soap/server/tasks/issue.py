"""The administrator's decision on pending requests: issue their certificates, or delete them.

Crash safety lives here: a serial number is written durably to the serial file before it is
used, and a request is removed only in the transaction that stores its certificate, so a crash
leaves at most a gap in the numbers, never a number used twice or a request lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509

from pki_soap.ca import names
from pki_soap.ca.authority import CertificateAuthority, Usage, check_days
from pki_soap.ca.csr import cert_pem, csr_pem
from pki_soap.ca.keys import PrivateKey
from pki_soap.errors import InvalidCsr, InvalidInput, PkiError, UnknownRequest
from pki_soap.server.tasks.base import TaskBase
from pki_soap.store import IssuedCertificate, PendingRequest, ServerConfig


@dataclass(frozen=True)
class IssueResult:
    """What :meth:`CAServer.issue_many` did with one request: a certificate or an error."""

    name: str
    request: PendingRequest | None = None
    """The request as it was pending (None when it was not pending)."""
    certificate: IssuedCertificate | None = None
    error: PkiError | None = None
    """Why no certificate was issued: UnknownRequest, or the CSR's InvalidInput."""


class IssueTasks(TaskBase):
    """Issue certificates for pending requests (one, many, the server's own) or delete them."""

    def delete_request(self, name: str) -> PendingRequest:
        """Delete (reject) the pending CSR ``name``, notify its contact, return it.

        Raises:
            UnknownRequest: no pending CSR has that name.
        """
        removed = self.store.remove_request(name)
        self._notify("request_deleted", lambda notifier: notifier.request_deleted(removed))
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
        self._notify(
            "certificate_issued", lambda notifier: notifier.certificate_issued(issued, req)
        )
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
                    self._notify_issued(result.certificate, result.request)
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

    def _notify_issued(self, cert: IssuedCertificate, req: PendingRequest) -> None:
        self._notify("certificate_issued", lambda notifier: notifier.certificate_issued(cert, req))

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


def _stored_csr(req: PendingRequest) -> x509.CertificateSigningRequest:
    """Parse a stored CSR without checking it: ``sign`` checks it, once.

    Raises:
        InvalidCsr: the stored text is not a PEM CSR (a row written by hand).
    """
    try:
        return x509.load_pem_x509_csr(req.contents.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidCsr(f'the stored CSR of "{req.name}" is not readable: {exc}') from exc
