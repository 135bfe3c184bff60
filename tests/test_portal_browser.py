"""The portal end to end in headless Chromium: submit, process, download, verify with openssl,
then the SOAP exchanges that made (the server records them) on the Exchanges page.

The whole WSGI application (SOAP service and portal) runs in a werkzeug server thread on a
loopback port; the client pages talk SOAP to that same server, so one data directory is both
the CA server and the CA client, as one IRIS instance can be.  Screenshots of each step land
in the test's temporary directory; with ``UPDATE_PORTAL_SCREENSHOT=1`` the Process page's is
also copied to ``docs/portal-process.png`` (run it once when the page changes).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait
from werkzeug.serving import BaseWSGIServer, make_server

from pki_soap.portal.auth import set_password
from pki_soap.store import RecordLimits, Store
from pki_soap.wsgi import make_app
from tests.service_support import ACTION, iris_get_certificate, soap_post, wait_for_exchanges

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PORTAL_PASSWORD = "browser test password"
CA_PASSWORD = "ca key password 1"
REPO = Path(__file__).resolve().parents[1]
WAIT_SECONDS = 60  # an upper bound for slow CI machines, not a timing assertion


@pytest.fixture
def live_server(data_dir: Path) -> Iterator[str]:
    """The full application (SOAP + portal) on 127.0.0.1:<free port>; yields its base URL."""
    set_password(data_dir, PORTAL_PASSWORD.encode())
    app = make_app(data_dir, public_url="http://127.0.0.1", record=RecordLimits())
    # threaded: a portal page calls the SOAP endpoint of this same server while it answers.
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Debian Chromium through chromedriver (nothing is downloaded)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


class Steps:
    """Drives the pages and keeps a numbered screenshot of every step."""

    def __init__(self, driver: WebDriver, base: str, shots: Path) -> None:
        self.driver = driver
        self.base = base
        self.shots = shots
        self.count = 0
        shots.mkdir()

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def fill(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            element = self.driver.find_element(By.NAME, name)
            if element.tag_name == "select":
                Select(element).select_by_value(value)
            else:
                element.clear()
                element.send_keys(value)

    def press(self, label: str) -> None:
        """Click the button labelled ``label`` and wait for the next page."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.find_element(By.XPATH, f"//button[normalize-space()='{label}']").click()
        WebDriverWait(self.driver, WAIT_SECONDS).until(lambda d: _stale(old))

    def messages(self) -> list[str]:
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, ".message")]

    def field_errors(self) -> list[str]:
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, ".field-error")]

    def shot(self, name: str, *, full_page: bool = False) -> Path:
        self.count += 1
        path = self.shots / f"{self.count:02d}-{name}.png"
        if not full_page:
            self.driver.save_screenshot(str(path))
            return path
        # The whole page, below the fold too, through the DevTools protocol.
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            },
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def _stale(element: object) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

    try:
        _ = element.tag_name  # type: ignore[attr-defined]
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        # Chromium sometimes reports a replaced document this way instead of "stale".
        if "does not belong to the document" in str(exc):
            return True
        raise
    return False


