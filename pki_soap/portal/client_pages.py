"""The Certificate Authority client's pages: configure, submit a CSR, get certificates."""

from __future__ import annotations

from pathlib import Path

from werkzeug.wrappers import Response

from pki_soap import messages
from pki_soap.ca import fingerprints, names
from pki_soap.client import configuration, fetching, submission
from pki_soap.client.soap_client import CertificateRow
from pki_soap.errors import InvalidRoot, PkiError
from pki_soap.portal import forms
from pki_soap.portal.app import FormErrors, Page, Portal, form_values

DEFAULT_PATH = "/isc/pki/PKI.CAServer.cls"
CONFIGURE_FIELDS = (
    "server", "port", "path", "contact_name", "contact_phone", "contact_email", "hostname",
    "instance",
)  # fmt: skip
SUBMIT_FIELDS = ("root", "key_type", *forms.SUBJECT_NAMES, "sans")


def register(portal: Portal) -> None:
    """Add the CA client's pages to ``portal``."""
    portal.add_page("/client/configure", "client_configure", configure, methods=("GET", "POST"))
    portal.add_page("/client/submit", "client_submit", submit, methods=("GET", "POST"))
    portal.add_page(
        "/client/ca-certificate", "client_ca_certificate", ca_certificate, methods=("GET", "POST")
    )
    portal.add_page(
        "/client/certificates", "client_certificates", certificates, methods=("GET", "POST")
    )
    portal.add_page("/client/files/<name>", "client_file", saved_file, methods=("GET",))


def configure(page: Page) -> Response:
    """Configure the CA client: where the CA server is, and who the technical contact is."""
    store = page.store
    errors = FormErrors()
    result = None
    if page.request.method == "GET":
        current = store.client_config()
        values = dict.fromkeys(CONFIGURE_FIELDS, "")
        values["path"] = DEFAULT_PATH
        if current is not None:
            for name in CONFIGURE_FIELDS:
                value = getattr(current, name, None)
                values[name] = "" if value is None else str(value)
        tls = current is not None and current.tls
    else:
        form = page.request.form
        values = form_values(form, CONFIGURE_FIELDS)
        tls = form.get("tls") == "yes"
        for name in ("server", "path", "contact_name"):
            if not values[name]:
                errors.add(name, "Required.")
        if (
            values["server"]
            and not names.is_hostname(values["server"])
            and not _is_address(values["server"])
        ):
            errors.add("server", "Enter a host name or an IP address.")
        if values["path"] and not values["path"].startswith("/"):
            errors.add("path", "The path starts with '/', such as " + DEFAULT_PATH + ".")
        port = forms.read_number(
            form, "port", errors, required=True, high=65535, what="a port number"
        )
        if values["contact_email"] and not names.is_email_address(values["contact_email"]):
            errors.add("contact_email", "Enter an e-mail address such as someone@example.com.")
        if not errors and port is not None:
            try:
                configuration.configure(
                    store,
                    server=values["server"],
                    port=port,
                    path=values["path"],
                    contact_name=values["contact_name"],
                    # The form shows every setting: an emptied field removes it.
                    contact_phone=values["contact_phone"],
                    contact_email=values["contact_email"],
                    hostname=values["hostname"] or None,
                    instance=values["instance"] or None,
                    tls=tls,
                )
            except PkiError as exc:
                errors.add(_field_named_in(exc, CONFIGURE_FIELDS), forms.sentence(exc.message))
            else:
                result = messages.client_configured()
                saved = store.client_config()
                if saved is not None:
                    values["hostname"], values["instance"] = saved.hostname, saved.instance
    return page.render_form(
        "client_configure.html",
        errors,
        values=values,
        tls=tls,
        result=result,
    )


