import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import main as train_script
from conftest import ROOT, run_cli, tiny_model
from models.checkpoint import load_model
from utils.train.losses import RestorationLoss

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _args(data, results, *extra):
    return [
        "--data_path", data, "--model_path", results, "--fold", 0, "--img_size", 256, "--wf", 4, "--depth", 3,
        "--batch_size", 8, "--pred_batch", 8, "--num_workers", 0, "--initial_lr", 1e-3, "--no_progress", *extra,
    ]  # fmt: skip


def _metrics(run_dir):
    with open(run_dir / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def test_short_run_writes_everything(patch_data, tmp_path, capsys):
    argv = _args(patch_data, tmp_path, "--epochs", 2, "--exp_num", 7, "--steps_per_epoch", 2)
    code, out, err = run_cli(train_script, argv, capsys)
    assert code == 0, err
    run = tmp_path / "007"
    assert {"256_best.pth", "last.pth", "log.log", "metrics.csv", "curves.png"} <= {p.name for p in run.iterdir()}
    rows = _metrics(run)
    assert list(rows[0]) == ["epoch", "lr", "aug_version", "train_loss", "train_psnr", "val_psnr", "seconds"]
    assert [float(r["lr"]) for r in rows] == [0.0, pytest.approx(1e-3 / 3)]
    model, config, ckpt = load_model(run / "256_best.pth")  # rebuilt without flags
    assert config.wf == 4 and config.depth == 3
    assert set(ckpt) >= {"epoch", "state_dict", "optimizer"}
    assert "pretrained_weight/HINet-GoPro.pth not found" in err
    assert "best validation PSNR" in out


def test_resume_reaches_the_same_state(patch_data, tmp_path, capsys):
    full, split = tmp_path / "full", tmp_path / "split"
    # resumes before both switches; fixed-length epochs keep it short (the data order is seeded the same either way)
    common = ["--epochs", 2, "--aug_schedule", "1:1,2:3", "--restart_epoch", 2, "--steps_per_epoch", 3]
    assert run_cli(train_script, _args(patch_data, full, *common), capsys)[0] == 0
    assert run_cli(train_script, _args(patch_data, split, *common, "--run_epochs", 1), capsys)[0] == 0
    assert torch.load(split / "001" / "last.pth", weights_only=True)["epoch"] == 1
    code, _, err = run_cli(train_script, _args(patch_data, split, *common, "--resume"), capsys)
    assert code == 0, err
    a = torch.load(full / "001" / "last.pth", weights_only=True)
    b = torch.load(split / "001" / "last.pth", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    assert a["best_psnr"] == b["best_psnr"] and a["best_epoch"] == b["best_epoch"]
    for key, tensor in a["state_dict"].items():
        assert torch.allclose(tensor, b["state_dict"][key], atol=1e-6), key
    assert [r["lr"] for r in _metrics(full / "001")] == [r["lr"] for r in _metrics(split / "001")]
    assert [r["val_psnr"] for r in _metrics(full / "001")] == [r["val_psnr"] for r in _metrics(split / "001")]


def test_non_finite_loss_stops_and_keeps_last_good(patch_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(RestorationLoss, "forward", lambda self, outputs, target: outputs[1].mean() * float("nan"))
    code, _, err = run_cli(train_script, _args(patch_data, tmp_path, "--epochs", 2), capsys)
    assert code == 2 and "training diverged in epoch 1" in err and "--pretrained_path" in err
    assert torch.load(tmp_path / "001" / "last.pth", weights_only=True)["epoch"] == 0


BAD = {
    "no patch folder": (["--img_size", 128], r"no patch folder .*resize128.*python make_patch\.py --img_size 128 --stride 64 --resize 128"),
    "unknown arch": (["--arch", "UNet"], r"--arch UNet is not available"),
    "unknown optimizer": (["--optimizer", "SGD"], r"--optimizer SGD is not available"),
    "missing pretrained": (["--pretrained_path", "my/HINet.pth"], r"--pretrained_path my/HINet\.pth does not exist"),
    "multi gpu without torchrun": (["--multi_gpu"], r"launch with torchrun"),
    "resume without run": (["--resume"], r"last\.pth does not exist"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(patch_data, tmp_path, capsys, case):
    extra, message = BAD[case]
    code, _, err = run_cli(train_script, _args(patch_data, tmp_path / "r", "--epochs", 1, *extra), capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert pytest.importorskip("re").search(message, err), err


def test_bad_data(patch_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(patch_data, data)
    next((data / "train/10Folds/0/resize256/target").iterdir()).unlink()
    code, _, err = run_cli(train_script, _args(data, tmp_path / "r", "--epochs", 1), capsys)
    assert code == 2 and "have no partner" in err
    (data / "train_original/train_10fold.csv").unlink()
    code, _, err = run_cli(train_script, _args(data, tmp_path / "r", "--epochs", 1), capsys)
    assert code == 2


def test_weight_decay_is_applied():
    from utils.train.config import TrainConfig
    from utils.train.trainer import build_optimizer

    model = torch.nn.Linear(2, 2)
    assert build_optimizer(TrainConfig(), model, 1e-4).param_groups[0]["weight_decay"] == 0.0
    assert build_optimizer(TrainConfig(weight_decay=1e-3), model, 1e-4).param_groups[0]["weight_decay"] == 1e-3


def test_distributed_two_processes(patch_data, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def torchrun(*extra):
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(ROOT / "main.py"),
            *map(str, _args(patch_data, tmp_path, "--device", "cpu", "--steps_per_epoch", 2, *extra)),
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240)
        assert result.returncode == 0, result.stderr[-2000:]
        return result

    result = torchrun("--epochs", 1)
    assert "2 process(es) on cpu (gloo)" in result.stderr
    assert (tmp_path / "001" / "256_best.pth").is_file()
    assert len(_metrics(tmp_path / "001")) == 1
    assert result.stdout.count("best validation PSNR") == 1  # rank 0 alone reports
    result = torchrun("--epochs", 2, "--resume")
    assert [r["epoch"] for r in _metrics(tmp_path / "001")] == ["1", "2"]
    log = (tmp_path / "001" / "log.log").read_text()
    assert log.count("resumed after epoch 1") == 1 and log.count("| val PSNR") == 2  # written once, by rank 0
    assert torch.load(tmp_path / "001" / "last.pth", weights_only=True)["epoch"] == 2


@pytest.fixture
def own_data(patch_data, tmp_path):
    """A private copy of the patch data set, free to damage."""
    data = tmp_path / "data"
    shutil.copytree(patch_data, data)
    return data


def _patches(data):
    return data / "train/10Folds/0/resize256"


def _refused(data, results, capsys, *extra) -> str:
    code, _, err = run_cli(train_script, _args(data, results, "--epochs", 1, *extra), capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not results.exists() or not any(results.rglob("*.pth"))
    return err


def test_patches_are_paired_by_name(own_data, tmp_path, capsys):
    inputs = sorted((_patches(own_data) / "input").iterdir())
    targets = sorted((_patches(own_data) / "target").iterdir())
    inputs[0].unlink()  # one input and an unrelated target go missing: positions would shift silently
    targets[-1].unlink()
    err = _refused(own_data, tmp_path / "r", capsys)
    assert "1 input and 1 target patches have no partner" in err
    assert inputs[-1].name in err and targets[0].name in err


def test_a_patch_of_a_validation_image_is_refused(own_data, tmp_path, capsys):
    with open(own_data / "train_original/train_10fold.csv") as fh:
        val = next(r for r in csv.DictReader(fh) if r["fold"] == "0")
    src = sorted((_patches(own_data) / "input").iterdir())[0]
    shutil.copy(src, _patches(own_data) / "input" / f"00099_{val['input_img']}")
    shutil.copy(src, _patches(own_data) / "target" / f"00099_{val['label_img']}")
    err = _refused(own_data, tmp_path / "r", capsys)
    assert f"come from validation images of fold 0 (e.g. 00099_{val['input_img']})" in err


def test_patches_of_another_split_or_size_are_refused(own_data, tmp_path, capsys):
    info_file = _patches(own_data) / "patch_info.json"
    info = json.loads(info_file.read_text())
    info_file.write_text(json.dumps({**info, "settings": {**info["settings"], "folds": 10}}))
    err = _refused(own_data, tmp_path / "r", capsys)
    assert "were made with folds 10 (now 3)" in err and "--folds 3 --overwrite" in err
    info_file.write_text(json.dumps(info))
    first = sorted((_patches(own_data) / "input").iterdir())[0]
    cv2.imwrite(str(first), np.zeros((128, 128, 3), np.uint8))
    err = _refused(own_data, tmp_path / "r", capsys)
    assert f"patch {first} is 128x128, not 256x256" in err


def test_a_run_folder_is_cleared_only_of_its_own_files(patch_data, tmp_path, capsys):
    run = tmp_path / "r" / "001"
    run.mkdir(parents=True)
    for name in ("256_best.pth", "my_finetuned_best.pth", "metrics.csv"):  # a user's, in an unrecorded folder
        (run / name).write_text("mine")
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(train_script, _args(patch_data, tmp_path / "r", "--epochs", 1, *extra), capsys)
        assert code == 2 and "holds '256_best.pth', which this project did not write there" in err
    assert sorted(p.name for p in run.iterdir()) == ["256_best.pth", "metrics.csv", "my_finetuned_best.pth"]
    assert all(p.read_text() == "mine" for p in run.iterdir())
    shutil.rmtree(run)
    code, _, err = run_cli(
        train_script, _args(patch_data, tmp_path / "r", "--epochs", 1, "--steps_per_epoch", 1), capsys
    )
    assert code == 0, err
    code, _, err = run_cli(train_script, _args(patch_data, tmp_path / "r", "--epochs", 1), capsys)
    assert code == 2 and "already holds a run; pass --resume to continue it, --overwrite to replace it" in err
    (run / "draft.md").write_text("mine")
    code, _, err = run_cli(train_script, _args(patch_data, tmp_path / "r", "--epochs", 1, "--overwrite"), capsys)
    assert code == 2 and "'draft.md', which this project did not write" in err
    assert (run / "draft.md").read_text() == "mine" and (run / "last.pth").is_file()


def test_resume_needs_a_resumable_checkpoint(patch_data, tmp_path, capsys):
    assert run_cli(train_script, _args(patch_data, tmp_path, "--epochs", 1), capsys)[0] == 0
    shutil.copy(tmp_path / "001" / "256_best.pth", tmp_path / "001" / "last.pth")  # has no rng
    code, _, err = run_cli(train_script, _args(patch_data, tmp_path, "--epochs", 2, "--resume"), capsys)
    assert code == 2 and "is not a resumable checkpoint of this project (it lacks rng)" in err
    assert "--pretrained_path" in err


def _die_in_worker(self, idx):
    if torch.utils.data.get_worker_info() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("expected to run in a loader worker")


def test_a_killed_loader_worker_is_one_sentence(patch_data, tmp_path, capsys, monkeypatch):
    from utils.data.datasets import PatchDataset

    monkeypatch.setattr(PatchDataset, "__getitem__", _die_in_worker)
    code, _, err = run_cli(train_script, _args(patch_data, tmp_path, "--epochs", 1, "--num_workers", 1), capsys)
    last = err.strip().splitlines()[-1]  # after the run's log lines, one sentence and no traceback
    assert code == 2 and "Traceback" not in err and err.count("error:") == 1, err
    assert last.startswith("error: a data-loading worker process died in epoch 1") and "continue with --resume" in last


NONSENSE = {
    "gradient ascent": (["--clipping", -1], r"--clipping must be a positive number \(got -1\.0\)"),
    "negative learning rate": (["--initial_lr", -1e-4], r"--initial_lr must be a positive number"),
    "nan learning rate": (["--initial_lr", "nan"], r"--initial_lr must be a positive number \(got nan\)"),
    "negative weight decay": (["--weight_decay", -1], r"--weight_decay must be zero or a positive number"),
    "negative workers": (["--num_workers", -1], r"--num_workers must not be negative"),
    "no patience": (["--patience", 0], r"--patience must be at least 1"),
    "no epochs this time": (["--run_epochs", 0], r"--run_epochs must be at least 1"),
    "several at once": (["--clipping", 0, "--wf", 0], r"--clipping must be a positive number .*--wf must be at least 1"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(NONSENSE))
def test_nonsense_settings_are_refused_before_anything_is_written(patch_data, tmp_path, capsys, case):
    extra, message = NONSENSE[case]
    code, _, err = run_cli(train_script, _args(patch_data, tmp_path / "r", "--epochs", 1, *extra), capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert pytest.importorskip("re").search(message, err), err
    assert not (tmp_path / "r").exists()


def test_resume_refuses_recipe_changes_and_extends_epochs(patch_data, tmp_path, capsys):
    assert run_cli(train_script, _args(patch_data, tmp_path, "--epochs", 1, "--steps_per_epoch", 2), capsys)[0] == 0
    best = (tmp_path / "001" / "256_best.pth").read_bytes()
    code, _, err = run_cli(train_script, _args(patch_data, tmp_path, "--resume", "--wf", 16, "--clipping", 0.5), capsys)
    assert code == 2 and "--clipping 0.5 (the run has 1.0), --wf 16 (the run has 4) would change it" in err
    assert (tmp_path / "001" / "256_best.pth").read_bytes() == best
    code, _, err = run_cli(train_script, _args(patch_data, tmp_path, "--resume"), capsys)
    assert code == 2 and "reached --epochs 1 at epoch 1; pass a larger --epochs" in err
    code, out, err = run_cli(train_script, _args(patch_data, tmp_path, "--resume", "--epochs", 2), capsys)
    assert code == 0, err
    assert "changed on resume: --epochs 1 -> 2 (the cosine schedule now ends" in err
    assert [r["epoch"] for r in _metrics(tmp_path / "001")] == ["1", "2"]
    assert "(2 epochs" in out
    log = (tmp_path / "001" / "log.log").read_text()
    assert "epoch 1 trains at learning rate 0" in log


def test_the_output_head_is_trained_stored_and_kept_on_resume(patch_data, tmp_path, capsys):
    args = _args(patch_data, tmp_path, "--epochs", 1, "--steps_per_epoch", 2, "--output", "linear")
    assert run_cli(train_script, args, capsys)[0] == 0
    assert load_model(tmp_path / "001" / "last.pth")[1].output == "linear"
    assert load_model(tmp_path / "001" / "256_best.pth")[1].output == "linear"
    code, _, err = run_cli(train_script, _args(patch_data, tmp_path, "--resume", "--output", "sigmoid"), capsys)
    assert code == 2 and "--output sigmoid (the run has linear)" in err


def test_fine_tuning_takes_the_architecture_from_the_checkpoint(patch_data, tmp_path, capsys):
    first = _args(patch_data, tmp_path / "a", "--epochs", 1, "--steps_per_epoch", 1, "--output", "linear")
    assert run_cli(train_script, first, capsys)[0] == 0
    start = tmp_path / "a" / "001" / "256_best.pth"
    tuned = [
        "--data_path",
        patch_data,
        "--model_path",
        tmp_path / "b",
        "--img_size",
        256,
        "--batch_size",
        8,
        "--pred_batch",
        8,
        "--num_workers",
        0,
        "--no_progress",
        "--epochs",
        1,
        "--steps_per_epoch",
        1,
        "--initial_lr",
        1e-9,
        "--min_lr",
        0,
        "--pretrained_path",
        start,
    ]  # fmt: skip  (no --wf, --depth or --output)
    code, _, err = run_cli(train_script, tuned, capsys)
    assert code == 0, err
    model, config, _ = load_model(tmp_path / "b" / "001" / "last.pth")
    assert (config.wf, config.depth, config.output) == (4, 3, "linear")
    before = load_model(start)[0].state_dict()
    assert all(torch.allclose(before[k], v, atol=1e-6) for k, v in model.state_dict().items())  # lr 0, 1e-9
    code, _, err = run_cli(train_script, [*tuned, "--wf", 8, "--exp_num", 2], capsys)
    assert code == 2 and "is another architecture: --wf 8 (it has 4)" in err
    code, _, err = run_cli(train_script, [*tuned, "--img_size", 36, "--exp_num", 3], capsys)  # depth 3: multiples of 4
    assert code == 2 and "multiple of" not in err and "no patch folder" in err


def test_validation_leaves_the_training_layout_alone():
    from utils.infer.restorer import Restorer

    model = torch.nn.Conv2d(3, 3, 3)
    Restorer(model, torch.device("cpu"), channels_last=False)
    assert model.weight.is_contiguous()
    Restorer(model, torch.device("cpu"))
    assert model.weight.is_contiguous(memory_format=torch.channels_last)


def test_dataset_names_the_folder_make_patch_wrote(own_data, tmp_path, capsys):
    from utils.train.checks import check_data
    from utils.train.config import TrainConfig

    (own_data / "train" / "10Folds").rename(own_data / "train" / "Night")
    code, _, err = run_cli(train_script, _args(own_data, tmp_path / "r", "--epochs", 1), capsys)
    assert code == 2 and "no patch folder" in err
    train, val = check_data(TrainConfig(data_path=str(own_data), dataset="Night"), 1)
    assert len(train) == 52 and len(val) == 2 and all("/Night/" in str(p.input) for p in train)


def test_fixed_length_epochs_are_whole_shuffled_passes_dealt_out_by_rank():
    from utils.data.datasets import FixedLengthSampler

    alone = FixedLengthSampler(7, 20, epoch_seed=5)
    indices = list(alone)
    assert len(indices) == len(alone) == 20
    assert sorted(indices[:7]) == sorted(indices[7:14]) == list(range(7))  # each pass visits every patch once
    assert len(set(indices[14:])) == 6 and indices[:7] != indices[7:14]
    assert list(FixedLengthSampler(7, 20, 5)) == indices  # seeded by (seed, epoch) alone
    assert list(FixedLengthSampler(7, 20, 6)) != indices
    shares = [list(FixedLengthSampler(7, 20, 5, rank=r, world=3)) for r in range(3)]
    assert [len(s) for s in shares] == [7, 7, 6]
    assert sorted(i for s in shares for i in s) == sorted(indices)  # the ranks split one sequence


def test_steps_per_epoch_sets_the_batches_of_every_epoch(patch_data, tmp_path):
    from utils.core.distributed import Dist
    from utils.train.config import TrainConfig
    from utils.train.steps import make_loader

    cfg = TrainConfig(data_path=str(patch_data), batch_size=2, num_workers=0, steps_per_epoch=3)
    pairs = [object()] * 50  # the sampler only counts them
    assert len(make_loader(cfg, pairs, 1, 1, Dist(), torch.device("cpu"))) == 3
    cfg.steps_per_epoch = None
    assert len(make_loader(cfg, pairs, 1, 1, Dist(), torch.device("cpu"))) == 25  # the original: one pass


def test_the_model_config_travels_in_checkpoints(tmp_path):
    from models.hinet import HINet, HINetConfig
    from utils.core.errors import UserError

    config = HINetConfig(wf=6, depth=3, hin_position_left=1, hin_position_right=2)
    model = HINet(config)
    assert HINet(wf=6, depth=3, hin_position_left=1, hin_position_right=2).config == config
    torch.save({"state_dict": model.state_dict(), "model_config": config.to_dict()}, tmp_path / "m.pth")
    assert load_model(tmp_path / "m.pth")[1] == config
    bad = {**config.to_dict(), "width": 6}
    torch.save({"state_dict": model.state_dict(), "model_config": bad}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="stores an invalid model configuration"):
        load_model(tmp_path / "bad.pth")


def test_a_training_step_waits_for_the_device_once(monkeypatch):
    """Every value the host reads from a tensor (item, tolist) is a synchronisation on a GPU: one a step."""
    from utils.core.distributed import Dist
    from utils.core.errors import UserError
    from utils.core.log import get_logger
    from utils.data.augment import parse_aug_schedule
    from utils.train import trainer
    from utils.train.config import TrainConfig

    reads = []

    def counted(name, original):
        def read(self):
            caller = sys._getframe(1).f_code.co_filename  # the project's reads, not the optimiser's CPU step counts
            if "utils" in Path(caller).parts:
                reads.append(name)
            return original(self)

        return read

    for name in ("item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    batches = [(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)) for _ in range(3)]
    monkeypatch.setattr(trainer, "make_loader", lambda *args: batches)
    run = trainer.Run.__new__(trainer.Run)  # the run's own epoch loop, on three batches and no data folder
    run.cfg, run.d, run.device = TrainConfig(wf=4, depth=3, epochs=10, progress=False), Dist(), torch.device("cpu")
    run.model = run.net = tiny_model()
    run.optimizer = torch.optim.Adam(run.model.parameters(), lr=1e-3)
    run.criterion, run.scaler = RestorationLoss(), torch.amp.GradScaler("cpu", enabled=False)
    run.schedule, run.aug_schedule = run.cfg.schedule(), parse_aug_schedule(run.cfg.aug_schedule)
    run.train_pairs, run.logger = [], get_logger("hinet.test", enabled=False)
    before = next(run.model.parameters()).detach().clone()
    lr, _, (loss, psnr) = run.train_epoch(5)
    assert reads == ["tolist"] * 4  # one a step, and one for the epoch's means
    assert lr == run.schedule(5) > 0 and np.isfinite(loss) and np.isfinite(psnr)
    assert not torch.equal(before, next(run.model.parameters()))  # the steps updated the weights
    with torch.no_grad():
        next(run.model.parameters()).fill_(float("nan"))
    with pytest.raises(UserError, match="training diverged in epoch 5 \\(step 1: loss nan"):
        run.train_epoch(5)


def test_flare_free_validation_pairs_keep_scores_finite(tmp_path):
    """With --clean_share some validation pairs have input == target: returned unchanged they must not make the
    validation mean (and so the choice of the best epoch) infinite, nor the baseline in the log."""
    from types import SimpleNamespace

    from utils.train.run_log import baseline_note
    from utils.train.steps import validate

    class Unchanged(torch.nn.Module):
        def forward(self, x):
            return [x, x]

    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    flared = np.clip(clean.astype(int) + 30, 0, 255).astype(np.uint8)
    for name, image in {"clean": clean, "flared": flared}.items():
        cv2.imwrite(str(tmp_path / f"{name}.png"), image[..., ::-1])
    pair = SimpleNamespace
    pairs = [pair(input=tmp_path / "clean.png", target=tmp_path / "clean.png"),
             pair(input=tmp_path / "flared.png", target=tmp_path / "clean.png")]  # fmt: skip
    cfg = SimpleNamespace(img_size=256, pred_batch=4, val_blend="mean", amp=False, channels_last=False)
    score = validate(Unchanged(), pairs, cfg, torch.device("cpu"))
    flared_psnr = 10 * np.log10(255.0**2 / np.mean((flared.astype(float) - clean) ** 2))
    one_level = 10 * np.log10(255.0**2)  # 48.13 dB, every value one level off: no image scores higher
    assert np.isfinite(score) and score == pytest.approx((flared_psnr + one_level) / 2, abs=1e-6)
    note = baseline_note([float("inf"), 20.0, 30.0])
    assert "25.0000 dB" in note and "1 flare-free pairs left out" in note
    assert "no score to beat" in baseline_note([float("inf")])
