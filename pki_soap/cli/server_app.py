"""``server_app.py``: the CA administrator's commands (configure, review, issue, serve, ...).

Without a command it serves the configured CA (as ``serve``), or, on a data directory with no
CA configured, says how to configure one or start the demo.  Each command lives in the module
of its role (its ``add_commands`` adds it); this one builds the parser and runs the command.
Errors print one ``error: <message>`` line on stderr and exit with the error's code
(errors.py); argparse usage errors exit 2.  Warnings raised while a command runs (undelivered
e-mail, ...) are printed after its result.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pki_soap.cli import (
    Commands,
    admin,
    certificates,
    https_certificate,
    portal_password,
    recording,
    review,
    serve_options,
    setup,
    status,
    terminal,
)
from pki_soap.errors import NotConfigured, PkiError


def _serve(args: argparse.Namespace) -> int:
    """Serve PKI.CAServer at POST /isc/pki/PKI.CAServer.cls (WSDL: ?WSDL) and the portal at
    /pki/, with gunicorn gevent workers.
    """
    # Imported only to serve: spyne, gunicorn and the portal (cli/serve_options.py).
    from pki_soap.cli.serve import run_serve

    return run_serve(args)


_ADD_COMMANDS: tuple[Callable[[Commands], None], ...] = (
    setup.add_commands,
    review.add_commands,
    certificates.add_commands,
    status.add_commands,
    recording.add_commands,
    functools.partial(serve_options.add_commands, run=_serve),
    https_certificate.add_commands,
    portal_password.add_commands,
)
"""Each adds the commands of its module, in the order ``--help`` lists them."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``server_app.py`` command; return the process exit code.

    Raises:
        SystemExit: only from argparse (``--help``: 0, usage errors: 2).
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser, commands = build_parser()
    if not set(arguments) & {*commands.names, "-h", "--help"}:
        # No command is `serve`, with serve's options; with none at all and no CA to serve,
        # a newcomer learns how to make one instead of getting a bare warning.
        data_dir_only = argparse.ArgumentParser(add_help=False)
        data_dir_only.add_argument("--data-dir", type=Path, default=admin.DEFAULT_DATA_DIR)
        given, serve_options_given = data_dir_only.parse_known_args(arguments)
        try:
            if not serve_options_given and not admin.ca_configured(given.data_dir):
                return _explain_unconfigured(given.data_dir)
        except PkiError as exc:
            terminal.error(exc.message)
            return exc.exit_code
        arguments.insert(0, "serve")
    args = parser.parse_args(arguments)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        if args.command == "serve":  # runs until stopped: its warnings cannot wait
            return run(args)
        with terminal.warnings_after_result():
            return run(args)
    except PkiError as exc:
        terminal.error(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        print(file=sys.stderr)
        terminal.error("interrupted")
        return 130
    except EOFError:
        terminal.error("no answer (end of input); nothing was changed")
        return 1
    except OSError as exc:
        terminal.error(str(exc) or type(exc).__name__)
        return 1
    except Exception as exc:  # a bug: still one line, never a traceback
        terminal.error(f"unexpected {type(exc).__name__}: {exc}")
        return 1


def build_parser() -> tuple[argparse.ArgumentParser, Commands]:
    """The argparse parser of ``server_app.py``, and its commands.

    Each command's parser has a ``run`` default: the function that runs it.
    """
    prog = admin.program_name()
    parser = argparse.ArgumentParser(
        prog=prog,
        epilog=(
            "Without a command it serves the configured CA (as `serve`, with its options).\n"
            f"Every command takes --data-dir; `{prog} COMMAND --help` shows its options."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=admin.DEFAULT_DATA_DIR,
        metavar="DIR",
        help="data directory (default: ./pki-data)",
    )
    # Every subcommand accepts --data-dir too; SUPPRESS keeps the global value when absent.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS, metavar="DIR")
    commands = Commands(
        parser,
        "%(prog)s [-h] [--data-dir DIR] [COMMAND [options]]",
        parents=[common],
        dest="command",
        metavar="COMMAND",
    )
    for add_commands in _ADD_COMMANDS:
        add_commands(commands)
    parser.description = (
        "Certificate Authority server: administration and the SOAP service.\n\n"
        + commands.listing()
    )
    return parser, commands


def _explain_unconfigured(data_dir: Path) -> int:
    """What a newcomer needs when there is no CA to serve yet; NotConfigured's exit code."""
    prog = admin.program_name()
    prog = f"python {prog}" if prog == admin.PROG else prog
    where = "" if data_dir == admin.DEFAULT_DATA_DIR else f" --data-dir {data_dir}"
    print(
        f"No Certificate Authority is configured in {data_dir} yet. Configure one:\n"
        f'  {prog} configure{where} --root MyCA --dir CAServer --subject "/O=Example/CN=Example'
        ' CA" --ca-days 3650 --days 365\n'
        "(a new key and certificate; <root>.cer and <root>.key already in --dir are used), or\n"
        "start a throw-away demo CA, for testing only:\n"
        f"  {prog} serve{where} --demo\n"
        f"Then `{prog}{where}` serves it; `{prog} --help` lists every command."
    )
    terminal.error(f"no Certificate Authority is configured in {data_dir}")
    return NotConfigured.exit_code


if __name__ == "__main__":  # serve's renewal process: python -m pki_soap.cli.server_app
    raise SystemExit(main())
