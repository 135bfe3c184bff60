"""Revoking certificates and re-signing the CRL, with the CA key given by the caller."""

from __future__ import annotations

from pki_soap.ca.keys import PrivateKey
from pki_soap.server.crl import Reason
from pki_soap.server.revocation import Refreshed, RevokeResult
from pki_soap.server.tasks.base import TaskBase


class RevokeTasks(TaskBase):
    """Revoke (or release a hold on) a certificate; refresh the CRL and the OCSP signer."""

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
                lambda notifier: notifier.certificate_revoked(result.certificate, recorded),
            )
        else:
            self._notify(
                "hold_released", lambda notifier: notifier.hold_released(result.certificate)
            )
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
