"""The README's Python example runs as written (on the real STS-PET cohort)."""

from __future__ import annotations

import re

import pytest

from radpipe.config import REPO_ROOT


@pytest.mark.realdata
def test_readme_python_blocks_run(data_dir, tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)  # whatever a block writes lands in a temporary folder
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})
    printed = capsys.readouterr().out
    match = re.search(r"(\d+) features, CV AUC ([0-9.]+)", printed)
    assert match and int(match.group(1)) == 14 + 18 and 0.5 < float(match.group(2)) <= 1.0
