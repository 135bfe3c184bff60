"""``client_app.py show`` (and no command): where this client stands, and the next step."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from pki_soap.ca.fingerprints import sha256_fingerprint
from pki_soap.cli.client_commands import invocation, one_line, open_store
from pki_soap.client import configuration, overview
from pki_soap.escaping import for_terminal
from pki_soap.store import DATABASE_NAME


def show(args: argparse.Namespace) -> int:
    """Configuration, server, CA certificate, requests, next step."""
    data_dir: Path = args.data_dir
    cfg = None
    if (data_dir / DATABASE_NAME).is_file():  # looking must not create a data directory
        with open_store(args) as store:
            cfg = store.client_config()
    client = None
    if cfg is not None and (not cfg.tls or configuration.pinned_ca(data_dir) is not None):
        client = configuration.make_client(cfg, data_dir, timeout=args.timeout)
    with client or contextlib.nullcontext():
        seen = overview.overview(data_dir, cfg, client=client)
    for line in _overview_lines(seen, data_dir):
        print(for_terminal(line))
    return 0


def _overview_lines(seen: overview.Overview, data_dir: Path) -> list[str]:
    run = invocation()
    cfg = seen.config
    lines = [f"Certificate Authority client, data directory {data_dir}"]
    if cfg is None:
        lines += [
            "Configuration:   none yet",
            "",
            "Next step: say where the CA server is and who the technical contact is:",
            f'  {run} configure --server HOST --port 52773 --contact-name "Your Name"'
            " [--contact-email you@example.com]",
        ]
        return lines
    contact = ", ".join(x for x in (cfg.contact_phone, cfg.contact_email) if x)
    if seen.server_error is not None:
        answer = f"NO ANSWER: {one_line(seen.server_error)}"
    elif seen.server_ca is None:
        answer = "answers, but has no CA certificate (is the CA configured?)"
    else:
        answer = "answers"
    pinned = configuration.pinned_ca(data_dir)
    lines.append(f"CA server:       {seen.url} ({answer})")
    if pinned is not None:
        lines.append(
            f"Trust:           pinned CA certificate, SHA-256 {sha256_fingerprint(pinned)}"
        )
    elif cfg.tls:
        lines.append("Trust:           no CA certificate pinned yet (get-ca --fingerprint)")
    lines += [
        f"This client:     host {cfg.hostname}, instance {cfg.instance}",
        f"Contact:         {cfg.contact_name}" + (f" ({contact})" if contact else ""),
    ]
    if seen.ca_file is None:
        lines.append("CA certificate:  none saved")
    else:
        match = {True: "", False: " - NOT the server's CA certificate", None: ""}
        lines.append(
            f"CA certificate:  {seen.ca_file} (SHA-1 {seen.ca_fingerprint})"
            + match[seen.ca_matches]
        )
    lines += ["", "Requests and certificates:"]
    if not seen.requests:
        lines.append("  none")
    for req in seen.requests:
        lines.append(f"  {req.root}: " + _request_state(req, seen))
    lines += ["", "Next step: " + _next_step(seen, run, pinned is not None)]
    return lines


def _request_state(req: overview.LocalRequest, seen: overview.Overview) -> str:
    if req.certificate is not None:
        until = req.certificate.not_valid_after_utc.strftime("%Y-%m-%d")
        return f"certificate number {req.certificate.serial_number} saved, valid until {until}"
    if req.issued_number is not None:
        return f"issued as number {req.issued_number}, not saved yet"
    fp = f"CSR SHA-1 {req.csr_fingerprint}" if req.csr_fingerprint else "no readable CSR"
    if not req.has_key:
        return f"{fp}; its key is missing"
    if seen.server_error is not None:
        return f"{fp}; not issued as far as known"
    return f"{fp}; not issued yet (pending, or deleted by the CA administrator)"


def _next_step(seen: overview.Overview, run: str, pinned: bool) -> str:
    cfg = seen.config
    assert cfg is not None
    if cfg.tls and not pinned:
        return (
            "trust the CA certificate by the fingerprint the CA administrator gives you "
            f"(`server_app.py status` shows it): `{run} get-ca --fingerprint SHA256:...`."
        )
    if seen.server_error is not None:
        return (
            f"check that the CA server runs at {seen.url} and that port {cfg.port} is open to "
            f"this host (`{run} configure --server HOST --port PORT` fixes the address)."
        )
    if seen.server_ca is None:
        return "ask the CA administrator to configure the CA server, then run this again."
    if seen.ca_file is None or seen.ca_matches is False:
        force = " --force" if seen.ca_matches is False else ""
        return f"save the CA certificate: `{run} get-ca{force}`."
    ready = [r for r in seen.requests if r.certificate is None and r.issued_number is not None]
    if ready:
        return f"save your certificate: `{run} get {ready[0].issued_number}`."
    waiting = [r for r in seen.requests if r.certificate is None and r.has_key]
    if waiting:
        root = waiting[0].root
        return (
            "read the CSR's SHA-1 fingerprint to the CA administrator and wait for the "
            f"certificate (`{run}` again shows it); if the request was deleted: "
            f"`{run} submit --root {root} --resubmit`."
        )
    if not seen.requests:
        return (
            f'request a certificate: `{run} submit --root NAME --subject "/CN={cfg.hostname}"'
            f" --san DNS:{cfg.hostname}`."
        )
    return f"nothing to do; `{run} list --all` shows every certificate of the CA."
