"""CA client: see `python client_app.py --help`."""

from pki_soap.cli.client_app import main

if __name__ == "__main__":
    raise SystemExit(main())
