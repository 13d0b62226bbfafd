import pytest

from utils.files import has_files, staged_dir


def test_staged_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "out"
    with staged_dir(target) as stage:
        (stage / "a.txt").write_text("first")
    assert (target / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError), staged_dir(target) as stage:
        (stage / "b.txt").write_text("half")
        raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]  # the earlier result, unmixed
    with staged_dir(target) as stage:
        (stage / "c.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_failed_run_removes_the_parents_it_created(tmp_path):
    with pytest.raises(RuntimeError), staged_dir(tmp_path / "x" / "y" / "out"):
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    assert not has_files(tmp_path) and not has_files(tmp_path / "missing")
    (tmp_path / "f").write_text("")
    assert has_files(tmp_path)
