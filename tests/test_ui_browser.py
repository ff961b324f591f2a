"""The dashboard in a real headless Chromium (Debian's ``chromium`` driven by playwright): what a
person sees and does, checked on the charts' data, not only on the presence of a canvas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from playwright import sync_api  # the test extra; CI must install it (never skipped)

import steplog
import steplog.ui
from steplog.ui.browser import CHROMIUM_ARGS, chromium_path

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    assert Path(executable).exists(), "Debian's chromium is needed: apt-get install -y chromium"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, root):
    """open_page(query) -> a page showing the dashboard of ``root`` (served on a free port)."""
    root.mkdir(parents=True, exist_ok=True)
    server = steplog.ui.serve(root, port=0)
    # bypass_csp: the page's own CSP would block an injected handler anyway; the tests check that the
    # page never creates one, and playwright's evaluate needs eval.
    context = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
    dialogs: list[str] = []

    def opener(query: str = ""):
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.dialogs = dialogs
        page.goto(server.url + query)
        page.wait_for_function("window.steplog && window.steplog.ready === true")
        return page

    yield opener
    context.close()
    server.stop()


def series_of(page, metric: str) -> list[list]:
    """The chart's data for ``metric``: [x, series 1, series 2, ...] as uPlot draws it."""
    return page.evaluate("m => window.steplog.data(m).map(a => Array.from(a))", metric)


def defined(values: list) -> list:
    return [v for v in values if v is not None]


def make_runs(root: Path, count: int = 3, steps: int = 20) -> list[steplog.Run]:
    runs = []
    for i in range(count):
        with steplog.init(name=f"lr{i}", config={"lr": 10.0**-i, "depth": 4}, root=root) as run:
            for step in range(steps):
                run.log({"loss": (i + 1) * 10.0 - step * 0.5, "acc": step / steps})
        runs.append(run)
    return runs


def test_table_lists_runs_and_choosing_two_draws_exactly_their_points(root, open_page):
    runs = make_runs(root)
    page = open_page(f"?runs={runs[0].id},{runs[2].id}&metrics=loss&smooth=0")
    names = page.locator("#runs-body td.name").all_inner_texts()
    assert names == ["lr2", "lr1", "lr0"]  # newest first
    assert page.locator("#runs-body tr.selected td.name").all_inner_texts() == ["lr2", "lr0"]
    assert page.locator(".panel").evaluate_all("ps => ps.map(p => p.dataset.metric)") == ["loss"]
    data = series_of(page, "loss")
    assert len(data) == 3 and data[0] == list(range(20))
    assert sorted([defined(data[1]), defined(data[2])]) == sorted(
        [[10.0 - s * 0.5 for s in range(20)], [30.0 - s * 0.5 for s in range(20)]]
    )
    page.locator("#runs-body tr", has_text="lr1").click()  # a click adds a run
    page.wait_for_function("window.steplog.data('loss').length === 4")
    assert f"runs={runs[2].id},{runs[1].id},{runs[0].id}" in page.url
    assert page.locator("#runs-foot").inner_text() == "3 of 3 runs shown, 3 charted"


def test_hover_shows_the_step_and_every_runs_value(root, open_page):
    make_runs(root, count=2)
    page = open_page("?metrics=loss&smooth=0")
    box = page.locator(".panel[data-metric=loss] .u-over").bounding_box()
    page.mouse.move(box["x"] + 1, box["y"] + box["height"] / 2)
    page.mouse.move(box["x"] + 2, box["y"] + box["height"] / 2)  # step 0: the left edge
    tip = page.locator("#tooltip")
    tip.wait_for(state="visible")
    text = tip.inner_text()
    assert "step 0" in text and "lr0" in text and "lr1" in text
    assert page.locator("#tooltip td.v").all_inner_texts() == ["20", "10"]  # step 0 of lr1, lr0: highest first
    assert text.index("lr1") < text.index("lr0")


