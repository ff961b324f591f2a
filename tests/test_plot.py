"""Plots: a PNG of the requested size holding one curve per run, in its colour; clear errors."""

from __future__ import annotations

import matplotlib.image as image  # the plot extra is in the test extra: never skipped
import numpy as np
import pytest

import steplog
from steplog.plot import plot_curves

#: matplotlib's default colours C0, C1, C2, C3, which plot_curves gives the runs in order.
SERIES = [(0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C), (0xD6, 0x27, 0x28)]


def pixels_of(pixels: np.ndarray, rgb: tuple[int, int, int]) -> int:
    """How many pixels of the image have (nearly) exactly this colour."""
    target = np.array(rgb) / 255
    return int((np.abs(pixels[..., :3] - target) < 0.04).all(axis=-1).sum())


@pytest.fixture
def sweep(root):
    for lr in (1e-3, 3e-3, 1e-2):
        with steplog.init(name=f"lr={lr}", root=root) as run:
            for step in range(200):
                run.log({"train_loss": 3.0 / (1 + lr * 100 * step), "wallclock_like": float(step)})
                if step % 50 == 0:
                    run.log({"val_loss": 3.2 / (1 + lr * 100 * step)}, step=step)
    return root


@pytest.mark.parametrize("x, smooth, logy", [("step", None, False), ("wallclock", 10, True), ("time", 3, False)])
def test_plot_is_a_png_of_the_requested_size_and_not_blank(sweep, tmp_path, x, smooth, logy):
    out = tmp_path / "curves.png"
    path = plot_curves(
        ["lr=0.001", "lr=0.003", "lr=0.01"],
        ["train_loss", "val_loss"],
        root=sweep,
        x=x,
        smooth=smooth,
        logy=logy,
        output=out,
        size=(900, 600),
    )
    assert path == out and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(out)
    assert pixels.shape[:2] == (600, 900)
    assert pixels[..., :3].var() > 0.01  # lines and text, not an empty canvas
    for run, rgb in zip(("lr=0.001", "lr=0.003", "lr=0.01"), SERIES):
        assert pixels_of(pixels, rgb) > 300, f"the curve of {run} is missing"
    assert pixels_of(pixels, SERIES[3]) == 0  # three runs, three colours


def test_unknown_metric_suggests_close_names(sweep, tmp_path):
    with pytest.raises(ValueError, match="did you mean 'train_loss'"):
        plot_curves(["lr=0.001"], ["train_los"], root=sweep, output=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_bad_arguments(sweep, tmp_path):
    with pytest.raises(ValueError, match="x='epoch'"):
        plot_curves(["lr=0.001"], x="epoch", root=sweep)
    with pytest.raises(ValueError, match="smooth"):
        plot_curves(["lr=0.001"], smooth=0, root=sweep)
    with pytest.raises(steplog.RunNotFoundError):
        plot_curves(["nope"], root=sweep)
    with pytest.raises(OSError, match="cannot write the plot"):
        plot_curves(["lr=0.001"], root=sweep, output=tmp_path / "no" / "dir" / "x.png")


def test_same_name_runs_get_their_id_in_the_legend(root, tmp_path):
    ids = []
    for _ in range(2):
        with steplog.init(name="same", root=root) as run:
            run.log({"loss": 1.0})
            run.log({"loss": 0.5})
        ids.append(run.id)
    pixels = image.imread(plot_curves(ids, ["loss"], root=root, output=tmp_path / "p.png"))
    assert pixels_of(pixels, SERIES[0]) > 20 and pixels_of(pixels, SERIES[1]) > 20  # both runs drawn
    assert pixels_of(pixels, SERIES[2]) == 0


def test_the_image_holds_only_the_runs_asked_for(sweep, tmp_path):
    pixels = image.imread(plot_curves(["lr=0.003"], ["train_loss"], root=sweep, output=tmp_path / "one.png"))
    assert pixels_of(pixels, SERIES[0]) > 300 and pixels_of(pixels, SERIES[1]) == 0
