"""bench.gpu_session's pieces: the schedule that fits the time left, the parts a GPU machine can hand back, the
commands stopped at their time limit, and the settings it changes."""

import sys
import time

import torch

from bench import gpu_session


def test_the_schedule_plans_the_share_of_the_measured_rate_that_main_py_reaches():
    epochs, steps = gpu_session.schedule(rate=779.5, seconds=241.1, batch=32, epochs=16)
    assert epochs == 16
    planned = epochs * steps * 32
    assert 0.55 * 779.5 * 241.1 - 16 * 32 < planned <= 0.55 * 779.5 * 241.1
    assert gpu_session.schedule(rate=40, seconds=60, batch=32, epochs=16) == (2, 20)  # 20 steps an epoch at least
    assert gpu_session.schedule(rate=1, seconds=10, batch=32, epochs=16) == (1, 1)


def test_a_file_larger_than_a_part_is_cut_into_parts_that_join_back(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_session, "PART", 10)
    small, large = tmp_path / "small.pth", tmp_path / "starter.pth"
    small.write_bytes(b"0123456789")
    data = bytes(range(25))
    large.write_bytes(data)
    assert gpu_session.parts(small) == [small] and small.read_bytes() == b"0123456789"
    pieces = gpu_session.parts(large)
    assert [p.name for p in pieces] == ["starter.pth.part00", "starter.pth.part01", "starter.pth.part02"]
    assert b"".join(p.read_bytes() for p in pieces) == data and not large.exists()


def test_a_command_past_its_time_is_stopped_and_logged(tmp_path):
    session = gpu_session.Session(tmp_path / "out", minutes=1, device=torch.device("cpu"))
    start = time.time()
    code = session.command([sys.executable, "-c", "import time; time.sleep(60)"], seconds=1)
    assert code != 0 and time.time() - start < 30
    log = (tmp_path / "out" / "session.log").read_text()
    assert "$ python -c" in log and "stopped at its time limit (1 s)" in log
    assert gpu_session.Session.left(session) < 60


def test_a_failed_step_is_logged_and_the_run_goes_on(tmp_path):
    session = gpu_session.Session(tmp_path / "out", minutes=1, device=torch.device("cpu"))
    assert session.step("broken", lambda: 1 / 0) is None
    assert session.step("fine", lambda x: x + 1, 1) == 2
    log = (tmp_path / "out" / "session.log").read_text()
    assert "broken: FAILED" in log and "ZeroDivisionError" in log and "fine: done" in log


def test_the_data_leaves_four_cores_to_the_gpu_measurements_and_the_plan_changes_the_preset():
    changes = gpu_session.changes_of(gpu_session.QUICK, cores=64)
    assert changes["scripts.flare_data"]["workers"] == 12 and changes["make_patch.py"]["process_num"] == 12
    assert changes["main.py"]["wf"] == 4 and changes["scripts.flare_data"]["train_count"] == 8
    assert gpu_session.changes_of(gpu_session.Plan(), cores=2)["scripts.flare_data"] == {"workers": 1}


def test_a_run_that_cannot_start_is_one_sentence(tmp_path, capsys):
    from conftest import run_cli

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "gpu_report.json").write_text("{}")
    cases = {
        ("--minutes", "0", "--device", "cpu"): "--minutes 0.0 leaves no time",
        ("--device", "cuda"): "CUDA is not available here",
        ("--out", str(tmp_path / "used"), "--device", "cpu"): "is not an empty folder",
    }
    for extra, message in cases.items():
        argv = ["--out", str(tmp_path / "new"), *extra]
        if torch.cuda.is_available() and "cuda" in extra:
            continue
        code, out, err = run_cli(gpu_session, argv, capsys)
        assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "new").exists()  # nothing was started


def test_stopping_the_session_stops_its_commands_and_starts_no_more(tmp_path):
    import threading

    session = gpu_session.Session(tmp_path / "out", minutes=1, device=torch.device("cpu"))
    codes = []
    worker = threading.Thread(
        target=lambda: codes.extend(
            session.command([sys.executable, "-c", "import time; time.sleep(60)"], seconds=60) for _ in range(2)
        )
    )
    start = time.time()
    worker.start()
    while not session.children and time.time() - start < 20:
        time.sleep(0.05)
    session.stop_all()
    worker.join(timeout=30)
    assert not worker.is_alive() and time.time() - start < 30
    assert codes[0] != 0 and codes[1] == -15  # the second command never started
    assert (tmp_path / "out" / "session.log").read_text().count("$ python -c") == 1


def test_the_card_is_the_preset_with_what_the_session_changed():
    from scripts.starter import starter_card
    from utils.presets import PRESETS

    card = starter_card("gpu", 8.94, {"main.py": {"epochs": 3}, "scripts.flare_data": {"workers": 5}})
    preset = PRESETS["starter-gpu"]
    assert card["profile"] == "gpu" and card["preset"] == "starter-gpu" and card["minutes"] == 8.9
    assert card["epochs"] == 3 and card["workers"] == 5 and preset.training["epochs"] != 3
    assert card["wf"] == preset.training["wf"] and card["height"] == preset.data["height"]
