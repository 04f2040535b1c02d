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


def test_help_texts_follow_the_shells_language(monkeypatch):
    runner = CliRunner()
    monkeypatch.setenv("KUNJUNG_LANG", "id")
    said = runner.invoke(cli, ["import-villages", "--help"], prog_name="kunjung")
    assert said.exit_code == 0
    text = " ".join(said.output.split())  # click wraps lines to the terminal
    assert "Muat batas desa dari FeatureCollection GeoJSON; keluar dengan kode 1 bila ada fitur yang ditolak." in text
    assert "--code-field TEXT Properti fitur yang berisi kode Kemendagri. [bawaan: code]" in text
    assert "Tampilkan pesan ini lalu keluar." in text
    listed = " ".join(runner.invoke(cli, ["--help"], prog_name="kunjung").output.split())
    assert "Pengaturan diambil dari variabel KUNJUNG_*." in listed
    assert "import-households Muat daftar rumah tangga" in listed
    monkeypatch.setenv("KUNJUNG_LANG", "en")
    said = runner.invoke(cli, ["import-villages", "--help"], prog_name="kunjung")
    text = " ".join(said.output.split())
    assert "Load village boundaries from a GeoJSON FeatureCollection; exits 1 if any feature is refused." in text
    assert "--code-field TEXT Feature property with the Kemendagri code. [default: code]" in text
    assert "import-households Load a household register" in " ".join(
        runner.invoke(cli, ["--help"], prog_name="kunjung").output.split())


def test_every_help_text_of_the_cli_is_catalogued():
    """A command or option whose help is not marked N_() would stay English: none is, the relay's included."""
    import inspect

    import click

    from server.i18n import catalogue

    indonesian = catalogue("id")
    unsaid = []
    # groups too: `kunjung relay` and its commands live in server/relay/cli.py
    commands = list(cli.commands.items())
    while commands:
        name, command = commands.pop()
        if isinstance(command, click.Group):
            commands.extend((f"{name} {sub}", inner) for sub, inner in command.commands.items())
        texts = [command.help] + [param.help for param in command.params if getattr(param, "help", None)]
        unsaid.extend(f"{name}: {text}" for text in texts
                      if text and indonesian.gettext(inspect.cleandoc(text)) == inspect.cleandoc(text))
    assert not unsaid
