"""The local stack's preparation (devtools/local_stack.py), its secrets file (devtools/env_file.py)
and the Procfile honcho runs. `bash scripts/smoke.sh` runs the whole stack end to end."""

from __future__ import annotations

import os
import stat
import sys
import threading
from pathlib import Path

import pytest
from honcho.environ import expand_processes, parse_procfile

from devtools import ROOT, env_file, local_stack
from devtools.local_stack import StackError, StackSettings
from throttle_app.encryption_keys import generate_key


def test_settings_defaults_and_urls() -> None:
    settings = StackSettings.from_env({})
    assert (settings.port, settings.fake_port, settings.database) == (8000, 8099, "throttle_dev")
    assert settings.database_url == "postgresql://postgres@127.0.0.1:5432/throttle_dev"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.env_file == ROOT / ".cache" / "dev.env"
    other = StackSettings.from_env({"DEV_REDIS_SERVER": "redis://h:1/", "DEV_REDIS_DB": "3"})
    assert other.redis_url == "redis://h:1/3"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"PORT": "80a"}, "PORT must be a whole number"),
        ({"DEV_REDIS_DB": "-1"}, "DEV_REDIS_DB must be a whole number"),
        ({"DEV_DATABASE": "Throttle; DROP"}, "DEV_DATABASE must be a plain lower-case name"),
        ({"PORT": "8099"}, "PORT and FAKE_PORT must differ"),
    ],
)
def test_settings_refuse_bad_values(env: dict[str, str], words: str) -> None:
    with pytest.raises(StackError, match=words):
        StackSettings.from_env(env)


def test_processes_get_the_settings_and_the_secrets() -> None:
    settings = StackSettings.from_env({"PORT": "8123", "FAKE_PORT": "8124"})
    env = local_stack.stack_env(settings, {"SECRET_KEY": "s"})
    assert env["SECRET_KEY"] == "s"
    assert env["WEB_PORT"] == env["PORT"] == "8123" and env["FAKE_PORT"] == "8124"
    assert env["HUBSPOT_API_BASE"] == env["HUBSPOT_APP_BASE"] == "http://127.0.0.1:8124"
    assert env["PUBLIC_BASE_URL"] == "http://127.0.0.1:8123"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_procfile_runs_the_fake_and_every_role_with_the_right_ports() -> None:
    """honcho gives each line its own PORT (PORT, PORT+100, ...): the web line must override
    it with WEB_PORT, and the fake listens on FAKE_PORT."""
    processes = parse_procfile(local_stack.PROCFILE.read_text()).processes
    assert set(processes) == {"fake-hubspot", "web", "worker", "scheduler"}
    assert processes["web"] == 'PORT="$WEB_PORT" exec bash scripts/entrypoint.sh web'
    for role in ("worker", "scheduler"):
        assert processes[role] == f"exec bash scripts/entrypoint.sh {role}"
    assert '--port "$FAKE_PORT"' in processes["fake-hubspot"]
    given = [p.env["PORT"] for p in expand_processes(processes, port=8000)]
    assert len(set(given)) == len(processes)  # so no line can take PORT from honcho as is


def test_env_file_is_written_once_then_only_completed(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    added = env_file.complete_env_file(path)
    assert added == list(env_file.GENERATORS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = env_file.read_env_file(path)
    assert env_file.complete_env_file(path) == []
    assert env_file.read_env_file(path) == first

    kept = generate_key()
    path.write_text(f"# mine\nTOKEN_ENCRYPTION_KEY='{kept}'\nEXTRA=1")  # no final newline
    added = env_file.complete_env_file(path)
    assert "TOKEN_ENCRYPTION_KEY" not in added and "SECRET_KEY" in added
    values = env_file.read_env_file(path)
    assert values["TOKEN_ENCRYPTION_KEY"] == kept and values["EXTRA"] == "1"
    assert path.read_text().startswith("# mine\n")


def test_stacks_starting_together_get_the_same_secrets(tmp_path: Path) -> None:
    path = tmp_path / "dev.env"
    threads = [threading.Thread(target=env_file.complete_env_file, args=(path,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = [line for line in path.read_text().splitlines() if "=" in line]
    assert sorted(line.split("=", 1)[0] for line in lines) == sorted(env_file.GENERATORS)


def test_env_file_path_follows_dev_env_file() -> None:
    assert env_file.env_file_path({"DEV_ENV_FILE": "x/y.env"}) == ROOT / "x" / "y.env"
