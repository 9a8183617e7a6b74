"""Browser test: promote in the MLflow UI (headless Chromium), serving and the running service follow.

`mlflow server` serves the UI on the test's SQLite store; Playwright drives the system's
Chromium to open version 2 of the model, add the `champion` alias in the "Edit aliases"
dialog and save. A watcher doing what the `lrem_serve_sync` DAG's sensor and task do
(poll the registry, verify, move the serving alias) must follow within 60 seconds, and so
must `/healthz` of the running service. Skips, saying why, where Chromium or Playwright is
missing (`make test` installs Chromium with apt where it runs as root).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def _chromium() -> str | None:
    for name in (os.environ.get("LREM_CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


CHROMIUM = _chromium()
try:
    import playwright.sync_api  # noqa: F401

    PLAYWRIGHT = True
except ImportError:
    PLAYWRIGHT = False

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (apt-get install chromium, or set LREM_CHROMIUM)"),
    pytest.mark.skipif(not PLAYWRIGHT, reason="the playwright package is not installed (requirements.lock has it)"),
]


@pytest.fixture(scope="module")
def mlflow_ui(stack):
    cfg, _, home = stack
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(home / "mlflow-ui.log", "wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
                             cfg.tracking.mlflow_uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    try:
        while True:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(home / 'mlflow-ui.log').read_text()[-2000:]}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_promotion_in_the_mlflow_ui_moves_serving_and_the_service(stack, service, mlflow_ui):
    import mlflow
    from playwright.sync_api import sync_playwright

    from components.index.collections import alias_target
    from components.service import audit

    cfg, _, _ = stack
    name = cfg.tracking.model_name
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.mlflow_uri, registry_uri=cfg.tracking.mlflow_uri)
    client.set_registered_model_alias(name, "champion", "1")
    audit.sync(cfg, actor="test setup")
    assert alias_target(cfg.index.milvus_uri, cfg.index.serving_alias) == "svc_items_v1"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{mlflow_ui}/#/models/{name}/versions/2", wait_until="domcontentloaded", timeout=60_000)
            page.wait_for_selector("text=Aliases", timeout=120_000)
            page.click("button[title='Edit aliases']")
            dialog = page.locator("[role=dialog]")
            box = dialog.locator("input[role=combobox]")
            box.fill("champion")
            box.press("Enter")
            dialog.get_by_text('The "champion" alias is also being used on version 1').wait_for(timeout=10_000)
            dialog.get_by_role("button", name="Save aliases").click()
            dialog.wait_for(state="hidden", timeout=30_000)
        finally:
            browser.close()
    clicked = time.monotonic()
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"

    # what lrem_serve_sync does: its sensor polls (needs_sync), its task verifies and moves (sync)
    while audit.needs_sync(cfg) is None and time.monotonic() - clicked < 60:
        time.sleep(1)
    audit.sync(cfg, actor="lrem_serve_sync (browser test)")
    assert alias_target(cfg.index.milvus_uri, cfg.index.serving_alias) == "svc_items_v2"
    health = None
    while time.monotonic() - clicked < 60:
        health = httpx.get(f"{service.url}/healthz", timeout=10).json()
        if health["arms"]["champion"]["version"] == "2":
            break
        time.sleep(0.5)
    assert health["arms"]["champion"]["version"] == "2" and health["serving_alias"]["collection"] == "svc_items_v2"
    assert time.monotonic() - clicked < 60
    last = audit.history(cfg)[-2:]
    assert [(e["kind"], e["from_version"], e["to_version"]) for e in last] == [("champion", "1", "2"),
                                                                               ("serving_alias", "1", "2")]
    client.set_registered_model_alias(name, "champion", "1")
    audit.sync(cfg, actor="test teardown")
