"""The web pages in a real browser: Debian's headless Chromium driven by Selenium, against the app
served by uvicorn on 127.0.0.1 (as ``mailmigrate serve`` runs it) and real Dovecot.

Flows: sign in, fill in the one-off form (the provider named as the address is typed) and watch
the import reach "done" with the source's numbers; a running import (held by a proxy in front of
the new mailbox's server) shows live progress over Server-Sent Events and is cancelled; a bad CSV
shows its line errors; a folder and a subject written as markup stay text (no alert); the pages fit
a phone's width. Screenshots go to docs/screenshots/ when MM_SCREENSHOTS=1 or one is missing.

Needs /usr/bin/chromium and /usr/bin/chromedriver (``scripts/setup.sh --browser``): skipped
without them, except that MM_REQUIRE_BROWSER=1 (CI) makes that a failure."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests import test_service_pages as pages
from tests.support.proxy import FaultProxy
from tests.test_service_pages import (
    BATCH_HEADER,
    HOSTILE,
    make_app,
    refusing_target,
    seed,
    seed_hostile,
    source_fields,
    user,
)

home, srv = pages.home, pages.srv  # the same fixtures as the HTTP-level page tests

pytestmark = [pytest.mark.browser, pytest.mark.dovecot]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
WAIT_S = 60


def _require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install -e '.[dev]')")
    if not missing:
        return
    reason = f"headless Chromium unavailable: missing {', '.join(missing)} (scripts/setup.sh --browser)"
    if os.environ.get("MM_REQUIRE_BROWSER") == "1":  # CI installs it: missing is a broken setup
        pytest.fail(f"browser required (MM_REQUIRE_BROWSER=1) but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def driver():
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,800", "--lang=en-US"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    options.binary_location = CHROMIUM
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield browser
    browser.quit()


class LiveServer:
    """The app under uvicorn on 127.0.0.1 (a free port), in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="on", timeout_graceful_shutdown=5))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        assert not self.thread.is_alive()

    @property
    def service(self):
        return self.app.state.service


class Browser:
    """One test's view of the shared Chromium: its server, fresh cookies, waits on the DOM."""

    def __init__(self, driver, live: LiveServer) -> None:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.d, self.live, self.By = driver, live, By
        # A page that reloads itself (the end of an import) replaces the elements being read.
        self.wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.05,
                                  ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
        driver.set_window_size(1200, 800)

    def __enter__(self) -> Browser:
        self.open("/?lang=en")
        self.d.delete_all_cookies()  # another test's session (cookies ignore the port)
        self.open("/?lang=en")
        return self

    def __exit__(self, *exc) -> None:
        self.d.get("about:blank")  # closes the page's event stream before the server stops

    def open(self, path: str) -> None:
        self.d.get(self.live.url + path)

    def find(self, css: str):
        return self.d.find_element(self.By.CSS_SELECTOR, css)

    def all(self, css: str):
        return self.d.find_elements(self.By.CSS_SELECTOR, css)

    def type(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def state(self) -> str:
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException

        try:
            return self.find('#live [data-field="state"]').get_attribute("data-state")
        except StaleElementReferenceException:
            raise
        except WebDriverException as exc:
            # Chromium's words for a node the reloading page has just replaced: stale, read again.
            if "does not belong to the document" in str(exc):
                raise StaleElementReferenceException(str(exc)) from exc
            raise

    def wait_state(self, *states: str) -> str:
        return self.wait.until(lambda _d: (state := self.state()) in states and state)

    def total(self, key: str) -> int:
        return int(self.find(f'[data-total="{key}"]').text.replace(",", ""))

    def sign_in(self, u) -> None:
        self.type("#email", u.name)
        self.type("#password", u.password)
        self.find("form[action='/'] button[type=submit]").click()
        self.wait.until(lambda d: d.find_elements(self.By.ID, "import-form"))

    def fill_source(self, u, srv) -> None:
        fields = source_fields(u, srv)
        self.type("#source_email", fields["source_email"])
        self.type("#source_password", fields["source_password"])
        self.find("#source_email").find_element(self.By.XPATH, "ancestor::fieldset").find_element(
            self.By.CSS_SELECTOR, "details.advanced > summary").click()
        self.find("#source_provider option[value='imap']").click()
        self.type("#source_host", fields["source_host"])
        self.type("#source_port", fields["source_port"])
        self.find("#source_security option[value='none']").click()

    def start(self) -> str:
        self.find("#start-import").click()
        self.wait.until(lambda d: "/imports/" in d.current_url)
        return self.d.current_url.rsplit("/", 1)[1]

    def shot(self, name: str, *, whole_page: bool = False) -> None:
        """docs/screenshots/<name>.png when asked for (MM_SCREENSHOTS=1) or missing: CI leaves the tree alone."""
        path = SHOTS / f"{name}.png"
        if os.environ.get("MM_SCREENSHOTS") != "1" and path.exists():
            return
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.d.execute_script("document.activeElement.blur(); window.scrollTo(0, 0)")
        if whole_page:  # the window as tall as the page (plus the window's own frame)
            height = self.d.execute_script("return document.documentElement.scrollHeight"
                                           " + window.outerHeight - window.innerHeight")
            self.d.set_window_size(1200, max(800, min(int(height), 2400)))
        self.d.save_screenshot(str(path))
        self.d.set_window_size(1200, 800)

    def no_alert(self) -> None:
        from selenium.common.exceptions import NoAlertPresentException

        with pytest.raises(NoAlertPresentException):
            self.d.switch_to.alert.text  # noqa: B018 - reading it is what raises

    def fits(self, width: int) -> None:
        """The page needs no sideways scrolling at this window width."""
        self.d.set_window_size(width, 844)
        try:
            scroll, inner = self.d.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]")
            assert scroll <= inner, f"{self.d.current_url}: {scroll}px wide in a {inner}px window"
        finally:
            self.d.set_window_size(1200, 800)