def test_a_live_run_grows_in_place_without_reload(root, open_page):
    run = steplog.init(name="live", root=root)
    for step in range(5):
        run.log({"loss": float(step)})
    run.flush()
    page = open_page("?metrics=loss")
    page.evaluate("window.notReloaded = true")
    assert series_of(page, "loss")[0] == [0, 1, 2, 3, 4]
    labels = page.evaluate("window.steplog.plot('loss').series.slice(1).map(s => s.label)")
    assert labels == ["live", "live (smoothed)"] and "smooth" not in page.url  # a modest EMA by default
    assert page.locator("#runs-body td.status").inner_text() == "running"
    for step in range(5, 9):
        run.log({"loss": float(step)})
    run.flush()
    page.wait_for_function("window.steplog.data('loss')[0].length === 9", timeout=10_000)
    assert series_of(page, "loss")[1] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert page.evaluate("window.notReloaded") is True
    requests = page.evaluate("window.steplog.requests")
    assert any("cursor=" in r for r in requests)  # only the new points were asked for
    run.finish()
    page.wait_for_function("document.querySelector('#runs-body td.status').textContent === 'finished'", timeout=10_000)
    with steplog.init(name="newcomer", root=root) as other:
        other.log({"loss": 1.0})
    page.wait_for_selector("#runs-body td.name >> text=newcomer", timeout=10_000)


def test_the_hostile_name_shows_literally_and_runs_no_script(root, open_page):
    with steplog.init(name=HOSTILE, config={HOSTILE: HOSTILE}, root=root) as run:
        run.log({"loss": 1.0})
        run.fail(HOSTILE)
    page = open_page(f"?run={run.id}")
    page.wait_for_selector("#run-body h2")
    assert page.locator("#runs-body td.name").inner_text() == HOSTILE
    assert page.locator("#run-body h2").inner_text() == HOSTILE
    assert HOSTILE in page.locator("#run-body .error-box").inner_text()
    assert page.locator("img").count() == 0 and page.dialogs == []
    assert page.evaluate("document.body.innerHTML").count("&lt;img src=x onerror=alert(1)&gt;") >= 3
    from urllib.parse import quote

    page = open_page("?runs=" + quote(HOSTILE) + "&metrics=" + quote(HOSTILE))  # the URL is input too
    assert page.locator("#notice").inner_text() == f"Not in this root (left out): {HOSTILE}"
    assert page.locator("img").count() == 0 and page.dialogs == []


def test_drag_zoom_asks_for_the_finer_range_and_the_url_keeps_it(root, open_page):
    values = np.sin(np.arange(20_000) / 300.0)
    values[10_050] = 5.0
    with steplog.init(name="long", root=root) as run:
        for v in values:
            run.log({"loss": float(v)})
    steplog.compact(root, quiet=True)
    page = open_page()
    before = series_of(page, "loss")
    assert len(before[0]) < 5_000 and max(defined(before[1])) == 5.0  # downsampled, the spike kept
    over = page.locator(".panel[data-metric=loss] .u-over").bounding_box()
    y = over["y"] + over["height"] / 2
    loads = page.evaluate("window.steplog.loads")
    page.mouse.move(over["x"] + over["width"] * 0.50, y)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.52, y, steps=5)
    page.mouse.up()
    page.wait_for_function(f"window.steplog.loads > {loads}")
    lo, hi = page.evaluate("window.steplog.state.zoom")
    assert 9_000 < lo < hi < 11_000
    assert any("from=" in r and "to=" in r for r in page.evaluate("window.steplog.requests"))
    xs, ys = series_of(page, "loss")[:2]
    inside = [(x, v) for x, v in zip(xs, ys) if lo <= x <= hi]
    assert [x for x, _ in inside] == list(range(int(np.ceil(lo)), int(np.floor(hi)) + 1))  # every step
    assert [v for _, v in inside] == values[int(np.ceil(lo)) : int(np.floor(hi)) + 1].tolist()
    assert "from=" in page.url and "to=" in page.url
    page.reload()
    page.wait_for_function("window.steplog && window.steplog.ready === true")
    assert page.evaluate("window.steplog.state.zoom") == [lo, hi]
    loads = page.evaluate("window.steplog.loads")
    page.locator(".panel[data-metric=loss] .u-over").dblclick()
    page.wait_for_function(f"window.steplog.loads > {loads}")
    assert page.evaluate("window.steplog.state.zoom") is None and "from=" not in page.url


