"""The file formats: each writer's output read back by its reader, and malformed files refused
with an error naming the file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from n2v_repro.backends.registry import FRAMEWORKS, STOCK_FRAMEWORKS
from n2v_repro.io import formats
from n2v_repro.io.formats import FormatError
from n2v_repro.references.registry import REFERENCE_NAMES
from n2v_repro.report.figures import FRAMEWORK_COLOURS
from n2v_repro.report.figures_eval import FRAMEWORK_OFFSET

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_train_source_round_trip(tmp_path: Path) -> None:
    images = [np.arange(6, dtype=np.float32).reshape(2, 3), np.full((3, 2), 7.5, np.float32)]
    formats.write_train_pixels(tmp_path / "train.npy", images)
    formats.write_train_index(tmp_path / "index.csv", [("a", 0, 2, 3), ("b", 6, 3, 2)])
    pixels = formats.read_train_pixels(tmp_path / "train.npy")
    assert isinstance(pixels, np.memmap)
    np.testing.assert_array_equal(pixels, np.concatenate([i.ravel() for i in images]))
    ids, offsets, heights, widths = formats.read_train_index(tmp_path / "index.csv")
    assert ids == ("a", "b") and offsets.tolist() == [0, 6]
    assert heights.tolist() == [2, 3] and widths.tolist() == [3, 2]


@pytest.mark.parametrize(
    ("stats", "message"),
    [
        ({"mean": 1.0, "std": 0.0}, "std > 0"),
        ({"mean": 1.0}, "keys 'mean' and 'std'"),
        ({"mean": "x", "std": 1}, "mean must be a number"),
        ({"mean": 1, "std": True}, "std must be a number"),
        ([1, 2], "JSON object"),
    ],
)
def test_train_stats_are_checked(tmp_path: Path, stats: object, message: str) -> None:
    path = tmp_path / "train_stats.json"
    path.write_text(json.dumps(stats))
    with pytest.raises(FormatError, match=f"train_stats.json: .*{message}"):
        formats.read_train_stats(path)


def test_train_stats_round_trip_and_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "train_stats.json"
    formats.write_train_stats(path, {"mean": 110.5, "std": 60, "n_images": 2, "n_pixels": 9})
    assert formats.read_train_stats(path) == (110.5, 60.0)
    path.write_text("{not json")
    with pytest.raises(FormatError, match="train_stats.json: not valid JSON"):
        formats.read_train_stats(path)


def test_weights_and_bundles(tmp_path: Path) -> None:
    weights = {
        "conv.weight": np.ones((2, 1, 3, 3), np.float32),
        "conv.bias": np.zeros(2, np.float32),
    }
    formats.save_weights(tmp_path / "w.npz", weights)
    loaded = formats.load_weights(tmp_path / "w.npz")
    assert loaded.keys() == weights.keys()
    for name, value in weights.items():
        np.testing.assert_array_equal(loaded[name], value)
    formats.save_weights(tmp_path / "empty.npz", {})
    with pytest.raises(FormatError, match=r"empty\.npz: holds no weights"):
        formats.load_weights(tmp_path / "empty.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(FormatError, match="single array"):
        formats.load_npz(tmp_path / "single.npy")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(FormatError, match=r"broken\.npz: not a readable \.npz"):
        formats.load_npz(tmp_path / "broken.npz")
    bundle = {"weights/a": np.ones(1), "weights/b.c": np.ones(2), "best/a": np.zeros(1)}
    assert sorted(formats.arrays_under(bundle, "weights")) == ["a", "b.c"]


def test_history_round_trip_and_header_check(tmp_path: Path) -> None:
    rows = [
        {column: float(epoch + n) for n, column in enumerate(formats.HISTORY_COLUMNS)}
        for epoch in (1, 2)
    ]
    formats.write_history(tmp_path / "history.csv", rows)
    columns = formats.read_history(tmp_path / "history.csv")
    assert list(columns) == list(formats.HISTORY_COLUMNS)
    assert columns["lr"].tolist() == [2.0, 3.0]
    (tmp_path / "other.csv").write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(FormatError, match=r"other\.csv: expected the header epoch,lr,"):
        formats.read_history(tmp_path / "other.csv")


def test_monitor_lines_and_a_killed_runs_cut_line(tmp_path: Path) -> None:
    line = formats.monitor_line([0.5, 120, 800.25, None, None, 3.0])
    assert line == "0.500,120.000,800.250,,,3.000"
    with pytest.raises(ValueError, match="6 values"):
        formats.monitor_line([1.0])
    path = tmp_path / "monitor.csv"
    path.write_text(f"{formats.MONITOR_HEADER}\n{line}\n1.000,1\n")
    columns = formats.read_monitor(path)
    assert columns["time_s"].tolist() == [0.5, 1.0]
    assert columns["cpu_percent"].tolist() == [120.0, 1.0]
    assert math.isnan(columns["rss_mib"][1]) and np.isnan(columns["gpu_mem_mib"]).all()


def test_benchmark_needs_the_wall_time_column(tmp_path: Path) -> None:
    path = tmp_path / "bench.tsv"
    path.write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\tNA\n")
    columns = formats.read_benchmark(path)
    assert columns["s"].tolist() == [12.5] and math.isnan(columns["max_rss"][0])
    path.write_text("h:m:s\n0:00:12\n")
    with pytest.raises(FormatError, match=r"bench\.tsv: .*column 's'"):
        formats.read_benchmark(path)


def test_per_image_round_trip(tmp_path: Path) -> None:
    rows = [{"id": "3096", "subset": "test", "weights": "last", "psnr": 28.1234567, "ssim": 0.5}]
    formats.write_per_image(tmp_path / "per_image.csv", rows)
    assert "28.123457" in (tmp_path / "per_image.csv").read_text()
    assert formats.read_per_image(tmp_path / "per_image.csv") == [
        {"id": "3096", "subset": "test", "weights": "last", "psnr": 28.123457, "ssim": 0.5}
    ]


def test_eval_summary_names_its_run(tmp_path: Path) -> None:
    summary = {key: None for key in formats.EVAL_SUMMARY_KEYS} | {"framework": "jittor"}
    formats.write_eval_summary(tmp_path / "summary.json", summary)
    assert formats.read_eval_summary(tmp_path / "summary.json")["framework"] == "jittor"
    with pytest.raises(ValueError, match="'sigma'"):
        formats.write_eval_summary(tmp_path / "x.json", {k: 1 for k in summary if k != "sigma"})
    (tmp_path / "old.json").write_text(json.dumps({"test_sets": {}}))
    with pytest.raises(FormatError, match=r"old\.json: lacks the keys \['recipe', 'framework'"):
        formats.read_eval_summary(tmp_path / "old.json")


def test_parity_files_round_trip(tmp_path: Path) -> None:
    record = {column: f"v{n}" for n, column in enumerate(formats.PARITY_COLUMNS)}
    formats.write_parity_csv(tmp_path / "parity.csv", [record])
    assert formats.read_parity_csv(tmp_path / "parity.csv") == [record]
    formats.write_parity_json(tmp_path / "parity.json", 1e-4, "definition", [record])
    assert formats.read_parity_json(tmp_path / "parity.json")["tolerance"] == 1e-4
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(FormatError, match=r"bad\.json: .*'tolerance'"):
        formats.read_parity_json(tmp_path / "bad.json")


def test_gray_png_round_trip_and_mode_check(tmp_path: Path) -> None:
    picture = np.arange(12, dtype=np.uint8).reshape(3, 4)
    formats.write_gray_png(tmp_path / "a.png", picture)
    np.testing.assert_array_equal(formats.read_gray_png(tmp_path / "a.png"), picture)
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(
        FormatError, match=r"rgb\.png: expected an 8-bit gray \(L\) PNG, got mode RGB"
    ):
        formats.read_gray_png(tmp_path / "rgb.png")


def test_the_frameworks_are_listed_once() -> None:
    """The config schema and the report's per-framework styles follow backends.registry."""
    schema = yaml.safe_load((REPO_ROOT / "workflow/schemas/config.schema.yaml").read_text())
    frameworks = schema["properties"]["frameworks"]
    assert tuple(frameworks["items"]["enum"]) == FRAMEWORKS
    assert tuple(frameworks["default"]) == STOCK_FRAMEWORKS
    assert set(FRAMEWORK_COLOURS) == set(FRAMEWORKS) | set(REFERENCE_NAMES)
    assert tuple(schema["properties"]["references"]["items"]["enum"]) == REFERENCE_NAMES
    assert set(FRAMEWORK_OFFSET) == set(FRAMEWORKS)


@pytest.mark.parametrize(
    ("b", "problem"),
    [
        (np.array([1.0, np.inf], np.float32), r"NaN or infinite values in 1 of 2 arrays \(b\)"),
        (np.ones(2, np.float16), r"not float32 in 1 of 2 arrays \(b float16\)"),
        (np.ones(2, np.int64), r"not float32 in 1 of 2 arrays \(b int64\)"),
    ],
)
def test_unusable_weights_are_refused_where_any_caller_reads_them(
    tmp_path: Path, b: np.ndarray, problem: str
) -> None:
    """The one reader of weight files (initial weights, evaluation, denoise command, export)
    refuses NaN/inf and any dtype but float32, which the networks would cast silently."""
    path = tmp_path / "last.npz"
    formats.save_weights(path, {"a": np.ones(3, np.float32), "b": b})
    with pytest.raises(formats.UnusableWeightsError, match=r"last\.npz: " + problem):
        formats.load_weights(path)
