"""Reports of runs: ``schema.py`` is report.json's schema and its one reader, ``run_report.py`` writes one
run's report.json and report.md, ``summary.py`` is `filterprune report DIR` over many runs.

``report`` (summary's) is resolved on first use, so that importing ``reporting.schema`` stays cheap
(no pandas, no torch).
"""

__all__ = ["report"]


def __getattr__(name):
    if name == "report":
        from .summary import report  # on first use: pandas, matplotlib and torch come with it

        return report
    raise AttributeError(f"module 'filterprune.reporting' has no attribute {name!r}")
