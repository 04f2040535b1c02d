"""The kunjung command line: init, backup and restore of the embedded store."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from server.cli import cli
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
    from server.cli import main

    monkeypatch.setenv("KUNJUNG_ACCESS_TOKEN_MINUTES", "fifteen")
    with pytest.raises(SystemExit) as exit_info:
        main(["init"])
    assert exit_info.value.code == 2
