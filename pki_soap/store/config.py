"""The one-row configurations of the CA server and the CA client, and the server's settings."""

from __future__ import annotations

from pki_soap.store.database import Database
from pki_soap.store.records import ClientConfig, ServerConfig


class ConfigTables(Database):
    """``server_config``, ``client_config`` and ``settings``."""

    def server_config(self) -> ServerConfig | None:
        """The CA server's configuration, or None before it is configured."""
        row = self._fetchone(
            "SELECT root, directory, days, instance, node, smtp_server, smtp_port, smtp_user,"
            " smtp_password, admin_email, public_url, revocation_urls, crl_days"
            " FROM server_config WHERE id = 1"
        )
        if row is None:
            return None
        cfg = ServerConfig(*row[:11])
        cfg.revocation_urls, cfg.crl_days = bool(row[11]), row[12]
        return cfg

    def save_server_config(self, cfg: ServerConfig) -> None:
        """Store ``cfg`` as the CA server's configuration, replacing any previous one."""
        self._execute(
            "INSERT OR REPLACE INTO server_config (id, root, directory, days, instance, node,"
            " smtp_server, smtp_port, smtp_user, smtp_password, admin_email, public_url,"
            " revocation_urls, crl_days) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cfg.root,
                cfg.directory,
                cfg.days,
                cfg.instance,
                cfg.node,
                cfg.smtp_server,
                cfg.smtp_port,
                cfg.smtp_user,
                cfg.smtp_password,
                cfg.admin_email,
                cfg.public_url,
                int(cfg.revocation_urls),
                cfg.crl_days,
            ),
        )

    def client_config(self) -> ClientConfig | None:
        """The CA client's configuration, or None before it is configured."""
        row = self._fetchone(
            "SELECT server, port, path, contact_name, contact_phone, contact_email, hostname,"
            " instance, tls FROM client_config WHERE id = 1"
        )
        if row is None:
            return None
        *fields, tls = row
        cfg = ClientConfig(*fields)
        cfg.tls = bool(tls)
        return cfg

    def save_client_config(self, cfg: ClientConfig) -> None:
        """Store ``cfg`` as the CA client's configuration, replacing any previous one."""
        self._execute(
            "INSERT OR REPLACE INTO client_config (id, server, port, path, contact_name,"
            " contact_phone, contact_email, hostname, instance, tls)"
            " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cfg.server,
                cfg.port,
                cfg.path,
                cfg.contact_name,
                cfg.contact_phone,
                cfg.contact_email,
                cfg.hostname,
                cfg.instance,
                int(cfg.tls),
            ),
        )

    # -- settings -----------------------------------------------------------------------------

    def setting(self, name: str) -> str | None:
        """The setting ``name`` (see pki_soap.cli.server_app ``settings``), or None when unset."""
        row = self._fetchone("SELECT value FROM settings WHERE name = ?", (name,))
        return None if row is None else str(row[0])

    def save_setting(self, name: str, value: str | None) -> None:
        """Set the setting ``name``; None removes it (back to its default)."""
        if value is None:
            self._execute("DELETE FROM settings WHERE name = ?", (name,))
        else:
            self._execute(
                "INSERT OR REPLACE INTO settings (name, value) VALUES (?, ?)", (name, value)
            )
