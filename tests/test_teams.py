"""Teams: a DVC remote round trip (a local directory and SSH to an sshd the test starts), a
shared cache directory and experiments shared through a git remote, on a tiny project
(prepare -> baseline's augment -> train_target -> evaluate), as a teammate runs them."""

from __future__ import annotations

import csv
import getpass
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .dvcproject import GIT, commit, dvc, new_project, ran

pytestmark = pytest.mark.slow

TINY = {
    "dataset": {"n_train": 160, "n_val": 48, "n_test": 96, "rows_per_file": 200,
                "row_group_size": 50},
    "strategies": ["baseline"],
    "train_target": {"epochs": 1, "width": 16, "seeds": [0]},
    "evaluate": {"bootstrap": 20},
    "compare": {"references": ["baseline"]},
}
TARGET = "evaluate@baseline"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def _outputs(root: Path) -> dict[str, int]:
    """Size of every file under data/ and models/ (what a teammate must get)."""
    return {str(p.relative_to(root)): p.stat().st_size
            for d in ("data", "models") for p in sorted((root / d).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A project that ran and pushed: its DVC remote (a local directory), a bare git remote
    holding the commit and the outputs of that commit (the project's workspace changes
    when an experiment runs in it)."""
    base = tmp_path_factory.mktemp("team")
    origin, storage = base / "origin.git", base / "storage"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    project = base / "alice"
    project.mkdir()
    new_project(project, TINY)
    dvc(project, "remote", "add", "-d", "shared", str(storage))
    dvc(project, "repro", TARGET)
    commit(project, "tiny run")
    dvc(project, "push")
    _git(project, "remote", "add", "origin", str(origin))
    _git(project, "push", "-q", "origin", "HEAD:main")
    return {"base": base, "origin": origin, "storage": storage, "project": project,
            "outputs": _outputs(project)}


def test_a_clone_pulls_every_output_and_reruns_nothing(team: dict) -> None:
    clone = team["base"] / "bob"
    _git(team["base"], "clone", "-q", "-b", "main", str(team["origin"]), str(clone))
    assert not (clone / "data" / "prepared").exists()
    # The documented command: stages never run (no lock entry) have nothing to pull.
    dvc(clone, "pull", "--allow-missing")
    assert _outputs(clone) == team["outputs"]
    assert "up to date" in dvc(clone, "status", TARGET).stdout
    proc = dvc(clone, "repro", TARGET)
    assert ran(proc.stdout) == set(), proc.stdout


def test_a_shared_cache_checks_out_without_copying(team: dict) -> None:
    """Two clones on one machine (or a shared disk) use one cache: outputs are links to
    it, never recomputed and never copied."""
    shared = team["base"] / "cache"
    for name in ("carol", "dave"):
        clone = team["base"] / name
        _git(team["base"], "clone", "-q", "-b", "main", str(team["origin"]), str(clone))
        dvc(clone, "cache", "dir", str(shared))
        dvc(clone, "config", "cache.shared", "group")
        dvc(clone, "config", "cache.type", "symlink")
    dvc(team["base"] / "carol", "pull", "--with-deps", TARGET)  # fills the shared cache
    dave = team["base"] / "dave"
    dvc(dave, "checkout", "--with-deps", TARGET)  # nothing fetched: the cache holds it
    assert _outputs(dave) == team["outputs"]
    model = dave / "models" / "target" / "baseline" / "seed0.pt"
    assert model.is_symlink() and Path(model.resolve()).is_relative_to(shared)
    assert "up to date" in dvc(dave, "status", TARGET).stdout
    assert ran(dvc(dave, "repro", TARGET).stdout) == set()


def test_an_experiment_pushed_by_one_is_shown_to_another(team: dict) -> None:
    project = team["project"]
    dvc(project, "exp", "run", "-n", "wider", "-S", "train_target.width=24", TARGET)
    dvc(project, "exp", "push", "origin", "wider")
    erin = team["base"] / "erin"
    _git(team["base"], "clone", "-q", "-b", "main", str(team["origin"]), str(erin))
    dvc(erin, "exp", "pull", "origin", "wider")
    table = dvc(erin, "exp", "show", "--csv").stdout
    rows = {r["Experiment"]: r for r in csv.DictReader(io.StringIO(table))}
    assert "wider" in rows, table
    deo = "deo"  # DVC shortens a column name that is unambiguous
    assert rows["wider"]["train_target.width"] == "24"
    assert 0.0 <= float(rows["wider"][deo]) <= 1.0
    # The teammate applies it and gets its outputs from the shared remote.
    # apply checks out every stage's outputs and names those never run as missing: the
    # params and lock are applied all the same, then the outputs come from the remote.
    dvc(erin, "exp", "apply", "wider", check=False)
    assert yaml.safe_load((erin / "params.yaml").read_text())["train_target"]["width"] == 24
    dvc(erin, "pull", "--allow-missing")
    assert "up to date" in dvc(erin, "status", TARGET).stdout


def test_a_missing_remote_fails_in_one_line(team: dict) -> None:
    clone = team["base"] / "frank"
    _git(team["base"], "clone", "-q", "-b", "main", str(team["origin"]), str(clone))
    dvc(clone, "remote", "modify", "shared", "url", str(team["base"] / "nowhere"))
    proc = dvc(clone, "pull", "--with-deps", TARGET, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr



def test_two_queued_experiments_run_at_once(team: dict) -> None:
    """``dvc queue start -j 2``: two workers, each experiment in its own temporary copy
    of the repository (.dvc/tmp/exps), 1 torch thread each (2 workers x base.threads <=
    the cores); both finish, both show in ``dvc exp show``, the workspace is untouched."""
    project = team["project"]
    before = {name: (project / name).read_text() for name in ("params.yaml", "dvc.lock")}
    outputs = _outputs(project)
    for width in (12, 20):
        dvc(project, "exp", "run", "--queue", "-n", f"w{width}", "-S", "base.threads=1",
            "-S", f"train_target.width={width}", TARGET)
    # The workers are daemons that inherit the caller's stdout: not captured, or the call
    # would wait for them to exit.
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "-j", "2"], cwd=project,
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)
    try:
        deadline, status = time.monotonic() + 240, ""
        while time.monotonic() < deadline:
            status = dvc(project, "queue", "status").stdout
            if not any(word in status for word in ("Queued", "Running")):
                break
            time.sleep(2)
        assert status.count("Success") == 2, status
    finally:
        dvc(project, "queue", "stop", check=False)
    table = dvc(project, "exp", "show", "--csv").stdout
    rows = {r["Experiment"]: r for r in csv.DictReader(io.StringIO(table))}
    assert {rows[f"w{w}"]["train_target.width"] for w in (12, 20)} == {"12", "20"}, table
    assert all(0.0 <= float(rows[f"w{w}"]["deo"]) <= 1.0 for w in (12, 20))
    assert rows["w12"]["deo"] != rows["w20"]["deo"] or rows["w12"]["ap"] != rows["w20"]["ap"]
    after = {name: (project / name).read_text() for name in ("params.yaml", "dvc.lock")}
    assert after == before and _outputs(project) == outputs


# --- An SSH remote: push and pull cross a real sshd (Debian's openssh-server) on 127.0.0.1,
# with a throw-away host key and user key. The server runs as this user: as root it needs
# the privilege-separation directory /run/sshd; as anyone else it can only log that user in.

SSHD_CONFIG = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
AllowUsers {user}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
# tmp_path sits under the world-writable /tmp, which StrictModes refuses for key files.
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""


def _sshd() -> str:
    """sshd's absolute path (it re-executes itself), or skip saying how to install it."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/local/sbin"
    sshd, keygen = shutil.which("sshd", path=path), shutil.which("ssh-keygen", path=path)
    if sshd is None or keygen is None:
        missing = "sshd" if sshd is None else "ssh-keygen"
        pytest.skip(f"{missing} is not installed, so no SSH server can be started: install "
                    "Debian's openssh-server (as root: apt-get install -y openssh-server; "
                    ".ci/run does this when it runs as root)")
    return sshd


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "facebalance-test",
                    "-f", str(path)], check=True, capture_output=True)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """An sshd on 127.0.0.1 that lets this user in with ``key`` (and not with ``wrong_key``),
    killed at the end."""
    binary = _sshd()
    root = tmp_path_factory.mktemp("sshd")
    host_key, key, wrong_key = (_keygen(root / n) for n in ("host_key", "user_key", "wrong_key"))
    (root / "authorized_keys").write_text((root / "user_key.pub").read_text())
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation
    port, user = _free_port(), getpass.getuser()
    config = root / "sshd_config"
    config.write_text(SSHD_CONFIG.format(port=port, host_key=host_key, user=user,
                                         pid_file=root / "sshd.pid",
                                         authorized_keys=root / "authorized_keys"))
    log = root / "sshd.log"
    with log.open("w") as err:
        server = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stderr=err,
                                  stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while "Server listening" not in log.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd did not start (exit {server.poll()}):\n{log.read_text()}")
            time.sleep(0.05)
        yield {"url": f"ssh://{user}@127.0.0.1:{port}", "key": key, "wrong_key": wrong_key,
               "root": root, "log": log}
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="module")
def ssh_project(sshd: dict, team: dict) -> Path:
    """A clone of the team's commit with an SSH remote as its default (committed; the key
    file in .dvc/config.local), its outputs pushed over SSH."""
    project = team["base"] / "ssh_alice"
    _git(team["base"], "clone", "-q", "-b", "main", str(team["origin"]), str(project))
    # The outputs are in alice's cache: push needs only the cache, not a checkout.
    shutil.copytree(team["project"] / ".dvc" / "cache", project / ".dvc" / "cache")
    storage = sshd["root"] / "storage"
    dvc(project, "remote", "add", "-d", "lab", f"{sshd['url']}{storage}")
    dvc(project, "remote", "modify", "--local", "lab", "keyfile", str(sshd["key"]))
    dvc(project, "push")
    assert any(p.is_file() for p in storage.rglob("*")), "nothing reached the SSH remote"
    commit(project, "ssh remote")
    return project


