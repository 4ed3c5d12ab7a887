"""The KFP UI flow in headless Chromium (Selenium + Debian's chromium-driver), as a user clicks it.

Run by tests/kfp/test_kfp_api.py with the UI venv's python (hack/kfp/ensure-browser.sh):
  ui_flow.py BASE_URL PACKAGE OUT_DIR
Uploads PACKAGE as a new pipeline, creates a run with the defaults (the form as the UI fills it),
waits for it through the UI's own API proxy, then opens the run: screenshots of the graph and of the
validate and evaluate steps' tabs go to OUT_DIR. Prints one JSON line with what it saw.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

RUN_TIMEOUT = 2400


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1600,1000",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def click(driver: webdriver.Chrome, css: str, timeout: float = 60) -> None:
    WebDriverWait(driver, timeout).until(ec.element_to_be_clickable((By.CSS_SELECTOR, css))).click()


def upload(driver: webdriver.Chrome, base: str, package: Path, name: str) -> None:
    driver.get(f"{base}/#/pipelines")
    # KFP 2.17's pipeline list labels its newPipelineVersion button "Upload pipeline"
    # (frontend/src/pages/PipelineList.tsx; lib/Buttons.ts gives it this id).
    click(driver, "#createPipelineVersionBtn")
    field = WebDriverWait(driver, 60).until(
        ec.presence_of_element_located((By.ID, "newPipelineName"))
    )
    field.clear()
    field.send_keys(name)
    click(driver, "#localPackageBtn")
    driver.find_element(By.CSS_SELECTOR, "input[type=file]").send_keys(str(package.resolve()))
    click(driver, "#createNewPipelineOrVersionBtn")
    WebDriverWait(driver, 120).until(lambda d: "/pipelines/details/" in d.current_url)


def create_run(driver: webdriver.Chrome, edits: dict[str, str]) -> str:
    click(driver, "#createNewRunBtn", timeout=120)
    for key, value in edits.items():
        box = WebDriverWait(driver, 60).until(ec.presence_of_element_located((By.ID, key)))
        box.clear()
        box.send_keys(value)
    click(driver, "#startNewRunBtn", timeout=120)
    WebDriverWait(driver, 120).until(lambda d: "/runs/details/" in d.current_url)
    return re.search(r"/runs/details/([0-9a-f-]{36})", driver.current_url).group(1)


def wait_for_run(base: str, run_id: str) -> str:
    deadline = time.monotonic() + RUN_TIMEOUT
    state = ""
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/apis/v2beta1/runs/{run_id}", timeout=30) as r:
            state = json.load(r).get("state", "")
        if state in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"):
            return state
        time.sleep(10)
    return state or "TIMEOUT"


def open_artifact(driver: webdriver.Chrome, step: str, name: str, out: Path) -> str:
    """Click a step's output artifact in the run graph; its Visualization tab (text, screenshot).

    KFP 2.17's run graph shows each output artifact as a node of its own (test id
    artifact.<step>.<name>); its side panel has the tabs Artifact Info and Visualization
    (RuntimeNodeDetailsV2.tsx). The panel covers part of the graph, so it is closed after.
    """
    click_xpath(driver, f"//*[@data-testid='artifact.{step}.{name}']")
    click_xpath(driver, "//button[normalize-space()='Visualization']")
    time.sleep(5)  # the visualization loads the artifact from the object store
    driver.save_screenshot(str(out / f"{step}-{name}.png"))
    text = driver.find_element(By.TAG_NAME, "body").text[:6000]
    click_xpath(driver, "//button[@aria-label='close']")
    return text


def click_xpath(driver: webdriver.Chrome, xpath: str, timeout: float = 60) -> None:
    WebDriverWait(driver, timeout).until(ec.element_to_be_clickable((By.XPATH, xpath))).click()


def show_run(driver: webdriver.Chrome, base: str, run_id: str, out: Path) -> dict[str, object]:
    driver.get(f"{base}/#/runs/details/{run_id}")
    WebDriverWait(driver, 120).until(
        lambda d: "evaluate" in d.find_element(By.TAG_NAME, "body").text
    )
    time.sleep(5)  # the graph's node states come from MLMD after the run loads
    driver.save_screenshot(str(out / "run-graph.png"))
    seen: dict[str, object] = {"graph_text": driver.find_element(By.TAG_NAME, "body").text[:2000]}
    # validate's Markdown report; evaluate's Metrics (ROC AUC) and ClassificationMetrics.
    seen["validate"] = {"report": open_artifact(driver, "validate", "report", out)}
    seen["evaluate"] = {
        name: open_artifact(driver, "evaluate", name, out) for name in ("metrics", "classification")
    }
    return seen


def main() -> None:
    base, package, out = sys.argv[1].rstrip("/"), Path(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    driver = browser()
    result: dict[str, object] = {}
    try:
        name = f"churn-training-ui-{int(time.time())}"
        start = time.monotonic()
        upload(driver, base, package, name)
        run_id = create_run(driver, {})
        result |= {"pipeline": name, "run_id": run_id}
        result["state"] = wait_for_run(base, run_id)
        result["run_seconds"] = round(time.monotonic() - start)
        result |= show_run(driver, base, run_id, out)
    finally:
        driver.save_screenshot(str(out / "last-page.png"))
        driver.quit()
        print(json.dumps(result))


if __name__ == "__main__":
    main()
