"""The results report: SimCLR-style tables, summary.json and plots, built from the metrics files.

Everything here reads files the stages wrote (metrics/<method>/*.json, the
dvclive curves, `dvc exp show --json` rows); nothing trains or evaluates.
"""
