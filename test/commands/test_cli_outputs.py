"""Issue 15, item 8: unwritable outputs are one `error:` line and exit 2 before any work is done, and
`predict` on only corrupt images leaves nothing behind."""
from __future__ import annotations

import pytest

from panoptic_perception import cli

UNWRITABLE = "/proc/no_such_process/out"  # not creatable, whoever runs the tests (root included)


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    from panoptic_perception.data.synth import small_config
    from panoptic_perception.data.synth.writer import DriveWriter

    writer = DriveWriter(tmp_path_factory.mktemp("synth"), small_config(160, 48), seed=4)
    writer.write(1)
    return writer.drive


def _one_error_line(capsys, option: str) -> None:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {option} {UNWRITABLE}") and "cannot be written" in lines[0]


def test_eval_checks_json_before_evaluating(tmp_path, monkeypatch, capsys):
    import panoptic_perception.eval.pq as pq

    def must_not_run(*args, **kwargs):
        raise AssertionError("the evaluation ran before the output was checked")

    monkeypatch.setattr(pq, "evaluate_dirs", must_not_run)
    argv = ["eval", "--gt-json", str(tmp_path / "gt.json"), "--gt-dir", str(tmp_path), "--pred-json",
            str(tmp_path / "p.json"), "--pred-dir", str(tmp_path), "--json", f"{UNWRITABLE}/pq.json"]
    assert cli.main(argv) == 2
    _one_error_line(capsys, "--json")


def test_predict_checks_out_before_loading_the_model(drive, tmp_path, monkeypatch, capsys):
    import panoptic_perception.pipeline as pipeline

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(pipeline, "Pipeline", must_not_run)
    assert cli.main(["predict", "--input", str(drive), "--out", UNWRITABLE]) == 2
    _one_error_line(capsys, "--out")


def test_kitti2bag_checks_out_before_converting(drive, capsys):
    assert cli.main(["kitti2bag", "--drive", str(drive), "--out", f"{UNWRITABLE}/drive.bag"]) == 2
    _one_error_line(capsys, "--out")


def test_a_folder_is_not_a_file_and_missing_folders_are_left_missing(tmp_path):
    from panoptic_perception.commands._outputs import check_writable
    from panoptic_perception.errors import ConfigError

    with pytest.raises(ConfigError, match="is a folder, not a file"):
        check_writable(tmp_path, "--json")
    check_writable(tmp_path / "a" / "b" / "out.json", "--json")
    assert not (tmp_path / "a").exists(), "the check must not leave the folders it tried"


def test_predict_on_only_corrupt_images_leaves_nothing(tiny_model, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "pred"
    code = cli.main(["predict", "--model", str(tiny_model), "--input", str(folder), "--out", str(out),
                     "--backend", "torch"])
    assert code != 0
    assert not out.exists(), f"left behind: {sorted(p.name for p in out.rglob('*'))}"
    assert "error: none of the 2 images" in capsys.readouterr().err