def test_group_by_draws_a_mean_line_with_a_min_max_band_and_smoothing_keeps_the_raw_curve(root, open_page):
    for name, depth, offset in (("a", 2, 0.0), ("b", 2, 2.0), ("c", 8, 10.0)):
        with steplog.init(name=name, config={"depth": depth}, root=root) as run:
            for step in range(4):
                run.log({"loss": offset + step})
    page = open_page("?metrics=loss&group=depth&smooth=0")
    data = series_of(page, "loss")
    assert len(data) == 1 + 3 * 2  # per group: max, min, mean
    groups = page.evaluate("window.steplog.plot('loss').series.slice(1).map(s => s.label)")
    assert groups[2] == "depth=8 (1 runs)" or groups[5] == "depth=8 (1 runs)"
    by_label = dict(zip(groups, data[1:]))
    assert by_label["depth=2 (2 runs)"] == [1.0, 2.0, 3.0, 4.0]  # mean of a (0..3) and b (2..5)
    assert by_label["depth=2 max"] == [2.0, 3.0, 4.0, 5.0] and by_label["depth=2 min"] == [0.0, 1.0, 2.0, 3.0]
    page.select_option("#group", "")
    page.locator("#smooth").fill("0.5")
    page.wait_for_function("window.steplog.data('loss').length === 7")  # 3 runs: raw + smoothed each
    assert "smooth=0.5" in page.url and "group" not in page.url
    labels = page.evaluate("window.steplog.plot('loss').series.slice(1).map(s => s.label)")
    assert labels.count("a") == 1 and labels.count("a (smoothed)") == 1
    smoothed = dict(zip(labels, series_of(page, "loss")[1:]))["a (smoothed)"]
    assert smoothed[0] == 0.0 and smoothed[1] == pytest.approx((0.5 * 0.0 + 1.0) / 1.5)  # debiased EMA


def test_nan_and_inf_are_marked_on_the_chart_and_in_the_tooltip(root, open_page):
    with steplog.init(name="diverged", root=root) as run:
        for v in (1.0, 2.0, float("nan"), 3.0, float("inf")):
            run.log({"loss": v})
    page = open_page("?metrics=loss")
    assert series_of(page, "loss")[1] == [1.0, 2.0, None, 3.0, None]
    plot = page.locator(".panel[data-metric=loss] .u-over")
    x = page.evaluate("window.steplog.plot('loss').valToPos(2, 'x')")
    box = plot.bounding_box()
    page.mouse.move(box["x"] + x, box["y"] + 20)
    page.mouse.move(box["x"] + x + 1, box["y"] + 20)
    page.locator("#tooltip").wait_for(state="visible")
    assert "nan" in page.locator("#tooltip td.v").all_inner_texts()


