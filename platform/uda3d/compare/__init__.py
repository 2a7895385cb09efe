"""Comparisons: every adaptation method on the same splits and seeds (``methods``), tracked MLflow runs side by
side (``mlflow_runs``)."""
