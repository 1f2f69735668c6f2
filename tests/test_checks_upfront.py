"""Checks made before any unit trains or any worker starts: a profile with a repeated key, a
device this code cannot use or this machine does not have, a unit larger than the machine's
memory, a row cap that leaves a part of the split (nearly) empty. Each is refused with exit
status 2 and a one-line message naming the profile file and the key; nothing is trained and
no output folder is made."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from asymlib.execution.cli import main
from asymlib.sections.deep_ensembles import DeepEnsembleSettings
from asymlib.sections.units import ShardStore

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())


def _profile(tmp_path: Path, name: str = "p", **deep_ensembles) -> Path:
    """The smoke profile's deep-ensemble section on churn, with ``deep_ensembles`` changed."""
    section = {**SMOKE["deep_ensembles"], "datasets": ["churn"], **deep_ensembles}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"deep_ensembles": section}, sort_keys=False))
    return path


def _refused(capsys, tmp_path: Path, *args: str | Path) -> str:
    """Run ``asymlib ARGS --out tmp_path/runs``; assert exit 2, one line on stderr and no
    output folder; return the line."""
    out = tmp_path / "runs"
    assert main([*map(str, args), "--out", str(out), "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert not out.exists()
    return lines[0]


# --------------------------------------------------------------------------- repeated keys


DUPLICATED = """\
deep_ensembles:
  datasets: [churn]
  hidden_sizes: [8]
  members: 4
  ensemble_sizes: [2, 4]
  repeats: 1
  seed: 0
  max_epochs: 3
  patience: 2
  max_rows: 1500
  workers: 1
  threads: null
  members: 64
"""


@pytest.mark.parametrize("command", ["run", "train"])
def test_a_profile_with_a_key_twice_is_refused(tmp_path, capsys, command):
    path = tmp_path / "twice.yaml"
    path.write_text(DUPLICATED)
    line = _refused(capsys, tmp_path, command, path)
    assert line == (
        f"asymlib {command}: {path}: deep_ensembles.members appears twice (lines 4 and 13); each key may appear once"
    )


def test_a_repeated_key_is_found_at_any_depth_and_nothing_else_changes():
    from asymlib.core.yamlfile import DuplicateKeyError, load_yaml

    with pytest.raises(DuplicateKeyError) as raised:
        load_yaml("a:\n  - {x: 1}\n  - {y: 1,\n     y: 2}\n", source="f.yaml")
    assert str(raised.value) == "f.yaml: a[1].y appears twice (lines 3 and 4); each key may appear once"
    text = "a: &base {c: 1, d: [1, 2]}\nb: *base\ne: {<<: *base, c: 2}\n"
    assert load_yaml(text) == yaml.safe_load(text)  # aliases and merge keys as before


def test_a_settings_file_with_a_key_twice_is_refused(tmp_path):
    from asymlib.core.yamlfile import DuplicateKeyError

    settings = DeepEnsembleSettings(datasets=["churn"], members=2, ensemble_sizes=[2], max_rows=300)
    (tmp_path / "settings.yaml").write_text("churn: {members: 2}\nchurn: {members: 4}\n")
    with pytest.raises(DuplicateKeyError, match=r"settings.yaml: churn appears twice \(lines 1 and 2\)"):
        ShardStore(tmp_path, settings=settings).summary()
