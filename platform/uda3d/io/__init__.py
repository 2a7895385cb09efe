"""File input/output: NIfTI volumes and atomic writes."""