def test_submit_process_download_verify(
    live_server: str, browser: WebDriver, data_dir: Path, tmp_path: Path
) -> None:
    steps = Steps(browser, live_server, tmp_path / "screenshots")
    port = live_server.rsplit(":", 1)[1]

    steps.open("/pki/")
    assert browser.current_url.endswith("/pki/login?next=/")
    steps.shot("login")
    steps.fill({"password": PORTAL_PASSWORD})
    steps.press("Sign in")
    assert browser.current_url == live_server + "/pki/"

    # The CA server, configured from its page with a new EC key pair.
    steps.open("/pki/server/configure")
    steps.fill({
        "root": "PortalCA", "directory": "CAServer", "password": CA_PASSWORD,
        "password_confirm": CA_PASSWORD, "country": "US", "organization": "Example",
        "common_name": "Portal Browser Test CA", "ca_days": "3650", "days": "365",
        "key_type": "ec256", "instance": "PKI", "node": "ca.example",
    })  # fmt: skip
    steps.press("Configure")
    (configured,) = steps.messages()
    assert configured.startswith("Certificate Authority server successfully configured.")
    steps.shot("server-configured", full_page=True)

    # The client of this same instance, pointed at the live server.
    steps.open("/pki/client/configure")
    steps.fill({
        "server": "127.0.0.1", "port": port, "contact_name": "Bob <Operator>",
        "contact_phone": "+1 555 0199", "contact_email": "bob@example.com",
        "hostname": "client.example", "instance": "IRIS",
    })  # fmt: skip
    steps.press("Configure")
    assert steps.messages() == ["Certificate Authority client successfully configured."]
    steps.shot("client-configured")

    # A field error first: the form comes back with what was typed (but no password).
    steps.open("/pki/client/submit")
    steps.fill({
        "root": "cache", "password": "client key pw", "password_confirm": "client key pw",
        "country": "US", "organization": "Example", "common_name": "web.example",
        "sans": "DNS:web.example,IP:127.0.0.1",
    })  # fmt: skip
    steps.press("Submit")
    assert steps.field_errors() == ["File name root may not be 'cache'."]
    assert browser.find_element(By.NAME, "common_name").get_attribute("value") == "web.example"
    assert browser.find_element(By.NAME, "password").get_attribute("value") == ""
    steps.shot("submit-error", full_page=True)
    steps.fill(
        {"root": "webserver", "password": "client key pw", "password_confirm": "client key pw"}
    )
    steps.press("Submit")
    (submitted,) = steps.messages()
    assert submitted.startswith("SHA-1 Fingerprint:\n")
    assert 'Certificate Signing Request "webserver"\nsuccessfully submitted' in submitted or (
        'Certificate Signing Request "webserver" successfully submitted' in submitted
    )
    csr_fingerprint = submitted.splitlines()[1].rstrip(",")
    steps.shot("submitted")
    assert (data_dir / "webserver.key").exists() and (data_dir / "webserver.csr").exists()

    # The administrator processes it: the page shows the fingerprint the requester read out.
    steps.open("/pki/server/requests")
    steps.shot("pending")
    browser.find_element(By.LINK_TEXT, "Process").click()
    assert csr_fingerprint in browser.find_element(By.CSS_SELECTOR, ".fingerprint").text
    page_text = browser.find_element(By.TAG_NAME, "main").text
    for expected in (
        "/C=US/O=Example/CN=web.example",
        "DNS:web.example, IP:127.0.0.1",
        "Bob <Operator>",
        "client.example",
        "RSA 2048",
        "Issued as TLS/SSL and XML security",
    ):
        assert expected in page_text
    process_shot = steps.shot("process", full_page=True)
    browser.find_element(By.CSS_SELECTOR, "input[name=usage][value=tls]").click()
    steps.fill({"password": "not the CA password"})
    steps.press("Issue certificate")
    assert len(steps.field_errors()) == 1
    assert browser.find_element(By.CSS_SELECTOR, "input[value=tls]").is_selected()
    steps.shot("issue-wrong-password", full_page=True)
    steps.fill({"password": CA_PASSWORD})
    steps.press("Issue certificate")
    assert steps.messages() == [
        "Certificate number 1 issued for Certificate Signing Request "
        '"client.example:IRIS:webserver"'
    ]
    steps.shot("issued")

    # The client gets the CA certificate and its own certificate into the data directory.
    steps.open("/pki/client/ca-certificate")
    steps.press("Get Certificate Authority certificate")
    (ca_saved,) = steps.messages()
    ca_file = data_dir / "PortalCA.cer"
    assert ca_saved.startswith("Certificate Authority Certificate (SHA-1 Fingerprint: ")
    assert ca_saved.endswith(f'saved in file "{ca_file}"')
    steps.shot("ca-certificate")
    steps.open("/pki/client/certificates?show=mine")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.list tbody tr")
    assert [row.find_element(By.TAG_NAME, "td").text for row in rows] == ["1"]
    steps.shot("client-certificates")
    steps.press("Get")
    (cert_saved,) = steps.messages()
    cert_file = data_dir / "webserver.cer"
    assert cert_saved.startswith("Certificate number 1 (SHA-1 Fingerprint: ")
    assert cert_saved.endswith(f'saved in file "{cert_file}"')
    steps.shot("certificate-saved")

    # The same file, saved through the browser as well.
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    browser.find_element(By.PARTIAL_LINK_TEXT, "Save webserver.cer").click()
    downloaded = downloads / "webserver.cer"
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda _: downloaded.exists() and not list(downloads.glob("*.crdownload"))
    )
    assert downloaded.read_bytes() == cert_file.read_bytes()

    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca_file), str(cert_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip() == f"{cert_file}: OK"

    # The SOAP exchanges behind those pages, recorded, and a stranger's one among them.
    hostile = "Evil/1.0 <script>alert(1)</script><img src=x onerror=alert(2)>"
    soap_post(
        live_server, iris_get_certificate("0"), ACTION + "GetCertificate",
        headers={"User-Agent": hostile},
    )  # fmt: skip
    WebDriverWait(browser, WAIT_SECONDS).until(
        lambda _: wait_for_exchanges(data_dir, 1)[0].user_agent == hostile
    )
    with Store.open(data_dir) as store:
        recorded = [str(e.id) for e in store.exchanges(100)]
    steps.open("/pki/server/exchanges")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.exchanges tbody tr")
    cells = [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]
    assert [row[0] for row in cells] == recorded
    methods = [row[4] for row in cells]
    assert {"SubmitCSR", "GetCertificate", "ListCertificates"} <= set(methods)
    assert cells[0][8] == hostile  # shown as text, newest first
    assert browser.find_elements(By.CSS_SELECTOR, "script, img") == []
    steps.shot("exchanges", full_page=True)
    rows[methods.index("SubmitCSR")].find_element(By.TAG_NAME, "a").click()
    request = browser.find_element(By.CSS_SELECTOR, "pre.wire.request").text
    assert "<ns0:ContactName>Bob &lt;Operator&gt;</ns0:ContactName>" in request
    assert "-----BEGIN CERTIFICATE REQUEST-----" in request
    toolkit = browser.find_element(By.CSS_SELECTOR, "ul.notes.toolkit").text
    assert "Toolkit: pki-soap client_app.py (zeep)." in toolkit
    assert "successfully submitted" in browser.find_element(By.CSS_SELECTOR, "pre.answer").text
    steps.shot("exchange", full_page=True)

    # Nothing on any page tripped the Content-Security-Policy.
    console = [entry["message"] for entry in browser.get_log("browser")]
    assert not [line for line in console if "Content Security Policy" in line], console

    steps.press("Sign out")
    assert "/pki/login" in browser.current_url

    if os.environ.get("UPDATE_PORTAL_SCREENSHOT") == "1":
        shutil.copyfile(process_shot, REPO / "docs" / "portal-process.png")
