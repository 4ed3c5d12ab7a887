"""Open the dashboard's pages in headless Chromium, read the numbers they show and save a
screenshot of each. Run with the UI venv's Python (hack/kfp/ensure-browser.sh: Selenium):

    python browser_flow.py BASE_URL MODEL FEATURE OUT_DIR

Prints one JSON line: what each page shows (the test compares it with the API's answers).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1800",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def open_page(driver: webdriver.Chrome, url: str, polls: int = 2) -> None:
    """Load and wait for `polls` rounds of drawing (the first draw, then a redraw from a poll)."""
    driver.get(url)
    WebDriverWait(driver, 60).until(
        lambda d: (
            int(d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") or 0) >= polls
        )
    )


def attr(driver: webdriver.Chrome, css: str, name: str) -> str | None:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].get_attribute(name) if found else None


def text(driver: webdriver.Chrome, css: str) -> str | None:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else None


def slice_row(tr: WebElement) -> dict[str, object]:
    """One row of the slice table: its category and each cell's text."""
    cells = {
        td.get_attribute("data-field"): td.text
        for td in tr.find_elements(By.CSS_SELECTOR, "td[data-field]")
    }
    metrics = {
        td.get_attribute("data-metric"): td.text
        for td in tr.find_elements(By.CSS_SELECTOR, "td[data-metric]")
    }
    return {"category": tr.get_attribute("data-category"), **cells, "metrics": metrics}


def main(base: str, model: str, feature: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    driver = browser()
    seen: dict[str, object] = {}
    try:
        open_page(driver, f"{base}/")
        rows = driver.find_elements(By.CSS_SELECTOR, "#portfolio tbody tr[data-model]")
        row = f'#portfolio tr[data-model="{model}"]'
        seen["portfolio"] = {
            "models": [r.get_attribute("data-model") for r in rows],
            "rollout_percent": attr(driver, f"{row} [data-field=rollout]", "data-percent"),
            "rollout_text": text(driver, f"{row} [data-field=rollout]"),
            "decision": attr(driver, f"{row} [data-field=decision]", "data-action"),
            "drift_share": attr(driver, f"{row} [data-field=drift]", "data-share"),
            "drift_text": text(driver, f"{row} [data-field=drift]"),
        }
        driver.save_screenshot(str(out / "dashboard-portfolio.png"))

        open_page(driver, f"{base}/models/{model}")
        checks = {}
        for tr in driver.find_elements(By.CSS_SELECTOR, "#checks tr[data-check]"):
            checks[tr.get_attribute("data-check")] = {
                "evidence": tr.find_element(By.CSS_SELECTOR, "[data-field=evidence]").text,
                "bound": tr.find_element(By.CSS_SELECTOR, "[data-field=bound]").text,
            }
        psi = {
            tr.get_attribute("data-feature"): tr.find_element(
                By.CSS_SELECTOR, "[data-field=psi]"
            ).text
            for tr in driver.find_elements(By.CSS_SELECTOR, "#drift-latest tr[data-feature]")
        }
        seen["model"] = {
            "canary_percent": text(driver, "#rollout-summary [data-field=canary_percent]"),
            "last_action": text(driver, "#rollout-summary [data-field=last_action]"),
            "checks": checks,
            "psi": psi,
            "charts": len(driver.find_elements(By.CSS_SELECTOR, ".uplot")),
        }
        driver.save_screenshot(str(out / "dashboard-model.png"))

        open_page(driver, f"{base}/models/{model}/features/{feature}")
        seen["feature"] = {
            "psi": text(driver, "#feature-summary [data-field=psi]"),
            "drifted": text(driver, "#feature-summary [data-field=drifted]"),
            "charts": len(driver.find_elements(By.CSS_SELECTOR, ".uplot")),
            "slice_link": attr(driver, "#slice-note a", "href"),
            "slice_column": text(driver, "#slice-note a"),
        }

        # The slice column's page, reached by the link the feature page gives.
        open_page(driver, str(seen["feature"]["slice_link"]))
        seen["slice_page"] = {
            "charts": len(driver.find_elements(By.CSS_SELECTOR, ".uplot")),
            "header": [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#slice-table th")],
            "rows": [slice_row(tr) for tr in driver.find_elements(
                By.CSS_SELECTOR, "#slice-table tbody tr")],
        }  # fmt: skip
        driver.save_screenshot(str(out / "dashboard-feature.png"))
        seen["errors"] = [
            e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"
        ]
    finally:
        driver.quit()
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]))