def _is_address(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _field_named_in(exc: PkiError, fields: tuple[str, ...]) -> str | None:
    """The form field an error message names (``contact_name`` for "contact name ..."), if any."""
    text = exc.message.lower().replace("_", " ")
    for name in fields:
        if name.replace("_", " ") in text:
            return name
    return None


def submit(page: Page) -> Response:
    """Generate a key pair and a CSR, save them, and submit the CSR to the CA server."""
    store = page.store
    errors = FormErrors()
    result = None
    config = store.client_config()
    if page.request.method == "GET":
        values = dict.fromkeys(SUBMIT_FIELDS, "")
        values["key_type"] = "rsa2048"
        if config is not None:
            values["common_name"] = config.hostname
    else:
        form = page.request.form
        values = form_values(form, SUBMIT_FIELDS)
        root = forms.read_root(form, "root", errors)
        password = forms.read_new_password(form, "password", errors, required=False)
        key_type = forms.read_key_type(form, "key_type", errors)
        subject = forms.read_subject(form, errors, required=True)
        sans = []
        if values["sans"]:
            try:
                sans = names.parse_sans(values["sans"])
            except PkiError as exc:
                errors.add("sans", forms.sentence(exc.message))
        if config is None:
            errors.add(None, "Configure the Certificate Authority client first.")
        if not errors and root is not None and subject is not None:
            try:
                result = submission.submit(
                    store,
                    page.data_dir,
                    root=root,
                    subject=subject,
                    password=password,
                    key_type=key_type,
                    sans=sans,
                )
            except InvalidRoot as exc:
                errors.add("root", forms.sentence(exc.message))
            except PkiError as exc:
                errors.add(None, forms.sentence(exc.message))
    return page.render_form(
        "client_submit.html",
        errors,
        values=values,
        result=result,
        configured=config is not None,
    )


def ca_certificate(page: Page) -> Response:
    """Get the CA certificate from the CA server into the data directory (and pin it when a
    fingerprint is given)."""
    result = None
    saved: str | None = None
    errors = FormErrors()
    values = {"fingerprint": ""}
    if page.request.method == "POST":
        values = form_values(page.request.form, ("fingerprint",))
        expected = None
        if values["fingerprint"]:
            try:
                expected = fingerprints.parse_fingerprint(values["fingerprint"])
            except PkiError as exc:
                errors.add("fingerprint", forms.sentence(exc.message))
        if not errors:
            try:
                path, fingerprint = fetching.get_ca_certificate(
                    page.store,
                    page.data_dir,
                    force=page.request.form.get("force") == "yes",
                    expected=expected,
                )
            except PkiError as exc:
                errors.add(None, _portal_wording(exc))
            else:
                result = messages.ca_certificate_saved(fingerprint, path)
                saved = path.name
    config = page.store.client_config()
    pinned = configuration.pinned_ca(page.data_dir)
    return page.render_form(
        "client_ca_certificate.html",
        errors,
        values=values,
        result=result,
        saved=saved,
        configured=config is not None,
        tls=config is not None and config.tls,
        pinned=fingerprints.sha256_fingerprint(pinned) if pinned is not None else None,
    )


def certificates(page: Page) -> Response:
    """List the CA's certificates (all, or this instance's); POST saves one in the data dir."""
    store = page.store
    config = store.client_config()
    show_all = page.request.values.get("show", "all") != "mine"
    errors = FormErrors()
    result = None
    saved: str | None = None
    if page.request.method == "POST":
        number_text = page.request.form.get("number", "").strip()
        if not number_text.isdigit():
            errors.add(None, "Choose a certificate to get.")
        else:
            try:
                path, fingerprint, number = fetching.get_certificate(
                    store,
                    page.data_dir,
                    int(number_text),
                    force=page.request.form.get("force") == "yes",
                )
            except PkiError as exc:
                errors.add(None, _portal_wording(exc))
            else:
                result = messages.certificate_saved(number, fingerprint, path)
                saved = path.name
    rows: list[CertificateRow] = []
    if config is not None:
        try:
            rows = fetching.list_certificates(store, page.data_dir, all=show_all)
        except PkiError as exc:
            errors.add(None, _portal_wording(exc))
    return page.render_form(
        "client_certificates.html",
        errors,
        rows=rows,
        show_all=show_all,
        result=result,
        saved=saved,
        config=config,
    )


def saved_file(page: Page, name: str) -> Response:
    """A certificate the client saved in the data directory, for saving through the browser."""
    stem, dot, suffix = name.rpartition(".")
    try:
        names.check_root(stem)
    except InvalidRoot:
        return _not_found(name)
    if not dot or suffix != "cer":
        return _not_found(name)
    path = Path(page.data_dir) / name
    try:
        contents = path.read_bytes()
    except OSError:
        return _not_found(name)
    response = Response(contents, mimetype="application/x-pem-file")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _not_found(name: str) -> Response:
    return Response(f"No saved certificate file {name!r}.\n", status=404, mimetype="text/plain")


def _portal_wording(exc: PkiError) -> str:
    """The error as a sentence, naming the page's checkbox where the CLI names its option."""
    return forms.sentence(
        exc.message.replace("use --force to replace it", 'tick "replace an existing file"')
        .replace("use --force to pin this one instead", 'tick "replace" to pin this one instead')
        .replace("run get-ca --fingerprint with its fingerprint", "enter its fingerprint")
        .replace(
            "first run client_app.py get-ca --fingerprint SHA256:... with the fingerprint",
            "first enter, on the CA certificate page, the fingerprint",
        )
    )
