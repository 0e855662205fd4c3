"""Make docs/live_page.png: the live-correction page during a real `embodied deploy` on the sim twin.

    python docs/live_page_screenshot.py [--policy outputs/demo/runs/mdt]

Starts `embodied deploy` (open-drawer, the sim twin in its own process), types
one correction into its terminal, opens the page in Debian's headless
Chromium and saves a screenshot once the correction shows in the history.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--policy", default=str(ROOT / "outputs" / "demo" / "runs" / "mdt"))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "live_page.png")
    args = ap.parse_args()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    work = Path(tempfile.mkdtemp())
    deploy = subprocess.Popen([sys.executable, "-m", "embodied.cli", "deploy", "--policy", args.policy, "--task",
                               "open-drawer", "--episodes", "3", "--out", str(work), "--port", "5599",
                               "--web-port", "8799"], stdin=subprocess.PIPE, text=True)
    try:
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--window-size=1280,900", f"--user-data-dir={work / 'chromium'}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        deadline = time.monotonic() + 120
        while True:
            try:
                driver.get("http://127.0.0.1:8799/")
                break
            except Exception:  # the deploy process is still starting its robot server
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        time.sleep(3)
        deploy.stdin.write("a bit more to the left\n")
        deploy.stdin.flush()
        time.sleep(2.5)
        driver.save_screenshot(str(args.out))
        driver.quit()
        print(args.out)
    finally:
        deploy.terminate()
        deploy.wait(20)


if __name__ == "__main__":
    main()
