"""E-mail notifications: queued in the store's outbox, sent with smtplib, retried with back-off.

Every notice is written to the outbox table first and then tried at once, so a
down or misconfigured SMTP server never fails (or undoes) the operation that
caused the notice: the message waits in the outbox and :meth:`Notifier.deliver_due`
retries it with exponential back-off (the running server calls it periodically,
``server_app.py status --retry`` calls it by hand).

New CSRs reach the administrator as a digest: the first one after a quiet period
at once, then at most one message per :data:`DIGEST_INTERVAL` listing everything
that arrived meanwhile (queued by the retry pass), so a flood of submissions
cannot flood the administrator's mailbox through the CA's SMTP account.

Everything a SOAP client chose is a stranger's text here: each value is written
with :func:`pki_soap.escaping.for_mail_body` / ``for_mail_header``, and each
command we suggest quotes it with ``for_shell``, so a pasted line runs exactly
the command shown.

Exactly once: only the holder of an exclusive lock on ``pki.sqlite3.mail.lock``
(an ``flock``, so it works across threads and processes) sends, and it reads
which messages are due under that lock; a message is marked sent right after
the SMTP server accepted it, before ``QUIT``.  The only window left is a crash
between the server's ``250`` reply and that mark.  The ``Message-ID`` is stable
across attempts, so a receiving system can still drop such a duplicate.

Transport: SMTP on the configured port (25 by default; 465 means TLS from the
first byte), STARTTLS whenever the server offers it (the default SSL context,
optionally trusting an extra CA file: ``Notifier(cafile=...)``, which the
command line takes from the ``PKI_SMTP_CAFILE`` environment variable), and
``AUTH`` when a user and password are configured — never over an unencrypted
connection.
"""

from __future__ import annotations

import fcntl
import logging
import os
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from pki_soap.ca import names
from pki_soap.escaping import for_mail_body, for_mail_header, for_shell
from pki_soap.store import IssuedCertificate, Mail, PendingRequest, Revocation, ServerConfig, Store

log = logging.getLogger(__name__)

SMTP_CAFILE_ENV = "PKI_SMTP_CAFILE"
"""Environment variable the command line reads for an extra CA file trusted for the SMTP server."""

DEFAULT_SMTP_PORT = 25
IMPLICIT_TLS_PORT = 465
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=1)
RETRY_INTERVAL = 30.0
"""Seconds between two outbox passes of :meth:`Notifier.retry_until`."""
# How long a notice waits for another sender to finish before leaving the
# message to the next retry pass.
LOCK_WAIT = 30.0
DIGEST_INTERVAL = timedelta(minutes=5)
"""At most one new-CSR message to the administrator per this interval."""
DIGEST_DETAILED = 20
"""Requests a digest describes in full; the next ones get one line each."""
DIGEST_LISTED = 200
"""Requests a digest names at all; beyond, it only counts them."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def retry_delay(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure: 1, 2, 4 ... minutes, at most an hour."""
    exponent = min(max(attempts - 1, 0), 12)  # 2**12 minutes is far past the cap
    delay: timedelta = FIRST_RETRY * (2**exponent)
    return min(delay, LONGEST_RETRY)


class _DeliveryFailed(Exception):
    """Internal: one SMTP attempt failed; the text is what `status` shows."""