def count_messages(u) -> int:
    with u.client() as c:
        return sum(c.folder_status(f, ["MESSAGES"])[b"MESSAGES"] for _fl, _d, f in c.list_folders())


def test_sign_in_fill_the_form_and_watch_the_import_finish(driver, home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed(src, 0)
    app = make_app(home, srv, google_client_id="test-client", google_client_secret="test-secret")
    with LiveServer(app) as live, Browser(driver, live) as b:
        b.shot("sign-in")
        b.fits(390)
        b.sign_in(alice)
        # the provider is named (with its hint) as the address is typed; Gmail offers its sign-in
        b.type("#source_email", "someone@gmx.net")
        b.wait.until(lambda _d: "GMX" in b.find("#source_provider-note").text)
        assert "POP3/IMAP" in b.find("#source_provider-note").text
        assert not b.find("[data-oauth-kind='google']").is_displayed()
        b.type("#source_email", "someone@gmail.com")
        b.wait.until(lambda _d: b.find("[data-oauth-kind='google']").is_displayed())
        assert "email=someone%40gmail.com" in b.find("[data-oauth-kind='google']").get_attribute("href")
        b.fill_source(src, srv)
        b.shot("import-form", whole_page=True)
        b.fits(390)
        job_id = b.start()
        assert b.wait_state("done") == "done"
        # At its end the live page reloads itself; load the finished page here, so that what
        # follows reads that page and never one being replaced.
        b.open(f"/imports/{job_id}")
        assert b.state() == "done"
        total = count_messages(src)
        assert total == 7
        b.wait.until(lambda _d: b.total("copied") == total)
        assert b.total("source_messages") == total and b.total("failed") == 0
        assert {c.text for c in b.all("#folders tbody td:first-child")} >= {"INBOX", "Archive"}
        assert b.find("#import-again").is_displayed() and not b.all("#cancel-import")
        b.shot("import-done", whole_page=True)
        b.fits(390)
        b.open("/imports")
        row = b.find(f'tr[data-import-id="{job_id}"]')
        assert row.find_element(b.By.CSS_SELECTOR, '[data-field="state"]').get_attribute("data-state") == "done"
        b.shot("imports")
        # the language switch
        b.open("/")
        b.find("a[hreflang='de']").click()
        b.wait.until(lambda d: d.find_element(b.By.TAG_NAME, "html").get_attribute("lang") == "de")
        assert b.find("h1").text == "Alte E-Mails übernehmen"
        b.shot("import-form-de")
        b.find("a[hreflang='en']").click()
        b.wait.until(lambda d: d.find_element(b.By.TAG_NAME, "html").get_attribute("lang") == "en")


def test_live_progress_then_cancel(driver, home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    # Bigger folders go first: INBOX is copied, Archive is held, Later is what the cancel saves.
    seed(src, 0, per_folder=(("INBOX", 40), ("Archive", 30), ("Later", 10)))
    proxy = FaultProxy("127.0.0.1", srv.port)
    proxy.hold_when(b' APPEND "Archive"')  # INBOX is copied, then the job waits at Archive
    with proxy, LiveServer(make_app(home, srv, target_port=proxy.port, connections=1)) as live, \
            Browser(driver, live) as b:
        try:
            b.sign_in(alice)
            b.fill_source(src, srv)
            job_id = b.start()
            # the page follows the job by itself (Server-Sent Events): INBOX's 40 of 80 messages
            b.wait.until(lambda _d: live.service.open_streams >= 1)
            b.wait.until(lambda _d: b.find('[data-field="messages"]').text.startswith("40 of 80"))
            assert b.state() == "running"
            assert 0 < int(b.find('[data-field="percent"]').text.rstrip("%")) < 100
            assert b.find('[data-field="folder"]').text == "Current folder: Archive"
            b.shot("import-progress", whole_page=True)
            b.find("#cancel-import").click()
            b.wait.until(lambda _d: b.all("#live .notice"))  # "Cancelling: ..."
            b.open("/imports")  # the list follows the states by itself too
            badge = f'tr[data-import-id="{job_id}"] [data-field="state"]'
            assert b.find(badge).get_attribute("data-state") == "running"
        finally:
            proxy.release()  # also when something above failed: the server can then stop
        b.wait.until(lambda _d: b.find(badge).get_attribute("data-state") == "cancelled")
        b.open(f"/imports/{job_id}")
        assert b.state() == "cancelled"
        assert 40 <= b.total("copied") < 80
        assert not b.all("#cancel-import")


def test_a_bad_csv_shows_its_line_errors(driver, home, srv, new_user, tmp_path):
    alice = user(new_user, srv, "a")
    bad = tmp_path / "mailboxes.csv"
    bad.write_text("\n".join([BATCH_HEADER,
                              f"old@example.net,pw,imap,127.0.0.1,{srv.port},none,,{alice.name},,,,,,,",
                              f"not-an-address,pw,imap,127.0.0.1,{srv.port},none,,{alice.name},,,,,,,",
                              "third@example.net,pw,nosuchprovider,,,,,someone.else@example.test,,,,,,,"]),
                   encoding="utf-8")
    with LiveServer(make_app(home, srv, jobs=0)) as live, Browser(driver, live) as b:
        b.sign_in(alice)
        b.find("nav.main-nav a[href='/batch']").click()
        b.wait.until(lambda d: d.find_elements(b.By.ID, "csv"))
        assert b.find("a[href='/batch.csv']").is_displayed()
        b.find("#csv").send_keys(str(bad))
        b.find("#start-batch").click()
        b.wait.until(lambda d: d.find_elements(b.By.ID, "batch-errors"))
        lines = {int(cell.text) for cell in b.all("#batch-errors td[data-line]")}
        assert {3, 4} <= lines, lines
        assert all(row.text.strip() for row in b.all("#batch-errors tbody tr"))
        b.shot("batch-errors", whole_page=True)
        b.fits(390)
        b.open("/imports")
        assert not b.all("#imports")  # nothing was started


def test_hostile_folder_name_and_subject_stay_text(driver, home, srv, new_user):
    src, alice = user(new_user, srv, "s"), user(new_user, srv, "a")
    seed_hostile(src)
    with refusing_target(srv) as proxy, LiveServer(make_app(home, srv, target_port=proxy.port)) as live, \
            Browser(driver, live) as b:
        b.sign_in(alice)
        b.fill_source(src, srv)
        job_id = b.start()
        b.open("/imports")  # the import's page is closed: the job goes on without it
        deadline = time.monotonic() + WAIT_S
        while live.service.db.job(job_id)["state"] not in ("done", "partial", "failed", "cancelled"):
            assert time.monotonic() < deadline, "the import did not end"
            time.sleep(0.05)
        b.open(f"/imports/{job_id}")
        assert b.state() == "partial"
        b.no_alert()
        assert HOSTILE in [cell.text for cell in b.all("#folders tbody td:first-child")]
        assert [cell.text for cell in b.all("#failures tbody td:nth-child(2)")] == [HOSTILE]
        assert not b.all("main img")  # shown, never made into an element
        b.open("/imports")
        b.no_alert()
