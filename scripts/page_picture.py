"""The picture of the web page: ``restore.py --serve`` with the starter model, a photo dropped on the page in
headless Chromium, the before/after slider where the picture shows both.

    python -m scripts.page_picture PHOTO [--out sample/restore_page.png] [--slider 50]

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (requirements-dev.txt); the
page's browser test drives the page with the same two functions.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
from pathlib import Path

from utils.core.cli import run_cli
from utils.core.errors import fail


def chromium(width: int = 1000, height: int = 900):
    """Headless Chromium through its driver, both from Debian's packages; refused in one sentence if missing."""
    try:
        from selenium import webdriver
    except ImportError:
        fail("the selenium package is missing; pip install -r requirements-dev.txt.")
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        fail("chromium and its driver are missing; apt-get install chromium chromium-driver.")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver), options=options)


def drop_photo(browser, base: str, photo: Path, timeout: float = 120) -> None:
    """Open the page at ``base``, pick ``photo`` and wait until its before and after pictures are shown."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_page_load_timeout(30)
    browser.get(base + "/")
    browser.find_element(By.ID, "pick").send_keys(str(Path(photo).resolve()))
    WebDriverWait(browser, timeout).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".card.done .compare img.after"))
    loaded = "return [...document.querySelectorAll('.compare img')].every(i => i.complete && i.naturalWidth > 0)"
    WebDriverWait(browser, 30).until(lambda b: b.execute_script(loaded))


def move_slider(browser, percent: int) -> None:
    slider = browser.find_element("css selector", ".compare input[type=range]")
    browser.execute_script(
        "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))", slider, percent
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photo", help="the photo to drop on the page")
    p.add_argument("--out", default="sample/restore_page.png", help="the screenshot (default sample/restore_page.png)")
    p.add_argument("--slider", type=int, default=50, help="where the slider stands, in percent (default 50)")
    args = p.parse_args(argv)
    if not Path(args.photo).is_file():
        fail(f"{args.photo} is not a file; give a photo to drop on the page.")
    from utils.photo.server import start_server
    from utils.photo.settings import PageSettings, PhotoSettings

    server, gallery = start_server(PhotoSettings(), PageSettings(port=0))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    browser = chromium(1000, 1100)  # room for a 4:3 photo under the drop zone
    try:
        drop_photo(browser, f"http://127.0.0.1:{server.server_address[1]}", Path(args.photo))
        move_slider(browser, args.slider)
        browser.save_screenshot(args.out)
    finally:
        browser.quit()
        server.shutdown()
        server.server_close()
        gallery.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