class Notifier:
    """The CA server's e-mail notices (configure, new CSR, issued, deleted) and their outbox."""

    def __init__(
        self,
        store: Store,
        *,
        cafile: Path | str | None = None,
        timeout: float = 10.0,
        clock: Callable[[], datetime] = _utc_now,
        deliver_now: bool = True,
        digest_interval: timedelta = DIGEST_INTERVAL,
    ) -> None:
        """Notices go through ``store``'s outbox; SMTP settings are read from its server config.

        ``cafile`` adds trust in the SMTP server's certificate (for a private
        CA or a self-signed server); ``timeout`` bounds every SMTP socket
        operation; ``clock`` gives "now" as an aware UTC datetime.
        ``deliver_now=False`` only queues each notice and wakes the retry thread
        (:meth:`start_retrying`): the SOAP service uses it so that a slow SMTP
        server never delays an answer.  ``digest_interval`` spaces the new-CSR
        messages to the administrator.

        Raises:
            Nothing.
        """
        self._store = store
        self._cafile = str(cafile) if cafile is not None else None
        self._timeout = timeout
        self._clock = clock
        self._deliver_now = deliver_now
        self._digest_interval = digest_interval
        self._wake = threading.Event()
        self.last_error: str | None = None
        """Why the most recent delivery attempt failed (None when it succeeded)."""

    # -- the notices -------------------------------------------------------

    def ca_configured(self, cfg: ServerConfig, fingerprint: str) -> str | None:
        """Send the configuration confirmation to the administrator.

        Returns the recipient when the message was queued (and normally
        delivered; see :attr:`last_error`), None when no SMTP server or no
        administrator address is configured.

        Raises:
            Nothing: delivery problems stay in the outbox.
        """
        if not cfg.smtp_server or not cfg.admin_email:
            return None
        where = _where(cfg)
        body = "\n".join(
            [
                f"The Certificate Authority server {where} has been configured.",
                "",
                f"CA certificate file:   {_ca_file(cfg)}",
                "Certificate Authority Certificate SHA-1 fingerprint:",
                f"  {fingerprint}",
                f"Issued certificates are valid for {cfg.days} days.",
                "",
                "This address receives a notice for every new Certificate Signing Request.",
                "Compare the fingerprint above with the one CA clients report when they",
                "download the CA certificate.",
            ]
        )
        self._notify(cfg.admin_email, "Certificate Authority server configured", body, cfg)
        return cfg.admin_email

    def request_received(self, req: PendingRequest, fingerprint: str) -> None:
        """Tell the administrator that a CSR arrived and how to process it.

        The arrival joins the next digest; the digest is queued now when none was in the
        last :data:`DIGEST_INTERVAL` (so a single request is told at once), else by a
        later :meth:`deliver_due` pass.

        Raises:
            Nothing: delivery problems stay in the outbox.
        """
        cfg = self._store.server_config()
        if cfg is None or not cfg.smtp_server or not cfg.admin_email:
            return
        self.last_error = None
        try:
            self._store.add_arrival(req, fingerprint)
            mail_id = self._queue_digest(cfg)
        except Exception as exc:  # a notice never fails the operation
            self.last_error = f"cannot queue the e-mail: {exc}"
            log.warning("new-request notice not queued: %s", exc)
            return
        if mail_id is not None:
            self._dispatch(mail_id, cfg.admin_email, cfg)

    def _queue_digest(self, cfg: ServerConfig) -> int | None:
        """Queue the new-CSR digest if one is due and something arrived; its mail id."""
        if not cfg.smtp_server or not cfg.admin_email:
            return None
        now = self._clock()
        with self._store.transaction():
            last = self._store.digest_sent()
            if last is not None and now - last < self._digest_interval:
                return None
            arrivals = self._store.take_arrivals()
            if not arrivals:
                return None
            subject, body = _digest(cfg, arrivals)
            mail_id = self._store.queue_mail(cfg.admin_email, subject, body)
            self._store.set_digest_sent(now)
        return mail_id

    def certificate_issued(self, cert: IssuedCertificate, req: PendingRequest) -> None:
        """Tell the request's contact that the certificate is ready for download.

        Raises:
            Nothing: delivery problems stay in the outbox.
        """
        cfg = self._store.server_config()
        if cfg is None or not cfg.smtp_server or not _mailable(req.contact_email):
            return
        body = "\n".join(
            [
                *_to_contact(req, "was approved by the Certificate Authority"),
                f"{_where(cfg)}.",
                "",
                f"Certificate number: {cert.number}",
                f"File name:          {for_mail_body(cert.filename)}",
                f"Subject:            {for_mail_body(cert.subject or req.subject or '(none)')}",
                "",
                "Download it with the CA client:",
                f"  client_app.py get {cert.number}",
                "(or with the GetCertificate web method, number "
                f"{cert.number}), and the CA certificate with",
                "  client_app.py get-ca",
            ]
        )
        subject = for_mail_header(f'Certificate number {cert.number} issued for "{req.filename}"')
        self._notify(req.contact_email or "", subject, body, cfg)

    def request_deleted(self, req: PendingRequest) -> None:
        """Tell the request's contact that the request was not approved.

        Raises:
            Nothing: delivery problems stay in the outbox.
        """
        cfg = self._store.server_config()
        if cfg is None or not cfg.smtp_server or not _mailable(req.contact_email):
            return
        body = "\n".join(
            [
                *_to_contact(req, "was not approved: the Certificate Authority"),
                f"{_where(cfg)} deleted it without issuing a certificate.",
                "",
                "Please contact the Certificate Authority administrator"
                + (f" ({cfg.admin_email})" if cfg.admin_email else "")
                + " before submitting a new request.",
            ]
        )
        subject = for_mail_header(f'Certificate Signing Request "{req.filename}" not approved')
        self._notify(req.contact_email or "", subject, body, cfg)

    def certificate_revoked(self, cert: IssuedCertificate, revocation: Revocation) -> None:
        """Tell the certificate's contact it was revoked (or put on hold), when and why.

        Certificates issued before contacts were kept with them have no one to tell.

        Raises:
            Nothing: delivery problems stay in the outbox.
        """
        cfg = self._store.server_config()
        if cfg is None or not cfg.smtp_server or not cert.contact_email:
            return
        hold = revocation.reason == "certificateHold"
        body = "\n".join(
            [
                f"Dear {cert.contact_name or 'certificate holder'},",
                "",
                f"Certificate number {cert.number} (file name {cert.filename}, host "
                f"{cert.hostname}, instance {cert.instance})",
                f"was {'put on hold' if hold else 'revoked'} by the Certificate Authority "
                f"{_where(cfg)}.",
                "",
                f"Subject:         {cert.subject or '(none)'}",
                f"Revoked at:      {revocation.revoked:%Y-%m-%d %H:%M:%S} UTC",
                f"Reason:          {revocation.reason}",
                "",
                "Relying parties that check the CRL or ask the OCSP responder now refuse it."
                if not hold
                else "Relying parties refuse it until the hold is released.",
                "Please contact the Certificate Authority administrator"
                + (f" ({cfg.admin_email})" if cfg.admin_email else "")
                + " with any question, and submit a new request if you need a certificate.",
            ]
        )
        verb = "put on hold" if hold else "revoked"
        self._notify(cert.contact_email, f"Certificate number {cert.number} {verb}", body, cfg)

    def hold_released(self, cert: IssuedCertificate) -> None:
        """Tell the certificate's contact that its hold was released: it is valid again.

        Raises:
            Nothing: delivery problems stay in the outbox.
        """
        cfg = self._store.server_config()
        if cfg is None or not cfg.smtp_server or not cert.contact_email:
            return
        body = "\n".join(
            [
                f"Dear {cert.contact_name or 'certificate holder'},",
                "",
                f"The hold on certificate number {cert.number} (file name {cert.filename}, host",
                f"{cert.hostname}, instance {cert.instance}) was released by the Certificate",
                f"Authority {_where(cfg)}: it is valid again.",
            ]
        )
        subject = f"Certificate number {cert.number} valid again"
        self._notify(cert.contact_email, subject, body, cfg)

    # -- the outbox --------------------------------------------------------

    def deliver_due(self, *, everything: bool = False, wait: float = 0.0) -> int:
        """Try every outbox message whose next attempt is due; return how many were delivered.

        First queues the new-CSR digest if one is due (see :meth:`request_received`).
        ``everything=True`` ignores the back-off and tries every undelivered
        message now (``status --retry``: the administrator fixed the SMTP server).
        Safe to call from several threads or processes at once: only the holder
        of the outbox lock sends, and it reads what is due under that lock.  When
        another sender holds the lock this waits up to ``wait`` seconds for it
        (:data:`LOCK_WAIT` with ``everything=True``), then returns 0.  A sender
        that may have read the outbox before our message was queued holds it, so
        the retry thread waits rather than leaving the message to the next pass.

        Raises:
            Nothing: failures are recorded on the messages (and logged).
        """
        try:
            cfg = self._store.server_config()
            if cfg is not None:
                self._queue_digest(cfg)
        except Exception as exc:  # the retry loop must survive anything
            log.warning("e-mail outbox: new-request digest not queued: %s", exc)
        try:
            with self._outbox_lock(wait=LOCK_WAIT if everything else wait) as locked:
                if not locked:
                    return 0
                due = (
                    self._store.undelivered() if everything else self._store.due_mail(self._clock())
                )
                if not due:
                    return 0
                cfg = self._store.server_config()
                if cfg is None or not cfg.smtp_server:
                    # The SMTP server was removed from the configuration: keep the
                    # messages and tell `status` why they wait.
                    for mail in due:
                        self._failed(mail, "no SMTP server is configured")
                    return 0
                return self._deliver(cfg, due)
        except Exception as exc:  # the retry loop must survive anything
            self.last_error = str(exc)
            log.warning("e-mail outbox: retry failed: %s", exc)
            return 0

    def retry_until(self, stop: threading.Event, interval: float = RETRY_INTERVAL) -> None:
        """Call :meth:`deliver_due` every ``interval`` seconds, and at once when a notice
        is queued with ``deliver_now=False``, until ``stop`` is set (seen within ``interval``).

        Meant as the target of a daemon thread in the running server; give that
        thread a Notifier of its own.

        Raises:
            Nothing.
        """
        while not stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if not stop.is_set():
                self.deliver_due(wait=LOCK_WAIT)

    def start_retrying(self, interval: float = RETRY_INTERVAL) -> threading.Event:
        """Run :meth:`retry_until` in a daemon thread; set the returned event to stop it.

        For a server process (e.g. each gunicorn worker, after the fork): give it a
        Notifier on a Store opened in that process.

        Raises:
            Nothing.
        """
        stop = threading.Event()
        threading.Thread(
            target=self.retry_until, args=(stop, interval), name="pki-mail-retry", daemon=True
        ).start()
        return stop

    def _notify(self, recipient: str, subject: str, body: str, cfg: ServerConfig) -> None:
        self.last_error = None
        try:
            mail_id = self._store.queue_mail(recipient, subject, body)
        except Exception as exc:  # a notice never fails the operation
            self.last_error = f"cannot queue the e-mail: {exc}"
            log.warning("e-mail to %s not queued: %s", recipient, exc)
            return
        self._dispatch(mail_id, recipient, cfg)

    def _dispatch(self, mail_id: int, recipient: str, cfg: ServerConfig) -> None:
        """Send queued message ``mail_id`` now, or wake the retry thread to send it."""
        if not self._deliver_now:
            self._wake.set()
            return
        try:
            with self._outbox_lock(wait=LOCK_WAIT) as locked:
                if not locked:
                    self.last_error = "another process is sending e-mail; the message is queued"
                    return
                # Read back under the lock: a concurrent deliver_due may already have
                # sent it (or tried and scheduled a retry) between the queueing and now.
                mail = next(
                    (m for m in self._store.due_mail(self._clock()) if m.id == mail_id), None
                )
                if mail is not None:
                    self._deliver(cfg, [mail])
        except Exception as exc:  # a notice never fails the operation
            self.last_error = str(exc)
            log.warning("e-mail %d to %s stays queued: %s", mail_id, recipient, exc)

    @contextmanager
    def _outbox_lock(self, *, wait: float) -> Iterator[bool]:
        """Hold an flock on ``pki.sqlite3.mail.lock``; yield False if busy for ``wait`` s."""
        lock_path = Path(str(self._store.path) + ".mail.lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.05)
            yield True
        finally:
            os.close(fd)  # closing releases the lock

    def _deliver(self, cfg: ServerConfig, mails: list[Mail]) -> int:
        delivered = 0
        remaining = list(mails)
        try:
            with self._connection(cfg) as smtp:
                while remaining:
                    mail = remaining[0]
                    try:
                        smtp.send_message(self._message(cfg, mail))
                    except (
                        smtplib.SMTPRecipientsRefused,
                        smtplib.SMTPSenderRefused,
                        smtplib.SMTPDataError,
                    ) as exc:
                        # This message only (smtplib reset the transaction): the next one
                        # may still go through on the same connection.
                        remaining.pop(0)
                        self._failed(mail, _smtp_error_text(exc))
                        continue
                    remaining.pop(0)
                    self._store.mail_sent(mail.id)
                    delivered += 1
                    self.last_error = None
        except (_DeliveryFailed, smtplib.SMTPException, OSError) as exc:
            reason = _smtp_error_text(exc)
            for mail in remaining:
                self._failed(mail, reason)
        return delivered

    def _failed(self, mail: Mail, reason: str) -> None:
        self.last_error = reason
        attempts = mail.attempts + 1
        next_attempt = self._clock() + retry_delay(attempts)
        log.warning(
            "e-mail %d to %s not delivered (attempt %d, next at %s): %s",
            mail.id,
            mail.recipient,
            attempts,
            next_attempt.isoformat(timespec="seconds"),
            reason,
        )
        self._store.mail_failed(mail.id, reason, next_attempt)

    def _message(self, cfg: ServerConfig, mail: Mail) -> EmailMessage:
        message = EmailMessage()
        message["From"] = _sender(cfg)
        message["To"] = mail.recipient
        message["Subject"] = mail.subject
        message["Date"] = format_datetime(_utc_now())
        # Stable across retries, so a receiving system can drop a rare duplicate.
        message["Message-ID"] = f"<pki-soap.{mail.id}.{_created_stamp(mail)}@{_mail_domain(cfg)}>"
        message.set_content(mail.body)
        return message

    @contextmanager
    def _connection(self, cfg: ServerConfig) -> Iterator[smtplib.SMTP]:
        host = cfg.smtp_server or ""
        port = cfg.smtp_port or DEFAULT_SMTP_PORT
        context = ssl.create_default_context(cafile=self._cafile)
        smtp: smtplib.SMTP
        try:
            if port == IMPLICIT_TLS_PORT:
                smtp = smtplib.SMTP_SSL(host, port, timeout=self._timeout, context=context)
            else:
                smtp = smtplib.SMTP(host, port, timeout=self._timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise _DeliveryFailed(f"cannot connect to SMTP server {host}:{port}: {exc}") from exc
        try:
            smtp.ehlo()
            encrypted = port == IMPLICIT_TLS_PORT
            if not encrypted and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
                encrypted = True
            if cfg.smtp_user and cfg.smtp_password:
                if not encrypted:
                    raise _DeliveryFailed(
                        f"SMTP server {host}:{port} does not offer STARTTLS; "
                        "refusing to send the SMTP password unencrypted"
                    )
                smtp.login(cfg.smtp_user, cfg.smtp_password)
            yield smtp
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()


def _to_contact(req: PendingRequest, verdict: str) -> list[str]:
    """The opening lines of a notice to a request's contact: greeting, which request, verdict."""
    filename, hostname = for_mail_body(req.filename), for_mail_body(req.hostname)
    return [
        f"Dear {for_mail_body(req.contact_name)},",
        "",
        f'Your Certificate Signing Request "{filename}" (host {hostname},',
        f"instance {for_mail_body(req.instance)}) {verdict}",
    ]


def _mailable(address: str | None) -> bool:
    """A contact address we send to: exactly one valid address (a list, or a name, never)."""
    if not address:
        return False
    if names.is_email_address(address):
        return True
    log.info("no notice to %s: not one e-mail address", for_mail_header(address))
    return False


def _digest(cfg: ServerConfig, arrivals: list[tuple[PendingRequest, str]]) -> tuple[str, str]:
    """Subject and body of the administrator's new-CSR message for ``arrivals``."""
    if len(arrivals) == 1:
        req = arrivals[0][0]
        subject = f'New Certificate Signing Request "{req.filename}" from {req.hostname}'
        lines = [
            "A Certificate Signing Request was submitted to the Certificate Authority",
            f"{_where(cfg)}.",
        ]
    else:
        subject = f"{len(arrivals)} new Certificate Signing Requests"
        lines = [
            f"{len(arrivals)} Certificate Signing Requests were submitted to the Certificate",
            f"Authority {_where(cfg)} since the last notice.",
        ]
    lines += [
        "",
        "Verify each requester's identity and fingerprint with the contact (by phone or",
        "in person) before issuing a certificate.",
    ]
    for req, fingerprint in arrivals[:DIGEST_DETAILED]:
        name = for_shell(req.name)
        lines += [
            "",
            f"Request name:   {for_mail_body(req.name)}",
            f"Host name:      {for_mail_body(req.hostname)}",
            f"Instance:       {for_mail_body(req.instance)}",
            f"File name:      {for_mail_body(req.filename)}",
            f"Subject:        {for_mail_body(req.subject or '(none given)')}",
            f"Contact name:   {for_mail_body(req.contact_name)}",
            f"Contact phone:  {for_mail_body(req.contact_phone or '(none given)')}",
            f"Contact e-mail: {for_mail_body(req.contact_email or '(none given)')}",
            "SHA-1 fingerprint of the request:",
            f"  {for_mail_body(fingerprint)}",
            "Show it, issue it (or --usage intermediate, --usage codesign), or reject it:",
            for_mail_body(f"  server_app.py show {name}"),
            for_mail_body(f"  server_app.py issue {name} --usage tls"),
            for_mail_body(f"  server_app.py delete {name}"),
        ]
    rest = arrivals[DIGEST_DETAILED:]
    if rest:
        lines += ["", f"Also received ({len(rest)}; `server_app.py pending` lists them all):"]
        for req, fingerprint in rest[: DIGEST_LISTED - DIGEST_DETAILED]:
            lines.append(
                f"  {for_mail_body(req.name)}  from {for_mail_body(req.hostname)}"
                f"  SHA-1 {for_mail_body(fingerprint)}"
            )
        unnamed = len(rest) - (DIGEST_LISTED - DIGEST_DETAILED)
        if unnamed > 0:
            lines.append(f"  ... and {unnamed} more.")
    return for_mail_header(subject), "\n".join(lines)


def _where(cfg: ServerConfig) -> str:
    return f"at instance {cfg.instance} on node {cfg.node}"


def _ca_file(cfg: ServerConfig) -> str:
    return str(Path(cfg.directory) / f"{cfg.root}.cer")


def _mail_domain(cfg: ServerConfig) -> str:
    if cfg.admin_email and "@" in cfg.admin_email:
        return cfg.admin_email.rsplit("@", 1)[1]
    return cfg.node or socket.getfqdn()


def _sender(cfg: ServerConfig) -> str:
    # Replies to a notice should reach the CA administrator.
    if cfg.admin_email:
        return cfg.admin_email
    return f"pki-ca@{_mail_domain(cfg)}"


def _created_stamp(mail: Mail) -> str:
    created = mail.created
    return created.strftime("%Y%m%d%H%M%S") if isinstance(created, datetime) else "0"


def _smtp_error_text(exc: BaseException) -> str:
    """One line for `status`: what went wrong, with the SMTP reply when there is one."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        parts = [
            f"{recipient}: {code} {_decode(reply)}"
            for recipient, (code, reply) in exc.recipients.items()
        ]
        return "recipient refused: " + "; ".join(parts)
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP error {exc.smtp_code}: {_decode(exc.smtp_error)}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate of the SMTP server not trusted: {exc.verify_message}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "SMTP server did not answer in time"
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _decode(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())
