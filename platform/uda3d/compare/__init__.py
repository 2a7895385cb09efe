"""Comparisons: every adaptation method on the same splits and seeds (``run``), tracked MLflow runs side by
side (``runs``)."""
