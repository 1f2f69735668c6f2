"""The papermill process the runner starts for one notebook, tied to the runner's life.

``python -m asymlib.execution.papermill_child ARGS`` is ``python -m papermill ARGS`` plus a
watch on the parent: when the runner that started it is gone (killed, even with SIGKILL,
which it cannot pass on), this process exits too, and its Jupyter kernel follows (ipykernel
exits when the process that launched it does). It imports nothing heavy, so each notebook
starts as fast as plain papermill.
"""

import os
import runpy
import sys
import threading
import time

#: How often the watch looks at the parent, in seconds.
POLL_SECONDS = 0.5


def follow_parent() -> None:
    """Exit this process (status 143, as for SIGTERM) once its parent process has changed."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_SECONDS)
        os._exit(143)

    threading.Thread(target=watch, name="asymlib-follow-parent", daemon=True).start()


if __name__ == "__main__":
    follow_parent()
    sys.argv = ["papermill", *sys.argv[1:]]
    runpy.run_module("papermill", run_name="__main__", alter_sys=True)
