"""The kunjung command line: init, backup and restore of the embedded store."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from server import config
from server.cli import cli, main
from server.storage import open_store
from server.store import COLLECTIONS


def run(*args, input=None):
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result


def test_init_creates_store_and_keeps_the_secret(env, tmp_path):
    first = run("init")
    assert first.exit_code == 0, first.output
    assert "schema v" in first.output
    secret = (tmp_path / "secret_key").read_text()
    assert len(secret.strip()) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0
    assert run("init").exit_code == 0
    assert (tmp_path / "secret_key").read_text() == secret


def test_backup_while_in_use_and_restore(env, tmp_path):
    run("init")
    live = open_store(env["KUNJUNG_DATABASE_URL"], COLLECTIONS)
    live.ensure_schema()
    live.insert("server_state", {"id": "before-backup", "note": "kept"})
    result = run("backup", str(tmp_path / "copies" / "backup.db"))
    assert result.exit_code == 0, result.output
    assert "backup written" in result.output
    live.insert("server_state", {"id": "after-backup"})

    refused = CliRunner().invoke(cli, ["restore", str(tmp_path / "copies" / "backup.db")], input="n\n")
    assert refused.exit_code != 0
    assert live.get("server_state", "after-backup") is not None

    result = run("restore", "--yes", str(tmp_path / "copies" / "backup.db"))
    assert result.exit_code == 0, result.output
    live.close()
    reopened = open_store(env["KUNJUNG_DATABASE_URL"], COLLECTIONS)
    assert reopened.get("server_state", "before-backup")["note"] == "kept"
    assert reopened.get("server_state", "after-backup") is None
    reopened.close()


def test_restore_refuses_a_file_that_is_not_a_backup(env, tmp_path):
    run("init")
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not sqlite")
    result = CliRunner().invoke(cli, ["restore", "--yes", str(bogus)])
    assert result.exit_code != 0
    assert "not a kunjung backup" in (result.output + str(result.exception))


def test_bad_setting_is_a_clear_error(env, monkeypatch):
    monkeypatch.setenv("KUNJUNG_ACCESS_TOKEN_MINUTES", "fifteen")
    with pytest.raises(SystemExit) as exit_info:
        main(["init"])
    assert exit_info.value.code == 2


# -- where the store is -------------------------------------------------------------------------------------
def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_run_from_another_folder_the_cli_uses_the_checkouts_store_not_the_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("KUNJUNG_DATABASE_URL", "KUNJUNG_SECRET_KEY", "KUNJUNG_SECRET_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    settings = config.resolve_locations(config.from_environment())
    root = Path(config.__file__).resolve().parent.parent
    assert settings["DATABASE_URL"] == f"sqlite:///{root / 'var' / 'kunjung.db'}"
    assert settings["SECRET_KEY_FILE"] == str(root / "var" / "secret_key")
    assert str(tmp_path) not in settings["DATABASE_URL"]


def test_an_installed_copy_without_a_store_setting_refuses_and_makes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("KUNJUNG_DATABASE_URL", "KUNJUNG_SECRET_KEY", "KUNJUNG_SECRET_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(config, "checkout_root", lambda: None)
    with pytest.raises(SystemExit) as exit_info:
        main(["init"])
    assert exit_info.value.code == 2
    assert list(tmp_path.iterdir()) == []


def test_an_installed_copy_says_how_to_set_the_store(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KUNJUNG_DATABASE_URL", raising=False)
    monkeypatch.setenv("KUNJUNG_SECRET_KEY_FILE", str(tmp_path / "secret_key"))
    monkeypatch.setattr(config, "checkout_root", lambda: None)
    with pytest.raises(SystemExit):
        main(["init"])
    assert "KUNJUNG_DATABASE_URL is not set" in capsys.readouterr().err
    monkeypatch.setenv("KUNJUNG_DATABASE_URL", f"sqlite:///{tmp_path}/kunjung.db")
    monkeypatch.delenv("KUNJUNG_SECRET_KEY_FILE")
    with pytest.raises(SystemExit):
        main(["init"])
    assert "KUNJUNG_SECRET_KEY_FILE is not set" in capsys.readouterr().err


# -- file modes and backups ---------------------------------------------------------------------------------
def test_the_store_its_wal_and_shm_and_backups_are_owner_only(env, tmp_path):
    assert run("init").exit_code == 0
    db = tmp_path / "live.db"
    live = open_store(env["KUNJUNG_DATABASE_URL"], COLLECTIONS)
    live.insert("server_state", {"id": "x"})  # a writer keeps -wal and -shm in place
    try:
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert path.exists(), path
            assert _mode(path) == 0o600, (path, oct(_mode(path)))
        result = run("backup", str(tmp_path / "copies" / "backup.db"))
        assert result.exit_code == 0, result.output
        assert _mode(tmp_path / "copies" / "backup.db") == 0o600
    finally:
        live.close()


def test_a_store_made_world_readable_by_an_older_version_is_narrowed(env, tmp_path):
    assert run("init").exit_code == 0
    db = tmp_path / "live.db"
    db.chmod(0o644)
    assert run("init").exit_code == 0
    assert _mode(db) == 0o600


def test_backup_refuses_to_overwrite_without_force(env, tmp_path):
    run("init")
    target = tmp_path / "backup.db"
    target.write_bytes(b"yesterday's backup")
    refused = CliRunner().invoke(cli, ["backup", str(target)])
    assert refused.exit_code != 0
    assert "--force" in refused.output
    assert target.read_bytes() == b"yesterday's backup"
    forced = run("backup", "--force", str(target))
    assert forced.exit_code == 0, forced.output
    assert target.read_bytes().startswith(b"SQLite format 3")
    assert _mode(target) == 0o600
