"""The leaderboard page in a real headless browser (Debian's chromium + chromium-driver, Selenium).

Skips, with the reason, where Selenium, chromium or chromedriver is missing
(``scripts/bootstrap.sh --browser`` installs them where apt is usable). The screenshot is kept
under the test's tmp dir and, when ``SLM_TEST_ARTIFACTS`` names a directory, copied there too.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_slm.cli import main
from tests.report_docs import cell, document, write

ARTIFACTS_ENV = "SLM_TEST_ARTIFACTS"
#: (model, precision) -> (ttft s, output tokens/s, slm_mc acc, stderr)
CELLS = {
    ("alpha-135m", "bf16"): (0.050, 250.0, 0.50, 0.08),
    ("alpha-135m", "int4"): (0.040, 320.0, 0.45, 0.08),
    ("beta-360m", "bf16"): (0.090, 120.0, 0.62, 0.07),
    ("beta-360m", "int4"): (0.070, 180.0, 0.58, 0.07),
    ("gamma-1b", "bf16"): (0.200, 60.0, 0.71, 0.07),
    ("gamma-1b", "int8"): (0.150, 90.0, 0.70, 0.07),
}


def _browser() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "no headless browser: needs Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver, or scripts/bootstrap.sh --browser)"
        )
    return chromium, driver


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A report with --html over six model × precision cells; returns the page and its embedded data."""
    tmp = tmp_path_factory.mktemp("leaderboard")
    records = [
        r
        for (model, precision), (ttft, tps, acc, se) in CELLS.items()
        for r in cell(precision, ttft, tps, acc, se, model=model)
    ]
    results = write(tmp / "run" / "results.json", document(records))
    assert main(["report", str(results), "--output-dir", str(tmp / "report"), "--html", "--no-plots"]) == 0
    html = tmp / "report" / "leaderboard.html"
    text = html.read_text()
    embedded = re.search(r'<script type="application/json" id="slm-data">(.*?)</script>', text, re.S)
    assert embedded and text.count('type="application/json"') == 1  # the data is embedded once
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text  # no CDN
    return html, json.loads(embedded.group(1))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """Headless Chromium through chromedriver with a fresh profile and a download directory."""
    chromium, driver_path = _browser()
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    tmp = tmp_path_factory.mktemp("chromium")
    downloads = tmp / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp / 'profile'}",
        "--window-size=1400,2000",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        yield driver, downloads
    finally:
        driver.quit()


def visible_ids(driver: Any) -> list[str]:
    return [tr.get_attribute("data-id") for tr in driver.find_elements("css selector", "#leaderboard tbody tr")]


def column(driver: Any, key: str) -> list[str]:
    return [td.text for td in driver.find_elements("css selector", f'#leaderboard tbody td[data-key="{key}"]')]


