"""The experiment report: numbers recomputed from run directories, the paper's figures, one HTML file.

``compute_numbers`` (``numbers``) reads the files of ``docs/run-directory.md`` into one dict;
``figures`` draws from that dict alone; ``html`` writes ``report/report.html`` with the figures
inlined and a transcript browser; ``cli.report_command`` is ``rhlab report``.
"""

from rhlab.report.numbers import ReportInputError, compute_numbers

__all__ = ["ReportInputError", "build_report", "compute_numbers"]


def __getattr__(name: str):  # noqa: ANN202 - lazy, so `rhlab --help` does not import matplotlib
    if name == "build_report":
        from rhlab.report.html import build_report

        return build_report
    raise AttributeError(name)
