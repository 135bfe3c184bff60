"""Both ends of a mutually authenticated TLS connection made with certificates our CA issued.

    python tls_peer.py serve   --cert C --key K --ca CA --host H --port P --count N --ready-file F
    python tls_peer.py connect --cert C --key K [--key-password-file F] --ca CA --host H --port P
                               --server-name NAME

The server requires a client certificate signed by the CA and answers each connection with a
JSON line naming the client certificate's subject; the client checks the server certificate
against the CA certificate *and* the host name or IP address given as --server-name, and prints
one JSON object: the server's certificate subject and the server's answer, or the error.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

TIMEOUT = 20.0


def _subject(cert: dict[str, Any]) -> dict[str, str]:
    return {key: value for rdn in cert.get("subject", ()) for key, value in rdn}


def serve(args: argparse.Namespace) -> int:
    """Answer ``--count`` TLS connections (failed handshakes count too), then exit."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.load_verify_locations(cafile=args.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    with socket.create_server((args.host, args.port)) as listener:
        listener.settimeout(TIMEOUT)
        # Written only once the socket listens, so the test knows when to connect.
        Path(args.ready_file).write_text("ready\n")
        for _ in range(args.count):
            conn, _address = listener.accept()
            conn.settimeout(TIMEOUT)
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    peer = tls.getpeercert() or {}
                    answer = {"client_subject": _subject(peer), "version": tls.version()}
                    tls.sendall(json.dumps(answer).encode() + b"\n")
            except (ssl.SSLError, OSError) as exc:
                print(f"handshake failed: {exc}", file=sys.stderr)
                conn.close()
    return 0


def connect(args: argparse.Namespace) -> int:
    """Connect, verify the server by CA and name, present our certificate, print the outcome."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    context.load_verify_locations(cafile=args.ca)
    password = Path(args.key_password_file).read_bytes() if args.key_password_file else None
    context.load_cert_chain(args.cert, args.key, password=password)
    try:
        with socket.create_connection((args.host, args.port), timeout=TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname=args.server_name) as tls:
                server_subject = _subject(tls.getpeercert() or {})
                answer = tls.makefile("rb").readline()
    except ssl.SSLCertVerificationError as exc:
        print(json.dumps({"error": "verify", "reason": exc.verify_message}))
        return 1
    print(json.dumps({"server_subject": server_subject, "server_answer": json.loads(answer)}))
    return 0


def main(argv: list[str]) -> int:
    """Parse the command line and run one end."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["serve", "connect"])
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--key-password-file")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--ready-file")
    parser.add_argument("--server-name")
    args = parser.parse_args(argv)
    return serve(args) if args.role == "serve" else connect(args)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
