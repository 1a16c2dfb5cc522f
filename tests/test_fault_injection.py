"""The fault-injection benchmark in its short form: one SIGKILL of `mlvae train` at a random moment."""

import pytest


@pytest.mark.slow
def test_a_killed_training_resumes_to_the_uninterrupted_weights_with_no_file_corrupt(tmp_path, capsys):
    from benchmarks.fault_injection import main

    (row,) = main(["--kills", "1", "--parts", "train", "--out", str(tmp_path / "faults"), "--seed", "3"])
    assert row == {"part": "train", "faults": row["faults"], "recovered": 1, "corrupt": 0, "lost": 0, "left": 0}, row
    assert "| train |" in capsys.readouterr().out
