"""Click's own refusals (a missing argument, a bad value, "Usage:") speak the shell's language too."""

from __future__ import annotations

from click.testing import CliRunner

from server.cli import cli


def test_clicks_own_refusals_follow_the_shells_language(monkeypatch):
    runner = CliRunner()
    monkeypatch.setenv("KUNJUNG_LANG", "id")
    said = runner.invoke(cli, ["erase-household"], prog_name="kunjung")
    assert said.exit_code == 2
    assert "Galat: Argumen belum diberikan 'HOUSEHOLD_ID'." in said.output
    assert "Coba 'kunjung erase-household --help' untuk bantuan." in said.output
    assert "Cara pakai:" in said.output
    unknown = runner.invoke(cli, ["export-person", "--sebarang"], prog_name="kunjung")
    assert "Tidak ada opsi '--sebarang'." in unknown.output
    monkeypatch.setenv("KUNJUNG_LANG", "en")
    said = runner.invoke(cli, ["erase-household"], prog_name="kunjung")
    assert "Error: Missing argument 'HOUSEHOLD_ID'." in said.output