def test_a_two_rank_run_shows_each_rank_and_a_chart_shows_one_rank_or_all(root, open_page):
    from test_ui_api import two_rank_run

    two_rank_run(root)  # two real processes; rank 1 died
    page = open_page("?metrics=loss&smooth=0")
    status = page.locator("#runs-body td.status")
    assert status.inner_text().split() == ["crashed", "×2", "⚠", "r1"]  # rank 1 crashed
    assert "rank 0: finished" in status.get_attribute("title") and "rank 1: crashed" in status.get_attribute("title")
    data = series_of(page, "loss")  # the default: rank 0
    assert len(data) == 2 and data[1] == [float(s) for s in range(40)]
    pick = page.locator(".panel[data-metric=loss] select.rank-pick")
    assert pick.evaluate("s => [...s.options].map(o => o.value)") == ["0", "1", "all"]
    pick.select_option("all")
    page.wait_for_function("window.steplog.data('loss').length === 3")
    xs, first, second = series_of(page, "loss")
    assert defined(first) == [float(s) for s in range(40)] and defined(second) == [100.0 + s for s in range(25)]
    assert page.locator(".panel[data-metric=loss] .legend").inner_text().split("\n") == ["ddp · rank 0", "ddp · rank 1"]
    assert "ranks=loss:all" in page.url
    pick.select_option("1")
    page.wait_for_function("window.steplog.data('loss').length === 2 && window.steplog.data('loss')[1][0] === 100")
    page.reload()
    page.wait_for_function("window.steplog && window.steplog.ready === true")
    assert series_of(page, "loss")[1] == [100.0 + s for s in range(25)]  # the URL kept the rank
    page.locator("#runs-body a.run-link").click()
    page.wait_for_selector("#run-body .ranks-table")
    rows = page.locator("#run-body .ranks-table tr").all_inner_texts()
    assert rows[1].split("\t")[:2] == ["0", "finished"] and rows[2].split("\t")[:2] == ["1", "crashed"]
    assert page.locator("#run-body .ranks-table td.status.crashed").count() == 1


def test_empty_root_unknown_runs_panel_order_and_a_stopped_server_are_said_plainly(root, browser):
    root.mkdir(parents=True)
    server = steplog.ui.serve(root, port=0)
    page = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True).new_page()
    try:
        page.goto(server.url)
        page.wait_for_function("window.steplog && window.steplog.ready === true")
        assert "No runs in this root yet" in page.locator("#empty").inner_text()
        with steplog.init(name="a", root=root) as run:
            run.log({"acc": 0.5, "zeta": 1.0, "val_loss": 2.0, "grad_norm": 1.0, "train_loss": 3.0})
        page.goto(server.url + f"?runs={run.id},nope")
        page.wait_for_function("window.steplog && window.steplog.ready === true")
        assert page.locator("#notice").inner_text() == "Not in this root (left out): nope"
        titles = page.locator(".panel-title").all_inner_texts()
        assert titles == ["train_loss", "val_loss", "acc", "grad_norm", "zeta"]  # losses first, then scores
        page.keyboard.press("m")
        page.keyboard.type("zz")
        assert page.locator("#empty").inner_text() == 'No metric matches "zz": clear the metric filter.'
        page.keyboard.press("Escape")
        assert page.locator(".panel").count() == 5 and "metrics=" not in page.url
        import shutil

        shutil.rmtree(run.dir)  # gone while the page shows it: a new x axis asks again
        page.select_option("#xaxis", "wallclock")
        page.wait_for_function("document.querySelector('#notice').textContent.startsWith('Cannot load a: ')")
        server.stop()
        page.wait_for_selector("#live.error", timeout=10_000)
        assert page.locator("#live").inner_text() == "server unreachable: retrying"
    finally:
        page.context.close()
        server.stop()


def test_with_many_metrics_only_the_panels_on_screen_are_fetched_and_drawn(root, open_page):
    with steplog.init(name="wide", root=root) as run:
        for step in range(50):
            run.log({f"m{k:02d}": float(k * 100 + step) for k in range(40)})
    page = open_page("?smooth=0")
    first = [r for r in page.evaluate("window.steplog.requests") if r.startswith("/api/series")]
    asked = {part.split("=")[1] for r in first for part in r.split("&") if part.startswith("metric=")}
    assert "m00" in asked and "m39" not in asked and len(asked) < 20  # the first screen, not all 40
    assert page.evaluate("window.steplog.data('m39')") is None  # not drawn while off screen
    page.locator(".panel[data-metric=m39]").scroll_into_view_if_needed()
    page.wait_for_function("(d => d && d.length === 2 && d[1].length === 50)(window.steplog.data('m39'))")
    assert series_of(page, "m39")[1] == [3900.0 + s for s in range(50)]
    assert series_of(page, "m00")[1] == [float(s) for s in range(50)]  # still there
