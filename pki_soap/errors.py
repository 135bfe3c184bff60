"""The one error tree of pki-soap, translated once at each boundary.

Each class knows the SOAP fault side it becomes on the wire (``Client`` is
answered with HTTP 400 and ``Server`` with HTTP 500, as IRIS does), the error
number written in the IRIS-style detail text (``ERROR #<n>: <message>``), and
the exit code the command-line programs return.  The client maps a fault back
to the same class through the error number (:func:`error_for_number`).

    PkiError                      Server  5001  exit 1
    ├── InvalidInput              Client  8100  exit 2
    │   ├── InvalidRoot           Client  8101
    │   ├── InvalidSubject        Client  8102
    │   ├── InvalidCsr            Client  8103
    │   │   ├── UnacceptableKey   Client  8104
    │   │   └── PolicyViolation   Client  8105  (what we do not sign: wildcards, IPs, names)
    │   ├── InvalidField          Client  7201  (IRIS: value longer than MAXLEN)
    │   ├── MissingField          Client  5659  (IRIS: property required)
    │   └── BadSoapRequest        Client  6237  (IRIS: unexpected tag, bad envelope)
    ├── DuplicateRequest          Server  5805  exit 7  (IRIS: ID key not unique)
    ├── TooManyRequests           Server  8140  exit 1  (a submission limit was reached)
    ├── NotFound                  Server  8110  exit 3
    │   ├── UnknownRequest        Server  8111
    │   └── UnknownCertificate    Server  8112
    ├── NotConfigured             Server  8120  exit 4
    ├── CAFileError               Server  8121  exit 4
    ├── WrongPassword             Server  8122  exit 5
    ├── StoreUnavailable          Server  8123  exit 1  (disk full, read-only database)
    └── ServerUnreachable         Server  8130  exit 6  (client side only)
        └── UntrustedServer       Server  8131  exit 8  (client side only: TLS, CA pin)

Numbers 5001, 5659, 5805, 6237 and 7201 are the IRIS ones for the same
situations; the 81xx numbers are ours (IRIS clients only show the faultstring).
"""

from __future__ import annotations


class PkiError(Exception):
    """Base of every error pki-soap raises on purpose."""

    fault_side = "Server"
    error_number = 5001
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def detail_text(self) -> str:
        """The IRIS ``%Status`` text written inside a fault's ``<detail>``."""
        return f"ERROR #{self.error_number}: {self.message}"


class InvalidInput(PkiError):
    """Something the caller sent is not acceptable; nothing was stored."""

    fault_side = "Client"
    error_number = 8100
    exit_code = 2


class InvalidRoot(InvalidInput):
    """A file-name root breaks the rules (letters, digits, ``-``, ``_``; not ``cache``)."""

    error_number = 8101


class InvalidSubject(InvalidInput):
    """A subject distinguished name is empty or malformed."""

    error_number = 8102


class InvalidCsr(InvalidInput):
    """A certificate signing request is not one valid, correctly signed PEM CSR."""

    error_number = 8103


class UnacceptableKey(InvalidCsr):
    """A public key is too weak or of a kind the CA does not certify."""

    error_number = 8104


class PolicyViolation(InvalidCsr):
    """The CSR asks for something the issuance policy never signs (pki_soap.ca.policy)."""

    error_number = 8105


class InvalidField(InvalidInput):
    """A field is too long or holds characters it may not hold."""

    error_number = 7201


class MissingField(InvalidInput):
    """A required field is absent or empty."""

    error_number = 5659


class BadSoapRequest(InvalidInput):
    """The SOAP envelope itself is unacceptable (bad XML, unknown action or tag)."""

    error_number = 6237


class DuplicateRequest(PkiError):
    """A pending CSR with the same Name exists (IRIS answers this with a Server fault)."""

    error_number = 5805
    exit_code = 7


class TooManyRequests(PkiError):
    """A submission limit was reached: rate per client address, or pending requests.

    A Server fault, as IRIS answers a request it cannot store; the message says which
    limit and what to do.
    """

    error_number = 8140


class NotFound(PkiError):
    """The named object does not exist."""

    error_number = 8110
    exit_code = 3


class UnknownRequest(NotFound):
    """No pending CSR has that Name."""

    error_number = 8111


class UnknownCertificate(NotFound):
    """No issued certificate has that number."""

    error_number = 8112


class NotConfigured(PkiError):
    """The CA server or client has not been configured yet."""

    error_number = 8120
    exit_code = 4


class CAFileError(PkiError):
    """The CA's certificate or key file is missing, unreadable or inconsistent."""

    error_number = 8121
    exit_code = 4


class WrongPassword(PkiError):
    """A key could not be decrypted with the password given."""

    error_number = 8122
    exit_code = 5


class StoreUnavailable(PkiError):
    """The database cannot be written now (disk full, read-only); nothing was changed."""

    error_number = 8123


class ServerUnreachable(PkiError):
    """The CA server could not be reached or did not answer with SOAP.

    ``maybe_received`` is True when the request may have reached the server (no answer in
    time, or an answer we cannot read): a submission may then be stored there all the same.
    """

    error_number = 8130
    exit_code = 6

    def __init__(self, message: str, *, maybe_received: bool = False) -> None:
        super().__init__(message)
        self.maybe_received = maybe_received


class UntrustedServer(ServerUnreachable):
    """The CA server could not be trusted: its TLS certificate does not verify against the
    pinned CA certificate or does not name its host, or a CA certificate does not match the
    fingerprint given.  Nothing was sent (or nothing was saved)."""

    error_number = 8131
    exit_code = 8


def _all_classes() -> list[type[PkiError]]:
    found: list[type[PkiError]] = [PkiError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found


_BY_NUMBER: dict[int, type[PkiError]] = {cls.error_number: cls for cls in _all_classes()}


def error_for_number(number: int) -> type[PkiError]:
    """The class whose ``error_number`` is ``number``; :class:`PkiError` when unknown."""
    return _BY_NUMBER.get(number, PkiError)
