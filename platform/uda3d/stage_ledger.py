"""What ``uda3d pipeline --resume`` needs: which stages finished, with which config, leaving what.

``WORKDIR/stages.json`` records each finished stage under a key: the hash of its own config and the
keys of the stages it consumes. On ``--resume`` a stage whose key matches and whose outputs still
exist is skipped and its recorded result returned; a changed config changes its key and every
downstream key, so the pipeline reruns from that stage on. A training stage that was cut off
mid-run (its Ray run folder exists, no record) continues from its last checkpoint; one whose config
changed starts over in a cleared folder. The ledger is rewritten atomically after every stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uda3d.errors import ConfigError
from uda3d.io.atomic import atomic_file

log = logging.getLogger(__name__)

LEDGER = "stages.json"


def stage_key(config: Any, upstream: tuple[str, ...] = ()) -> str:
    """A short hash of a stage's config (JSON-able) and its upstream stages' keys."""
    blob = json.dumps({"config": config, "upstream": list(upstream)}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


@dataclass
class StageLedger:
    """The finished stages of one pipeline workdir (see the module docstring)."""

    workdir: Path
    resume: bool
    verbose: bool = True

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.records: dict[str, dict[str, Any]] = {}
        path = self.workdir / LEDGER
        earlier = path.is_file() or any((self.workdir / "ray_results").glob("*"))
        if earlier and not self.resume:
            raise ConfigError("--workdir", f"{self.workdir} holds an earlier pipeline run; pass --resume to continue "
                                           "it (stages whose config is unchanged are skipped) or choose another "
                                           "--workdir")
        if path.is_file():
            try:
                self.records = json.loads(path.read_text())["stages"]
            except (ValueError, KeyError, TypeError):
                self.records = {}  # a damaged ledger: every stage reruns

    def key(self, name: str) -> str:
        return self.records.get(name, {}).get("key", "")

    def run(self, name: str, config: Any, upstream: tuple[str, ...], fn: Callable[[bool], dict[str, Any]],
            outputs: Callable[[dict[str, Any]], list[str]] = lambda r: [], run_folder: Path | None = None
            ) -> dict[str, Any]:
        """``fn(resume_training)``'s result for stage ``name``, or the recorded one when it still holds.

        Args:
            config: the stage's own settings (JSON-able).
            upstream: names of the stages whose results it consumes.
            fn: runs the stage; its argument says whether to continue an interrupted Ray run.
            outputs: the paths a recorded result needs to still exist.
            run_folder: the stage's Ray run folder, if it trains.
        """
        key = stage_key(config, tuple(self.key(u) for u in upstream))
        record = self.records.get(name)
        if self.resume and record and record["key"] == key and all(Path(p).exists() for p in outputs(record["result"])):
            if self.verbose:
                log.info(f"  {name}: done earlier with the same config, skipped (--resume)")
            return record["result"]
        interrupted = bool(run_folder and run_folder.is_dir() and any(run_folder.iterdir()))
        if interrupted and (record is not None or not self.resume):
            shutil.rmtree(run_folder)  # a finished run with another config (or outputs gone): start over
            interrupted = False
        if interrupted and self.verbose:
            log.info(f"  {name}: continuing the interrupted run from its last checkpoint")
        result = fn(interrupted)
        self.records[name] = {"key": key, "result": result}
        self._save()
        return result

    def note(self, name: str, value: dict[str, Any]) -> None:
        """Record a value that is not a stage (e.g. the parent MLflow run) so a resume finds it."""
        self.records[name] = {"key": "", "result": value}
        self._save()

    def _save(self) -> None:
        with atomic_file(self.workdir / LEDGER) as tmp:
            tmp.write_text(json.dumps({"stages": self.records}, indent=2, default=str) + "\n")
