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

What each notice says is :mod:`pki_soap.server.notices`' business (a stranger's text made
safe there); how one SMTP session goes is :mod:`pki_soap.server.smtp`'s.

Exactly once: only the holder of an exclusive lock on ``pki.sqlite3.mail.lock``
(an ``flock``, so it works across threads and processes) sends, and it reads
which messages are due under that lock; a message is marked sent right after
the SMTP server accepted it, before ``QUIT``.  The only window left is a crash
between the server's ``250`` reply and that mark.  The ``Message-ID`` is stable
across attempts, so a receiving system can still drop such a duplicate.

An extra CA file trusted for the SMTP server is given as ``Notifier(cafile=...)``; the command
line takes it from the ``PKI_SMTP_CAFILE`` environment variable.
"""

from __future__ import annotations

import fcntl
import logging
import os
import smtplib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pki_soap.server import notices, smtp
from pki_soap.store import IssuedCertificate, Mail, PendingRequest, Revocation, ServerConfig, Store

log = logging.getLogger(__name__)

SMTP_CAFILE_ENV = "PKI_SMTP_CAFILE"
"""Environment variable the command line reads for an extra CA file trusted for the SMTP server."""

FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=1)
RETRY_INTERVAL = 30.0
"""Seconds between two outbox passes of :meth:`Notifier.retry_until`."""
# How long a notice waits for another sender to finish before leaving the
# message to the next retry pass.
LOCK_WAIT = 30.0
DIGEST_INTERVAL = timedelta(minutes=5)
"""At most one new-CSR message to the administrator per this interval."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


def retry_delay(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure: 1, 2, 4 ... minutes, at most an hour."""
    exponent = min(max(attempts - 1, 0), 12)  # 2**12 minutes is far past the cap
    delay: timedelta = FIRST_RETRY * (2**exponent)
    return min(delay, LONGEST_RETRY)


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
        self._notify(cfg.admin_email, *notices.configured(cfg, fingerprint), cfg)
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
            subject, body = notices.digest(cfg, arrivals)
            mail_id = self._store.queue_mail(cfg.admin_email, subject, body)
            self._store.set_digest_sent(now)
        return mail_id

    def certificate_issued(self, cert: IssuedCertificate, req: PendingRequest) -> None:
        """Tell the request's contact that the certificate is ready for download.

        Raises:
            Nothing: delivery problems stay in the outbox.
        """
        self._tell(req.contact_email, lambda cfg: notices.issued(cfg, cert, req))

    def request_deleted(self, req: PendingRequest) -> None:
        """Tell the request's contact that the request was not approved.

        Raises:
            Nothing: delivery problems stay in the outbox.
        """
        self._tell(req.contact_email, lambda cfg: notices.deleted(cfg, req))

    def certificate_revoked(self, cert: IssuedCertificate, revocation: Revocation) -> None:
        """Tell the certificate's contact it was revoked (or put on hold), when and why.

        Certificates issued before contacts were kept with them have no one to tell.

        Raises:
            Nothing: delivery problems stay in the outbox.
        """
        self._tell(cert.contact_email, lambda cfg: notices.revoked(cfg, cert, revocation))

    def hold_released(self, cert: IssuedCertificate) -> None:
        """Tell the certificate's contact that its hold was released: it is valid again.

        Raises:
            Nothing: delivery problems stay in the outbox.
        """
        self._tell(cert.contact_email, lambda cfg: notices.released(cfg, cert))

    def _tell(
        self, contact: str | None, compose: Callable[[ServerConfig], tuple[str, str]]
    ) -> None:
        """Queue (and send) the notice ``compose`` writes, if mail is set up and ``contact``
        is one address."""
        cfg = self._store.server_config()
        if cfg is None or not cfg.smtp_server or not notices.mailable(contact):
            return
        self._notify(contact, *compose(cfg), cfg)

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
            with smtp.session(cfg, cafile=self._cafile, timeout=self._timeout) as session:
                while remaining:
                    mail = remaining[0]
                    try:
                        session.send_message(smtp.message(cfg, mail))
                    except (
                        smtplib.SMTPRecipientsRefused,
                        smtplib.SMTPSenderRefused,
                        smtplib.SMTPDataError,
                    ) as exc:
                        # This message only (smtplib reset the transaction): the next one
                        # may still go through on the same connection.
                        remaining.pop(0)
                        self._failed(mail, smtp.error_text(exc))
                        continue
                    remaining.pop(0)
                    self._store.mail_sent(mail.id)
                    delivered += 1
                    self.last_error = None
        except (smtp.DeliveryFailed, smtplib.SMTPException, OSError) as exc:
            reason = smtp.error_text(exc)
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
