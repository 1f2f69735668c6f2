"""Shared test settings."""

import torch

# The tests train tiny models: one thread avoids OpenMP spin-waiting on a busy 2-core CI box.
torch.set_num_threads(1)


#: Test modules that run whole profiles, executed notebooks, a Dask cluster, worker processes
#: or a browser. `make check` leaves them out (`pytest -m "not end_to_end"`: the everyday
#: unit tests, well under two minutes); `make test`, which CI runs, runs everything.
END_TO_END = {
    "test_beyond_paper", "test_browser", "test_dask", "test_faults", "test_jupyterlab",
    "test_notebooks", "test_runner", "test_serial", "test_stitch",
}  # fmt: skip


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.rsplit(".", 1)[-1] in END_TO_END:
            item.add_marker("end_to_end")
