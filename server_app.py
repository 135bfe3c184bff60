"""CA server administration and service: see `python server_app.py --help`."""

from pki_soap.cli.server_app import main

if __name__ == "__main__":
    raise SystemExit(main())
