"""The ablation study: its plan, its report, and a real (tiny) study that is interrupted and continued."""

import csv
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import ROOT, run_cli
from scripts import ablation
from scripts.ablation_plan import CSV_COLUMNS, StudySettings, auto_thresholds, inference_variants, training_variants
from scripts.ablation_report import markdown, paired_change, verdict
from scripts.flare_data import generate
from utils.flare.data_settings import FlareDataSettings


def test_variants_switch_one_technique_at_a_time():
    by_name = {v.name: v for v in training_variants((200, 1000, 3000), (1, 2, 3))}
    neither, larger, threshold, both = by_name["neither"], by_name["larger"], by_name["threshold"], by_name["both"]
    assert (neither.v_threshold, neither.growth, neither.aug_schedule) == (0, 1, "1:1")
    assert (larger.v_threshold, larger.growth) == (0, 2)
    assert (threshold.v_threshold, threshold.growth) == (1000, 1)
    assert (both.v_threshold, both.growth, both.aug_schedule) == (1000, 2, "1:1")
    assert by_name["flips"].aug_schedule == "1:3" and by_name["full"].aug_schedule is None
    # the full recipe is not run twice: growth 2 and threshold 1000 are the full recipe itself
    assert "growth2" not in by_name and "threshold1000" not in by_name
    assert {"growth1", "growth3", "threshold200", "threshold3000", "full352"} <= set(by_name)
    assert by_name["growth3"].label == "patch sets 256+512+768"
    assert len({v.dataset for v in by_name.values()}) == 7  # 12 variants, patch sets shared where the data agree
    assert {v.compare_with for v in inference_variants()} >= {"single352", "ensemble"}


def test_thresholds_span_the_lit_crops():
    counts = np.array([0] * 50 + list(range(1, 101)) * 10)  # dim data: the original's 1000 lies above them all
    assert auto_thresholds(counts) == (26, 50, 90)
    assert auto_thresholds(counts * 30) == (770, 1000, 2700)  # 1000 lies inside: it replaces the median (1500)
    assert auto_thresholds(np.zeros(10)) == ()


def test_a_change_is_called_noise_only_within_its_spread():
    a, b = {1: 22.0, 2: 22.4}, {1: 21.0, 2: 21.6}
    change = paired_change(a, b)
    assert change[0] == pytest.approx(0.9) and change[1] == pytest.approx(np.std([1.0, 0.8], ddof=1))
    assert verdict(change, +0.3) == "yes"
    assert verdict(change, -0.3) == "no"
    assert verdict((0.1, 0.5), 2.0) == "within noise"
    assert verdict((0.1, None), -1.0) == "no (one seed: no spread)"
    assert verdict(change, None) == "—"


def test_without_test_labels_the_table_compares_validation_scores():
    rows = [{"kind": "training", "variant": name, "seed": str(seed), "patches": "9", "steps": "4", "minutes": "1",
             "val_psnr": str(val), "test_psnr": "", "test_ssim": ""}
            for name, seed, val in (("both", 1, 21.0), ("both", 2, 21.2), ("flips", 1, 21.5), ("flips", 2, 21.6))]  # fmt: skip
    table = markdown(rows, training_variants((), ()), inference_variants(), StudySettings(), [])
    assert "our change (validation)" in table and "the inference variants were not run" in table
    flips = next(line for line in table.splitlines() if line.startswith("| + flip/rotate/colour"))
    assert "| +0.45 ± 0.07 | -0.18 | no |" in flips  # (0.5 + 0.4) / 2, against the original's -0.18 public


def _flags(data, out, *extra):
    return ["--quick", "--epochs", "1", "--steps_per_epoch", "1", "--folds", "4", "--data_path", str(data),
            "--out", str(out), "--device", "cpu", *extra]  # fmt: skip


def _study(data, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "scripts.ablation", *_flags(data, out, *extra)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip


def _rows(out):
    with open(out / "ablation.csv") as fh:
        return list(csv.DictReader(fh))


def test_quick_study_is_interrupted_and_continues_without_repeating_runs(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "study"
    tiny_bank = {"psf_count": 3, "psf_grid": 128, "psf_size": 64}
    # 512: the full recipe's larger crops need it
    generate(FlareDataSettings(data, 4, 1, 512, 640, progress=False, **tiny_bank))
    for image in [*(data / "test_input_img").glob("*.png"), *(data / "test_label_img").glob("*.png")]:
        cv2.imwrite(str(image), cv2.resize(cv2.imread(str(image)), (160, 128)))  # a small test image: fast TTA
    only = ["--only", "full,full352", "--thresholds", "500"]
    first = _study(data, out, *only)
    log_352 = out / "runs" / "full352_s1" / "001" / "log.log"
    deadline = time.time() + 180
    while not (log_352.is_file() and "best validation PSNR" in log_352.read_text()):  # written when training ends
        assert first.poll() is None and time.time() < deadline, first.stdout.read()
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGTERM)  # the 352 run has trained; stopped before its row is written
    first.wait(timeout=60)
    assert first.returncode != 0
    assert [r["variant"] for r in _rows(out)] == ["full"]
    kept = _rows(out)[0]

    second = _study(data, out, *only)
    output = second.communicate(timeout=240)[0]
    assert second.returncode == 0, output
    assert "1 finished run(s) are kept" in output
    assert "$ python main.py" not in output  # neither the finished 256 run nor the trained 352 run is repeated
    assert sum(line.startswith("$ python test.py") for line in output.splitlines()) == 5  # 352 evaluated, 4 variants
    rows = _rows(out)
    assert rows[0] == kept
    assert [r["variant"] for r in rows] == ["full", "full352"] + [v.name for v in inference_variants()]
    assert list(rows[0]) == CSV_COLUMNS
    for row in rows:
        assert 0 < float(row["test_psnr"]) < 60 and 0 < float(row["test_ssim"]) <= 1
    assert rows[0]["steps"] == "1" and int(rows[0]["patches"]) > 0 and rows[0]["val_psnr"]
    assert {"ablation.md", "ablation.png", "ablation.csv", "study.json"} <= {p.name for p in out.iterdir()}
    table = (out / "ablation.md").read_text()
    assert "| + adaptive augmentation (full recipe) |" in table and "31.97 / 30.62" in table

    code, _, err = run_cli(ablation, _flags(data, out, "--thresholds", "700"), capsys)  # other settings: refused
    assert code == 2 and "holds a study made with other settings (thresholds [500] -> [700])" in err
    assert _rows(out) == rows
