"""The README's Python code blocks run as written (in order, sharing one namespace)."""

import os
import re
import shutil
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    return [textwrap.dedent(block)  # blocks indented under a list item lose their common indentation only
            for block in re.findall(r"^ *```python\n(.*?)^ *```", text, flags=re.M | re.S)]


@pytest.mark.slow
def test_readme_python_blocks_run(exported, tmp_path, monkeypatch):
    """Epochs are cut to 1 to keep the suite fast; the serving block reads the session's export,
    copied where the README's export command puts it."""
    blocks = _python_blocks()
    assert len(blocks) >= 3
    shutil.copytree(exported[1], tmp_path / "savedmodels" / "digits")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(compile(re.sub(r"epochs=\d+", "epochs=1", block), "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["x_mean"].shape == (6, 8, 8, 1)
    assert namespace["groups_out"]["content_mean"].shape == (3, exported[0].content_dim)
    assert (tmp_path / "m.keras").exists()
    assert namespace["svi_groups"]["content_mean"].shape == (3, 10)  # the baselines block
    assert {type(m).__name__ for m in namespace["baselines"].values()} == {"VAE", "RegularisedVAE", "SVI"}
    assert namespace["spread"].distribute_strategy is namespace["strategy"]  # the tf.distribute block
