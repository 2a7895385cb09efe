"""Synthetic multi-site BraTS-layout cohort: anatomy, tumour, MR signal equations, site protocols."""
