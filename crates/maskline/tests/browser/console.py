"""The web console in a real browser: Debian's Chromium driven by Playwright.

Run by crates/maskline/tests/browser.rs against a server it started and filled
(a tenant, its pool, users of each role, a binding whose external_ref is
markup). Each check prints a line; the first failure raises, and the exit
status is non-zero.

Environment: MASKLINE_BASE (http://127.0.0.1:port), MASKLINE_FIXTURE (JSON:
password, emails, the parties' numbers, the recorded call's id, the pick-up
code of the relayed text, the shop whose shared number holds a text and its
extension); MASKLINE_SCREENSHOTS, a directory to leave every
page's screenshot in.
"""

import io
import json
import math
import os
import re
import sys
import wave
from pathlib import Path

from playwright.sync_api import sync_playwright

BASE = os.environ["MASKLINE_BASE"]
FIX = json.loads(os.environ["MASKLINE_FIXTURE"])
PASSWORD = FIX["password"]
HERE = Path(__file__).resolve().parent
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = os.environ.get("MASKLINE_CHROMIUM", "/usr/bin/chromium")
# A directory to leave each page's screenshot in, to look at (optional).
SHOTS = os.environ.get("MASKLINE_SCREENSHOTS")
XSS = "<img src=x onerror=alert(1)>"

outside = []  # requests for anything but the server under test
alerts = []  # alert() dialogs: script that ran where it must not


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok: {what}", flush=True)


def digit_forms(e164):
    digits = e164.lstrip("+")
    return [digits, digits[2:], digits[-8:]]


SECRETS = [f for n in FIX["parties"] for f in digit_forms(n)]


def guard(context):
    """Every request must go to the server under test; anything else is
    recorded and never sent."""

    def route(r):
        if r.request.url.startswith(BASE + "/"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)


def new_page(browser, *, width=1280, locale="en-US", js=True, bypass_csp=False):
    context = browser.new_context(
        viewport={"width": width, "height": 900},
        locale=locale,
        java_script_enabled=js,
        bypass_csp=bypass_csp,
    )
    guard(context)
    page = context.new_page()

    def on_dialog(d):
        if d.type == "confirm":
            d.accept()
        else:
            alerts.append(d.message)
            d.dismiss()

    page.on("dialog", on_dialog)
    return page