def test_leaderboard_in_headless_chromium(page, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import Select

    html, data = page
    driver, downloads = browser
    driver.get(html.as_uri())
    expected = {f"{m} · {p}" for m, p in CELLS}

    # every model × precision is in the table
    assert set(visible_ids(driver)) == expected and len(visible_ids(driver)) == 6
    assert driver.find_element("id", "row-count").text == "6 of 6 model × precision rows"

    # sorting changes the row order: throughput descending, then ascending
    header = driver.find_element("css selector", '#leaderboard th[data-key="output_tokens_per_s"]')
    header.click()
    by_tps = sorted(CELLS, key=lambda c: -CELLS[c][1])
    assert visible_ids(driver) == [f"{m} · {p}" for m, p in by_tps]
    assert column(driver, "output_tokens_per_s")[0] == "320"
    assert "sort=output_tokens_per_s" in driver.find_element("id", "permalink").get_attribute("href")
    header.click()
    assert visible_ids(driver) == [f"{m} · {p}" for m, p in reversed(by_tps)]

    # a filter changes the visible rows, and the permalink restores it
    Select(driver.find_element("id", "precision-filter")).select_by_value("int4")
    assert set(visible_ids(driver)) == {"alpha-135m · int4", "beta-360m · int4"}
    search = driver.find_element("id", "search")
    search.send_keys("beta")
    assert visible_ids(driver) == ["beta-360m · int4"]
    permalink = driver.find_element("id", "permalink").get_attribute("href")
    assert "precision=int4" in permalink and "q=beta" in permalink
    driver.get("about:blank")
    driver.get(permalink)
    assert visible_ids(driver) == ["beta-360m · int4"]
    assert driver.find_element("id", "search").get_attribute("value") == "beta"

    # top models per task and the scatter follow the data
    driver.get(html.as_uri())
    top = driver.find_elements("css selector", '#top-models ol[data-task="slm_mc"] li')
    assert [li.text for li in top] == ["gamma-1b · bf16: 0.71", "gamma-1b · int8: 0.7", "beta-360m · bf16: 0.62"]
    points = driver.find_elements("css selector", "#scatter-svg g.point")
    assert {p.get_attribute("data-id") for p in points} == expected
    assert driver.find_elements("css selector", "#scatter-svg polyline")  # the Pareto front

    # compare: tick three rows; the compare view shows exactly those, side by side
    chosen = ["alpha-135m · int4", "beta-360m · bf16", "gamma-1b · int8"]
    for cid in chosen:
        driver.find_element("css selector", f'#leaderboard tr[data-id="{cid}"] input.compare-box').click()
    heads = [th.text for th in driver.find_elements("css selector", "#compare-table tr:first-child th")][1:]
    assert heads == chosen
    tps_row = next(
        tr for tr in driver.find_elements("css selector", "#compare-table tr") if tr.text.startswith("out tok/s")
    )
    assert tps_row.text.split()[-3:] == ["320", "120", "90"]
    driver.find_element("css selector", '#leaderboard tr[data-id="gamma-1b · bf16"] input.compare-box').click()
    boxes = driver.find_elements("css selector", "#leaderboard input.compare-box")
    assert sum(b.is_selected() for b in boxes) == 4 and sum(not b.is_enabled() for b in boxes) == 2  # at most 4
    assert "compare=" in driver.current_url

    screenshot = tmp_path / "leaderboard.png"
    driver.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    if os.environ.get(ARTIFACTS_ENV):
        target = Path(os.environ[ARTIFACTS_ENV])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, target / "leaderboard.png")

    # CSV export of all rows matches the embedded data and the input records
    driver.find_element("id", "clear-compare").click()
    driver.find_element("id", "export-csv").click()
    csv_file = downloads / "leaderboard.csv"
    deadline = time.monotonic() + 15
    while not csv_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert csv_file.exists(), "the browser did not save leaderboard.csv"
    text = csv_file.read_text()
    assert text == driver.execute_script("return window.slmLastCsv")
    exported = list(csv.DictReader(io.StringIO(text)))
    keys = [c["key"] for c in data["columns"]]
    assert list(exported[0]) == keys and len(exported) == 6
    by_id = {r["id"]: r for r in data["rows"]}
    for row in exported:
        want = by_id[f"{row['model']} · {row['precision']}"]
        for key in keys:
            got = row[key]
            if isinstance(want[key], float):
                assert float(got) == pytest.approx(want[key], rel=1e-12), key
            else:
                assert got == ("" if want[key] is None else str(want[key])), key
        ttft, tps, acc, _ = CELLS[(row["model"], row["precision"])]
        assert float(row["output_tokens_per_s"]) == tps and float(row["task:slm_mc"]) == acc
        assert float(row["ttft_p50_ms"]) == pytest.approx(ttft * 1e3)

    # the export holds the visible rows only
    Select(driver.find_element("id", "precision-filter")).select_by_value("bf16")
    driver.find_element("id", "export-csv").click()
    filtered = list(csv.DictReader(io.StringIO(driver.execute_script("return window.slmLastCsv"))))
    assert sorted(r["model"] for r in filtered) == ["alpha-135m", "beta-360m", "gamma-1b"]
    assert {r["precision"] for r in filtered} == {"bf16"}
