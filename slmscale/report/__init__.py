"""The report (edge): figures (matplotlib, Agg) and report.md / self-contained report.html."""