def sign_in(page, email, password=PASSWORD):
    page.goto(BASE + "/console/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("form.stack button[type=submit]")
    # With JavaScript htmx posts and swaps the answer in: no navigation.
    page.wait_for_load_state("networkidle")


def no_secrets(page, where):
    html = page.content()
    leaked = [s for s in SECRETS if s in html]
    check(not leaked, f"{where}: no party digits in the page's HTML ({leaked})")


def audit(page, where):
    """axe-core's audit: no serious or critical violation."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    check(not bad, f"{where}: accessibility audit without serious violations {bad}")


def fits(page, where):
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    check(width[0] <= width[1], f"{where}: no sideways scrolling at {width[1]} px ({width[0]})")


def plays(audio):
    """Loads and plays an <audio> for a moment: (duration, position)."""
    return audio.evaluate(
        """a => new Promise((done, fail) => {
            a.preload = 'auto';
            a.addEventListener('error', () => fail('error ' + (a.error && a.error.code)));
            a.addEventListener('loadedmetadata', () => {
                const duration = a.duration;
                a.play().then(() => setTimeout(() => { a.pause(); done([duration, a.currentTime]); }, 700),
                              e => fail('play: ' + e));
            });
            a.load();
            setTimeout(() => fail('timeout'), 15000);
        })"""
    )


def tone_wav(seconds):
    """A 440 Hz tone as a WAV file: 8 kHz, mono, PCM 16-bit."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(
            b"".join(
                int(6000 * math.sin(2 * math.pi * 440 * i / 8000)).to_bytes(2, "little", signed=True)
                for i in range(int(8000 * seconds))
            )
        )
    return out.getvalue()


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )

        # --- Signing in and out, with JavaScript (htmx boosts the forms).
        page = new_page(browser)
        page.goto(BASE + "/console")
        check(page.url == BASE + "/console/login", "without a session the console asks to sign in")
        sign_in(page, FIX["operator"], "not-the-passphrase")
        check(page.get_by_text("Wrong email or password.").is_visible(), "a wrong password is refused")
        sign_in(page, FIX["operator"])
        page.wait_for_url(BASE + "/console")
        check(page.locator("h1").inner_text() == "Overview", "signed in: the overview")
        check(page.locator("svg.chart").count() == 3, "the overview charts calls, texts and pool use")
        check(
            "in all: 1," in page.locator("#calls-title").inner_text()
            and "in all: 2," in page.locator("#texts-title").inner_text(),
            "the charts count the call and the two texts of the last 24 hours",
        )

        # --- Ten wrong passwords lock an account: then the right one is
        # refused too, saying until when.
        lock = new_page(browser)
        for _ in range(10):
            sign_in(lock, FIX["locked"], "not-the-passphrase")
            check(lock.get_by_text("Wrong email or password.").is_visible(), "a wrong password is refused")
        sign_in(lock, FIX["locked"])
        check(
            "Too many failed sign-ins: this account is locked until" in lock.inner_text("main"),
            "after ten failures the account is locked",
        )
        check(lock.url.startswith(BASE + "/console/login"), "a locked account stays signed out")
        lock.context.close()

        # --- A binding made in the form is listed.
        page.click("nav >> text=Bindings")
        page.wait_for_url(BASE + "/console/bindings")
        page.select_option("#c-mode", "axb")
        page.fill("#c-a", FIX["new_a"])
        page.fill("#c-b", FIX["new_b"])
        page.fill("#c-ref", "made-in-the-browser")
        page.fill("#c-hours", "12")
        page.click("section.card button[type=submit]")
        page.wait_for_selector("p.notice.ok")
        check("Binding created:" in page.locator("p.notice.ok").inner_text(), "the form creates a binding")
        page.goto(BASE + "/console/bindings?external_ref=made-in-the-browser")
        row = page.locator("table.bindings tbody tr")
        check(row.count() == 1, "the new binding is listed")
        check(
            FIX["new_b"][:6] + "****" + FIX["new_b"][-4:] in row.inner_text(),
            "its party is shown masked",
        )

        # --- Markup stored by a tenant stays text.
        page.goto(BASE + "/console/bindings")
        check(XSS in page.locator("table.bindings").inner_text(), "the marked-up reference shows as text")
        check(page.locator("main img").count() == 0, "no element came from it")

        # --- A party search keeps the number out of the address.
        page.fill("#f-party", FIX["parties"][0])
        page.click("form.filters button[type=submit]")
        page.wait_for_url(re.compile(r".*pq=.*"))
        check(not any(s in page.url for s in SECRETS), "the searched number is not in the URL")
        check(page.locator("table.bindings tbody tr").count() >= 1, "the search finds the party's bindings")

        # --- Ending asks first (hx-confirm), then ends.
        page.goto(BASE + "/console/bindings?external_ref=made-in-the-browser")
        page.click("button.danger")
        page.wait_for_selector("p.notice.ok")
        check("Binding ended:" in page.locator("p.notice.ok").inner_text(), "the binding is ended")

        # --- A form without this session's token is refused.
        page.goto(BASE + "/console/bindings")
        page.evaluate("() => document.querySelectorAll('input[name=csrf]').forEach(i => i.value = 'forged')")
        page.fill("#c-a", FIX["new_a"])
        page.fill("#c-b", FIX["parties"][1])
        page.click("section.card button[type=submit]")
        page.wait_for_selector("p.notice.error")
        check(
            "did not come from this console" in page.locator("main").inner_text(),
            "a forged CSRF token is refused",
        )

        # --- The recorded call is listed, and its recording plays.
        page.goto(BASE + "/console/calls")
        row = page.locator(f"#call-{FIX['call_id']}")
        check(row.count() == 1, "the call placed with sipp is listed")
        check(FIX["parties"][0][:6] + "****" + FIX["parties"][0][-4:] in row.inner_text(), "its caller masked")
        played = plays(row.locator("audio"))
        check(played[0] > 5 and played[1] > 0, f"its recording plays in the page (duration, position: {played})")
        check(FIX["parties"][0] not in page.content(), "the calls page holds no whole number")
        row.locator("button.link-button").click()
        page.wait_for_selector("dl.record")
        check(FIX["parties"][0] in page.locator("dl.record").inner_text(), "an operator reveals one call's numbers")

        # --- The text relayed through the SMSC, with its pick-up code.
        page.goto(BASE + "/console/messages")
        code = page.locator("strong.code")
        check(code.count() >= 1 and code.first.inner_text() == FIX["pickup_code"], "the text's pick-up code is shown")
        check("菜鸟驿站" in page.locator("table.cards").inner_text(), "the text itself is shown")

        # --- A held text is relayed to the extension it is for.
        page.goto(BASE + "/console/messages?status=held")
        held = page.locator("table.cards tbody tr")
        check(held.count() == 1 and "外卖放门口了" in held.inner_text(), "the held text is listed")
        held.locator("input[name=extension]").fill(FIX["shop_extension"])
        held.locator("button", has_text="Relay").click()
        page.wait_for_selector("p.notice.ok")
        shop = FIX["shop"]
        check(
            "Released and relayed to " + shop[:6] + "****" + shop[-4:] in page.inner_text("p.notice.ok"),
            "the released text goes to the shop",
        )

        # --- Sign out.
        page.goto(BASE + "/console")
        page.click("header form button")
        page.wait_for_url(re.compile(r".*/console/login.*"))
        check(page.get_by_text("You have signed out.").is_visible(), "signing out ends the session")
        page.goto(BASE + "/console/bindings")
        check(page.url.startswith(BASE + "/console/login"), "after signing out the pages ask again")
        page.context.close()

        # --- Without JavaScript the forms work the same.
        page = new_page(browser, js=False)
        sign_in(page, FIX["operator"])
        check(page.url == BASE + "/console", "signing in works without JavaScript")
        page.goto(BASE + "/console/bindings")
        page.fill("#c-a", FIX["new_a"])
        page.select_option("#c-mode", "axn")
        page.fill("#c-ref", "made-without-js")
        page.click("section.card button[type=submit]")
        page.wait_for_selector("p.notice.ok")
        check("Binding created:" in page.inner_text("p.notice.ok"), "a binding is made without JavaScript")
        page.context.close()

        # --- A viewer never receives a full number.
        page = new_page(browser)
        sign_in(page, FIX["viewer"])
        for path in [
            "/console",
            "/console/bindings",
            "/console/calls",
            "/console/messages",
            "/console/events",
            "/console/numbers",
            "/console/bindings?lang=zh",
            "/console/bindings?lang=en",
        ]:
            page.goto(BASE + path)
            no_secrets(page, f"viewer {path}")
        page.fill("#f-party", FIX["parties"][1])
        page.click("form.filters button[type=submit]")
        page.wait_for_url(re.compile(r".*pq=.*"))
        no_secrets(page, "viewer's party search")
        check(page.locator("#c-a").count() == 0, "a viewer has no form to change anything")
        page.context.close()

        # --- An owner imports numbers from a file (htmx posts it, showing
        # the upload's progress), with and without JavaScript.
        for js in [True, False]:
            page = new_page(browser, js=js)
            sign_in(page, FIX["owner"])
            page.goto(BASE + "/console/numbers")
            number = "+86571000000%02d" % (50 if js else 51)
            page.set_input_files(
                "#csv-file",
                files=[{"name": "pool.csv", "mimeType": "text/csv", "buffer": f"number,area\n{number},hz\n".encode()}],
            )
            page.click("form.import button[type=submit]")
            page.wait_for_selector("p.notice.ok")
            check("Imported: 1" in page.inner_text("p.notice.ok"), f"a CSV file is imported (JavaScript {'on' if js else 'off'})")
            check(number in page.inner_text("table.cards"), "its number is in the pool")
            page.context.close()

        # --- An owner listens to a built-in prompt, replaces one with a WAV
        # file and listens to it.
        page = new_page(browser)
        sign_in(page, FIX["owner"])
        page.goto(BASE + "/console/settings")
        builtin = plays(page.locator("#prompt-no_binding audio").first)
        check(builtin[0] > 1 and builtin[1] > 0, f"a built-in prompt plays (duration, position: {builtin})")
        page.set_input_files(
            "#w-expired",
            files=[{"name": "expired.wav", "mimeType": "audio/wav", "buffer": tone_wav(1.5)}],
        )
        page.locator("#prompt-expired button", has_text="Replace").click()
        page.wait_for_selector("p.notice.ok")
        check("Replaced:" in page.inner_text("p.notice.ok"), "a prompt is replaced from a WAV file")
        own = plays(page.locator("#prompt-expired audio"))
        check(abs(own[0] - 1.5) < 0.05 and own[1] > 0, f"the tenant's prompt plays (duration, position: {own})")
        page.context.close()

        # --- Both languages, wide and phone-sized: translated, accessible, fitting.
        data = {FIX["operator"], FIX["owner"], FIX["viewer"], FIX["admin"], "POST /", "mlk_", "made-in-the-browser", "made-without-js", XSS, "UTC", "Maskline", "0:00"}
        pages = [
            "/console/login",
            "/console",
            "/console/numbers",
            "/console/bindings",
            "/console/calls",
            "/console/messages",
            "/console/events",
            "/console/settings",
            "/console/keys",
            "/console/users",
            "/console/audit",
        ]
        # The admin's own page, after the tenant's pages.
        admin_pages = ["/console/tenants"]
        texts = {}
        for locale in ["en-US", "zh-CN"]:
            for width in [1280, 375]:
                page = new_page(browser, width=width, locale=locale, bypass_csp=True)
                for path in pages + admin_pages:
                    if path == "/console":
                        sign_in(page, FIX["owner"])
                    if path == admin_pages[0]:
                        page.goto(BASE + "/console")
                        page.click("header form button")
                        page.wait_for_url(re.compile(r".*/console/login.*"))
                        sign_in(page, FIX["admin"])
                    page.goto(BASE + path)
                    where = f"{locale} {width} px {path}"
                    lang = page.evaluate("() => document.documentElement.lang")
                    check(lang == ("en" if locale == "en-US" else "zh-CN"), f"{where}: in its language")
                    fits(page, where)
                    audit(page, where)
                    texts[(locale, width, path)] = page.inner_text("body")
                    if SHOTS:
                        slug = path.strip("/").replace("/", "-")
                        page.screenshot(path=f"{SHOTS}/{locale}-{width}-{slug}.png", full_page=True)
                page.context.close()
        for path in pages + admin_pages:
            english = [
                line.strip()
                for line in texts[("en-US", 1280, path)].splitlines()
                if re.search(r"[A-Za-z]{3}", line)
                and not any(d in line for d in data)
                # A table row of numbers and binding modes only is data.
                and not all(
                    re.fullmatch(r"[\s\d+*#—:.\-]*|axb|axn|axe", cell.strip())
                    for cell in line.split("\t")
                )
                # A tenant's name beside its id is data, the same in both.
                and not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-", line)
            ]
            chinese = texts[("zh-CN", 1280, path)]
            # Whole lines, or longer texts anywhere (a short word like a
            # role may be part of an email address on both pages).
            lines = {line.strip() for line in chinese.splitlines()}
            left = [line for line in english if line in lines or (len(line) >= 12 and line in chinese)]
            # The language switch names English in English on purpose.
            left = [line for line in left if line != "English"]
            check(not left, f"{path}: nothing of the English page is left in the Chinese one {left}")
            check(re.search(r"[\u4e00-\u9fff]", chinese), f"{path}: the Chinese page is in Chinese")

        browser.close()
    check(not alerts, f"no script ran from stored data {alerts}")
    check(not outside, f"no request left the server under test {outside}")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
