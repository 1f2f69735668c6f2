"""Checks made before any unit trains or any worker starts: a profile with a repeated key, a
device this code cannot use or this machine does not have, a unit larger than the machine's
memory, a row cap that leaves a part of the split (nearly) empty. Each is refused with exit
status 2 and a one-line message naming the profile file and the key; nothing is trained and
no output folder is made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from asymlib.execution.cli import main
from asymlib.execution.params import ParamsError, load_params
from asymlib.sections.deep_ensembles import DeepEnsembleSettings
from asymlib.sections.mixtures import MixtureSettings
from asymlib.sections.units import ShardStore

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())


@pytest.fixture
def data_dir() -> Path:
    for candidate in (os.environ.get("ASYMLIB_DATA"), REPO / "data", REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "Churn_Modelling.csv").is_file():
            return Path(candidate)
    pytest.fail("raw data not found: run `asymlib fetch --from DIR` (make setup does) or set ASYMLIB_DATA")


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


# --------------------------------------------------------------------------- devices


@pytest.mark.parametrize("command", ["run", "train"])
def test_a_device_name_torch_or_this_code_does_not_know_is_refused(tmp_path, capsys, command):
    path = _profile(tmp_path, device="gpu")
    line = _refused(capsys, tmp_path, command, path)
    assert line == (
        f"asymlib {command}: {path}: deep_ensembles.device must be cpu, cuda or cuda:N (N: a GPU's index), got 'gpu'"
    )
    for device in ("mps", "cuda:x", "CPU", ""):  # the notebooks' and the Python API's way in
        with pytest.raises(ParamsError, match=f"deep_ensembles.device must be cpu, cuda or cuda:N .*got '{device}'"):
            DeepEnsembleSettings(device=device)
    assert [DeepEnsembleSettings(device=d).device for d in ("cpu", "cuda", "cuda:1")] == ["cpu", "cuda", "cuda:1"]


@pytest.mark.parametrize("command", ["run", "train"])
def test_a_cuda_device_this_machine_does_not_have_is_refused_before_any_worker(tmp_path, capsys, command):
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    path = _profile(tmp_path, device=f"cuda:{count}")  # one past the last GPU, on any machine
    line = _refused(capsys, tmp_path, command, path)
    if count:
        assert f"{path}: deep_ensembles.device is 'cuda:{count}', but this machine has {count} CUDA device" in line
    else:
        assert line == (
            f"asymlib {command}: {path}: deep_ensembles.device is 'cuda:0', but this machine's torch "
            f"({torch.__version__}) sees no CUDA device; train on a GPU machine, or use device: cpu"
        )


@pytest.mark.parametrize("command", ["run", "train"])
def test_tf32_without_a_cuda_device_is_refused(tmp_path, capsys, command):
    path = _profile(tmp_path, precision="tf32")  # device: cpu, the default
    line = _refused(capsys, tmp_path, command, path)
    assert line == (
        f"asymlib {command}: {path}: deep_ensembles.precision is 'tf32' (TensorFloat-32, a GPU's mode), which "
        "needs a CUDA device, but deep_ensembles.device is 'cpu'; use float32 or bf16 on the CPU"
    )


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize("command", ["run", "train"])
def test_units_far_beyond_this_machines_memory_are_refused(tmp_path, capsys, command):
    path = _profile(tmp_path, datasets=["mnist"], hidden_sizes=[4096], members=100000, max_rows=None)
    line = _refused(capsys, tmp_path, command, path)
    from asymlib.execution.machine import machine_memory

    total, what = machine_memory()
    assert line.startswith(
        f"asymlib {command}: {path}: deep_ensembles unit mnist-h4096-r0 (members 100000 x hidden_sizes 4096) "
        "needs about 6"  # 69.3 TiB
    )
    assert "TiB of memory (parameters with their gradients and AdamW state, a batch's activations" in line
    assert f"far more than this machine's {total / 2**30:.1f} GiB of {what}" in line


def test_the_shipped_profiles_fit_in_a_few_gigabytes():
    from asymlib.execution.estimate import unit_memory_bytes
    from asymlib.execution.params import SECTIONS, profile_sections

    for path in sorted((REPO / "params").glob("*.yaml")):
        for name, settings in load_params(path, sections=profile_sections(path)).items():
            for dataset in settings.datasets:
                for coordinates in SECTIONS[name].grid(settings, dataset).values():
                    assert unit_memory_bytes(name, settings, dataset, coordinates) < 2 * 2**30, (path, coordinates)


# --------------------------------------------------------------------------- rows


@pytest.mark.parametrize("command", ["run", "train"])
def test_a_row_cap_that_leaves_a_part_nearly_empty_is_refused(tmp_path, capsys, command):
    path = _profile(tmp_path, max_rows=10)
    line = _refused(capsys, tmp_path, command, path)
    assert line == (
        f"asymlib {command}: {path}: deep_ensembles.max_rows = 10 leaves churn 6 training, 2 validation and "
        "2 test rows; each part needs at least 10 rows, and training 10 per class (20 for churn's 2 classes); "
        "the smallest max_rows that does is 58"
    )


@pytest.mark.parametrize("command", ["run", "train"])
def test_a_dataset_chosen_on_the_command_line_is_checked_for_rows_too(tmp_path, capsys, command):
    path = _profile(tmp_path, max_rows=120)  # enough for churn, not for mnist's 10 classes
    line = _refused(capsys, tmp_path, command, path, "--datasets", "mnist")
    assert line.startswith(f"asymlib {command}: {path}: deep_ensembles.max_rows = 120 leaves mnist 76 training")
    assert line.endswith("training 10 per class (100 for mnist's 10 classes); the smallest max_rows that does is 157")


def test_the_row_cap_suggested_is_enough_for_every_dataset_of_the_profile():
    # 58 is churn's floor, but mnist's 10 classes need 157: the message must not send the
    # user to a cap that is refused in turn
    with pytest.raises(ParamsError) as refused:
        DeepEnsembleSettings(datasets=["churn", "mnist"], max_rows=10)
    assert str(refused.value).startswith("deep_ensembles.max_rows = 10 leaves churn 6 training")
    assert str(refused.value).endswith("; the smallest max_rows that does for churn, mnist is 157")
    DeepEnsembleSettings(datasets=["churn", "mnist"], max_rows=157)


def test_a_row_cap_is_checked_on_every_way_in():
    with pytest.raises(ParamsError, match=r"^mixtures.max_rows = 100 leaves otto 64 training, 16 validation"):
        MixtureSettings(datasets=["otto"], max_rows=100)
    with pytest.raises(
        ParamsError, match=r"^deep_ensembles.val_fraction = 0.0005 leaves california 16503 training, 9 "
    ):
        DeepEnsembleSettings(datasets=["california"], max_rows=None, val_fraction=0.0005)
    DeepEnsembleSettings(datasets=["churn"], max_rows=58)  # the floor itself is fine


@pytest.mark.parametrize("dataset", ["churn", "otto"])
def test_at_the_smallest_row_cap_allowed_every_class_is_in_training(data_dir, dataset):
    from asymlib.core.data import load_dataset

    with pytest.raises(ValueError, match=rf"^max_rows=10 leaves {dataset} 6 training, 2 validation and 2 test rows"):
        load_dataset(dataset, data_dir=data_dir, max_rows=10)
    from asymlib.core.data import too_few_rows

    for split in ("paper", "release"):
        smallest = next(n for n in range(1, 1000) if too_few_rows(dataset, n, split=split) is None)
        data = load_dataset(dataset, data_dir=data_dir, max_rows=smallest, split=split)
        assert min(data.sizes[part] for part in ("train", "val", "test")) >= 10
        assert set(data.y_train.tolist()) == set(range(data.n_classes))
