"""Configuring the CA server: its CA files, its settings, and starting anew."""

from __future__ import annotations

import dataclasses
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from pki_soap.ca import keys, names
from pki_soap.ca.authority import CertificateAuthority, check_days
from pki_soap.ca.ca_files import CAPaths
from pki_soap.ca.keys import KeyType
from pki_soap.ca.names import DEFAULT_INSTANCE
from pki_soap.errors import InvalidField, InvalidInput, MissingField
from pki_soap.escaping import has_control
from pki_soap.server import revocation
from pki_soap.server.tasks.base import TaskBase, check_text, is_given
from pki_soap.store import IssuedCertificate, ServerConfig


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


class ConfigureTasks(TaskBase):
    """Configure the CA (IRIS ``PKI.CAServer`` Configure) and reinitialize it."""

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
        if not is_given(directory):
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
        if is_given(admin_email) and not names.is_email_address((admin_email or "").strip()):
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
        check_text("Instance", cfg.instance)
        check_text("Hostname", cfg.node)
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
            "ca_configured", lambda notifier: notifier.ca_configured(cfg, authority.fingerprint)
        )
        return ConfigureResult(
            created=created,
            paths=paths,
            fingerprint=authority.fingerprint,
            mailed_to=mailed_to,
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

    def reinitialize(self) -> None:
        """Forget the configuration, pending CSRs and certificates; the CA files stay.

        The serial file is untouched, so numbering continues after a new configuration.
        """
        self.store.reinitialize()


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
            value = value if is_given(value) else None
        elif isinstance(value, str) and not is_given(value):
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
