"""``server_app.py portal-password``: set the management portal's administrator password."""

from __future__ import annotations

import argparse
import sys

from pki_soap.cli import Commands
from pki_soap.cli.admin import add_password_file
from pki_soap.cli.passwords import Prompt, read_password
from pki_soap.server.datadir import open_data_directory

ENV_VARIABLE = "PKI_PORTAL_PASSWORD"


def add_commands(commands: Commands) -> None:
    """Add ``portal-password``."""
    parser = commands.add("portal-password", "set the web portal's administrator password", _run)
    add_password_file(parser, "the portal password", ENV_VARIABLE)


def _run(args: argparse.Namespace) -> int:
    """Set the password that signs in to the web portal (/pki/). It is stored as an Argon2
    hash in portal.json (mode 0600) in the data directory; setting a new one signs out every
    open portal session. The password is read from --password-file, else from the
    environment variable PKI_PORTAL_PASSWORD, else asked for twice.
    """
    # Imported here: the portal's modules take about half a second to import, which the
    # other commands need not pay.
    from pki_soap.portal.auth import PASSWORD_MIN_LENGTH, set_password

    prompt = Prompt(
        f"New portal password (at least {PASSWORD_MIN_LENGTH} characters): ",
        again="Type it again: ",
        differ="the two passwords differ; the password was not changed",
    )
    try:
        password = read_password(
            args.password_file,
            ENV_VARIABLE,
            prompt,
            missing=(
                f"no password given: use --password-file or the environment variable {ENV_VARIABLE}"
            ),
        )
        with open_data_directory(args.data_dir, create=True) as data:
            # An empty answer is refused by set_password, with the rule it breaks.
            path = set_password(args.data_dir, password or b"", store=data.store)
    except KeyboardInterrupt:
        print("error: interrupted; the password was not changed", file=sys.stderr)
        return 130
    print(f"Portal password set (Argon2 hash in {path}); open portal sessions are signed out.")
    return 0
