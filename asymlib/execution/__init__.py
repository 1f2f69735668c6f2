"""Running a profile: parameter files, notebook execution, the runner and the command line.

``params`` (profiles and the sections they configure), ``notebooks`` (one papermill run of a
section notebook in its own process), ``runner`` (every dataset of every section, in
parallel, with resume and a summary; then the reports) and ``cli`` (the ``asymlib`` command:
``fetch | run | train | estimate | compare | figures``; it imports each command's modules
when that command runs, so that ``--help`` is quick).
"""
