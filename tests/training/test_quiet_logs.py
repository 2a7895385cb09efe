"""Without --verbose, Ray Data's INFO lines and its "progress bars disabled" warning stay out of a stage's output."""

from __future__ import annotations

import logging

import pytest

from uda3d.training.ray_runtime import RAY_DATA_PROGRESS_LOGGER, quiet_ray_data_logs


@pytest.fixture
def restore_levels():
    names = ("ray.data", RAY_DATA_PROGRESS_LOGGER)
    before = {n: logging.getLogger(n).level for n in names}
    yield
    for n, level in before.items():
        logging.getLogger(n).setLevel(level)


def test_the_progress_warning_comes_from_the_logger_that_is_quieted():
    """The name is Ray Data's: a Ray that moves the warning to another logger fails here, not silently."""
    from ray.data._internal import progress

    assert progress.logger.name == RAY_DATA_PROGRESS_LOGGER


@pytest.mark.parametrize("verbose", [False, True])
def test_ray_data_logs_are_quiet_unless_verbose(restore_levels, verbose):
    logging.getLogger("ray.data").setLevel(logging.INFO)
    logging.getLogger(RAY_DATA_PROGRESS_LOGGER).setLevel(logging.NOTSET)
    quiet_ray_data_logs(verbose)
    progress, data = logging.getLogger(RAY_DATA_PROGRESS_LOGGER), logging.getLogger("ray.data")
    assert progress.isEnabledFor(logging.WARNING) is verbose
    assert progress.isEnabledFor(logging.ERROR)
    assert data.isEnabledFor(logging.INFO) is verbose
    assert data.isEnabledFor(logging.WARNING)
