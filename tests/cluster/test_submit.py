"""``uda3d submit`` and the runtime env: unit checks, the upload size, and jobs on a real local Ray cluster."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from uda3d.cli import main
from uda3d.cluster.submit import load_runtime_env, stage_command
from uda3d.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
RUNTIME_ENV = REPO / "cluster" / "runtime_env.yaml"


def test_runtime_env_resolves_local_paths_and_rejects_unknown_fields(tmp_path):
    env = load_runtime_env(RUNTIME_ENV, base=REPO)
    assert env["working_dir"] == str(REPO) and env["py_modules"] == [str(REPO / "platform" / "uda3d")]
    assert ".venv/" in env["excludes"] and all(isinstance(v, str) for v in env["env_vars"].values())
    bad = tmp_path / "env.yaml"
    bad.write_text("working_dir: .\npip_packages: [torch]\n")
    with pytest.raises(ConfigError, match=r"env\.yaml: pip_packages: unknown runtime_env field"):
        load_runtime_env(bad)
    bad.write_text("working_dir: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_runtime_env(bad)
    assert main(["submit", "--address", "http://127.0.0.1:1", "--runtime-env", str(bad), "validate-data", "x"]) == 2


def test_stage_command_adds_scaling_flags_only_where_they_apply():
    assert stage_command("train-backbone", ["--dataroot", "/d b"], 2, 0.5) == (
        "python -m uda3d train-backbone --dataroot '/d b' --num-workers 2 --use-gpu --gpus-per-worker 0.5")
    assert stage_command("slices", ["R", "--out", "S"]) == "python -m uda3d slices R --out S"
    with pytest.raises(ConfigError, match="does not run Ray Train"):
        stage_command("slices", [], num_workers=2)


def _package(root: Path, out: Path) -> zipfile.ZipFile:
    """What Ray uploads for ``working_dir: root`` with our excludes (Ray's own packaging code)."""
    from ray._private.runtime_env.packaging import create_package

    env = load_runtime_env(RUNTIME_ENV, base=root)
    create_package(str(root), out, include_gitignore=True, excludes=env["excludes"])
    return zipfile.ZipFile(out)


def test_working_dir_upload_stays_small_and_leaves_data_and_venvs_behind(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info"))
    heavy = [repo / ".venv" / "lib" / "torch.so", repo / "uda3d-runs" / "ray_results" / "ckpt" / "state.pt",
             repo / "data" / "BraTS_001" / "BraTS_001_t1.nii.gz", repo / "uda3d-demo" / "cache" / "s.npz",
             repo / "mlflow.db"]
    for path in heavy:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(4 << 20))                     # 4 MiB each, 20 MiB in all
    archive = _package(repo, tmp_path / "pkg.zip")
    names = archive.namelist()
    assert any(n.endswith("platform/uda3d/cli.py") for n in names)
    assert not any(n.endswith((".so", ".pt", ".nii.gz", ".npz", ".db")) for n in names), names
    size = (tmp_path / "pkg.zip").stat().st_size
    assert size < 2 << 20, f"upload {size / 2**20:.1f} MiB"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A real Ray head on loopback, started from this venv; only its own processes are stopped."""
    port, dashboard = _free_port(), _free_port()
    temp = Path(f"/tmp/u3r{os.getpid()}")                      # short: Unix socket paths are limited
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("RAY_ADDRESS", None)
    ray_cli = Path(sys.executable).parent / "ray"
    subprocess.run([str(ray_cli), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                    "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--num-cpus", "2",
                    "--temp-dir", str(temp), "--disable-usage-stats", "--include-dashboard", "true",
                    # every port of our own, so no other Ray on the machine (or a lingering one) collides
                    "--dashboard-agent-listen-port", str(_free_port()), "--dashboard-agent-grpc-port",
                    str(_free_port()), "--runtime-env-agent-port", str(_free_port()),
                    "--metrics-export-port", str(_free_port()), "--min-worker-port", "20000",
                    "--max-worker-port", "20999"],
                   env=env, check=True, capture_output=True, timeout=120)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        yield address
    finally:
        mine = _processes_mentioning(str(temp))
        for pid in mine:
            _signal(pid, signal.SIGTERM)
        deadline = time.time() + 2  # GCS and raylet wait on each other past SIGTERM: a short grace, then kill
        while time.time() < deadline and any(_running(pid) for pid in mine):
            time.sleep(0.5)
        for pid in mine:
            _signal(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line mentions ``text`` (the cluster's own temp folder), from /proc."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs: a zombie nobody reaps (PID 1 in a container may not) has stopped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _submit(capsys, address: str, *args: str) -> tuple[int, str]:
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        code = main(["submit", "--address", address, *args])
    finally:
        os.chdir(cwd)
    return code, capsys.readouterr().out


@pytest.mark.slow
def test_stages_run_as_jobs_on_a_local_cluster(ray_cluster, tiny_cohort, tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    work = tmp_path / "work"
    uri = f"sqlite:///{work.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)                # travels with every job
    root = str(tiny_cohort)
    code, out = _submit(capsys, ray_cluster, "--num-workers", "1", "train-backbone", "--dataroot", root,
                        "--workdir", str(work), "--ngf", "4", "--ndf", "4", "--epochs", "2", "--epochs-decay", "0",
                        "--no-augment", "--quiet")
    assert code == 0 and "SUCCEEDED" in out, out
    backbone = re.search(r"backbone checkpoint: (\S+)", out).group(1)
    code, out = _submit(capsys, ray_cluster, "slices", root, "--out", str(work / "slices"), "--slice-size", "32",
                        "--quiet")
    assert code == 0, out
    code, out = _submit(capsys, ray_cluster, "train-vae", "--store", str(work / "slices"), "--workdir", str(work),
                        "--latent-channels", "8", "--epochs", "2", "--quiet")
    assert code == 0, out
    vae = re.search(r"VAE checkpoint: (\S+)", out).group(1)
    code, out = _submit(capsys, ray_cluster, "adapt", "--dataroot", root, "--backbone", backbone, "--vae", vae,
                        "--workdir", str(work), "--epochs", "1", "--quiet")
    assert code == 0 and "guard:" in out, out
    runs = MlflowClient(tracking_uri=uri).search_runs(
        [MlflowClient(tracking_uri=uri).get_experiment_by_name("uda3d").experiment_id])
    assert {r.info.run_name for r in runs} >= {"backbone", "vae", "adapt"}
    assert all(r.info.status == "FINISHED" for r in runs)


@pytest.mark.slow
def test_plain_ray_job_submit_from_the_readme_and_a_failing_job(ray_cluster, tiny_cohort, tmp_path, capsys):
    ray_cli = Path(sys.executable).parent / "ray"
    probe = ("python -c \"import platform, uda3d; assert platform.system(); print('stdlib platform', "
             "platform.python_version(), 'uda3d from', uda3d.__file__)\"")
    env = dict(os.environ, RAY_AUTH_MODE="token")               # Ray 2.60's default token auth (README)
    done = subprocess.run([str(ray_cli), "job", "submit", "--address", ray_cluster, "--working-dir", ".",
                           "--runtime-env", "cluster/runtime_env.yaml", "--", "bash", "-c",
                           f"{probe} && python -m uda3d validate-data {tiny_cohort}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "stdlib platform" in done.stdout, done.stdout + done.stderr
    assert "domain2_test" in done.stdout                        # the stage ran inside the job
    assert "succeeded" in done.stdout.lower()
    # a bad config fails the job with the clear one-line error, and `uda3d submit` exits non-zero
    code, out = _submit(capsys, ray_cluster, "train-backbone", "--dataroot", str(tiny_cohort), "--workdir",
                        str(tmp_path / "w"), "--lr", "5", "--no-tracking", "--quiet")
    assert code == 1 and "FAILED" in out, out
    assert re.search(r"lr: expected 0 < lr < 1, got 5", out), out


@pytest.mark.slow
def test_mlflow_server_script_serves_on_loopback(tmp_path):
    import urllib.request

    from mlflow.tracking import MlflowClient

    port = _free_port()
    env = dict(os.environ, PORT=str(port), STATE=str(tmp_path / "state"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    server = subprocess.Popen(["bash", str(REPO / "cluster" / "mlflow_server.sh"), "--workers", "1"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).read().strip() == b"OK":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not answer /health")
        # bound to loopback only: the machine's own network address does not answer
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            own_ip = probe.getsockname()[0]
        if own_ip != "127.0.0.1":
            with socket.socket() as outside, pytest.raises(OSError):
                outside.settimeout(2)
                outside.connect((own_ip, port))
        client = MlflowClient(tracking_uri=url)
        run = client.create_run(client.create_experiment("probe"))
        client.log_metric(run.info.run_id, "x", 1.0)
        assert client.get_run(run.info.run_id).data.metrics == {"x": 1.0}
        assert (tmp_path / "state" / "mlflow.db").is_file()
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