def test_a_clone_pulls_over_ssh_and_reruns_nothing(sshd: dict, team: dict,
                                                   ssh_project: Path) -> None:
    clone = team["base"] / "ssh_bob"
    _git(team["base"], "clone", "-q", str(ssh_project), str(clone))
    assert "lab" in (clone / ".dvc" / "config").read_text()
    assert not (clone / ".dvc" / "config.local").exists()  # the key file path stays local
    dvc(clone, "remote", "modify", "--local", "lab", "keyfile", str(sshd["key"]))
    dvc(clone, "pull", "--allow-missing")
    assert _outputs(clone) == team["outputs"]
    assert "up to date" in dvc(clone, "status", TARGET).stdout
    assert ran(dvc(clone, "repro", TARGET).stdout) == set()
    assert "Accepted publickey" in sshd["log"].read_text()


def test_a_wrong_ssh_key_fails_in_one_line(sshd: dict, team: dict,
                                           ssh_project: Path) -> None:
    """A key the server does not know: pull and push stop at authentication with one line
    naming the user and host (DVC's exit codes: 1 for a failed pull, 255 for push's
    "unexpected error")."""
    clone = team["base"] / "ssh_mallory"
    _git(team["base"], "clone", "-q", str(ssh_project), str(clone))
    dvc(clone, "remote", "modify", "--local", "lab", "keyfile", str(sshd["wrong_key"]))
    denied = f"Permission denied for user {getpass.getuser()} on host 127.0.0.1"
    for args, code in ((["pull", "--allow-missing"], 1), (["push"], 255)):
        proc = dvc(clone, *args, check=False)
        assert proc.returncode == code, (args, proc.returncode, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if denied in line]
        assert len(lines) == 1 and lines[0].startswith("ERROR: "), proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (clone / "data" / "prepared").exists()
    assert "Failed publickey" in sshd["log"].read_text()  # the server refused the key
