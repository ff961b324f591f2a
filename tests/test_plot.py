"""Plots: a PNG of the requested size that is not blank; clear errors."""

from __future__ import annotations

import pytest

import steplog
from steplog.plot import plot_curves

image = pytest.importorskip("matplotlib.image")


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
    path = plot_curves(["lr=0.001", "lr=0.003", "lr=0.01"], ["train_loss", "val_loss"], root=sweep, x=x,
                       smooth=smooth, logy=logy, output=out, size=(900, 600))
    assert path == out and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(out)
    assert pixels.shape[:2] == (600, 900)
    assert pixels[..., :3].var() > 0.01  # lines and text, not an empty canvas
    colored = (abs(pixels[..., 0] - pixels[..., 2]) > 0.2).mean()
    assert colored > 0.001  # the coloured curves are there


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
    assert plot_curves(ids, ["loss"], root=root, output=tmp_path / "p.png").exists()
