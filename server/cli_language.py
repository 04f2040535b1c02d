"""Click's own words (usage errors, "Usage:", prompts) and kunjung's help texts, said in the CLI's language."""

from __future__ import annotations

import inspect

import click.core
import click.decorators
import click.exceptions
import click.formatting
import click.parser
import click.termui
import click.types
import click.utils

from .i18n import N_, catalogue, current_language

# Click marks these with gettext's `_` and fills their `{name}` fields itself after translation; listed
# here so that the catalogue holds them (click 8's exceptions, parser, types, core and formatting).
CLICK_MESSAGES = [
    N_("Error: {message}"),
    N_("Try '{command} {option}' for help."),
    N_("Usage:"),
    N_("Aborted!"),
    N_("Missing argument"),
    N_("Missing option"),
    N_("Missing parameter"),
    N_("Missing {param_type}"),
    N_("Missing parameter: {param_name}"),
    N_("Missing command."),
    N_("No such command {name!r}."),
    N_("No such option {name!r}."),
    N_("Option {name!r} does not take a value."),
    N_("Invalid value for {param_hint}: {message}"),
    N_("Invalid value: {message}"),
    N_("{value!r} is not a valid {number_type}."),
    N_("{value!r} is not a valid UUID."),
    N_("{value} is not in the range {range}."),
    N_("{name} {filename!r} does not exist."),
    N_("Could not open file {filename!r}: {message}"),
    N_("Repeat for confirmation"),
    N_("Error: The two entered values do not match."),
    N_("Error: invalid input"),
    N_("Options"),
    N_("Commands"),
    N_("Show this message and exit."),
    N_("default: {default}"),
    N_("env var: {var}"),
]


def ngettext(singular: str, plural: str) -> tuple[str, str]:  # the name pybabel reads as a plural message
    return singular, plural


CLICK_PLURALS = [
    ngettext("Option {name!r} requires an argument.", "Option {name!r} requires {nargs} arguments."),
    ngettext("Got unexpected extra argument ({args})", "Got unexpected extra arguments ({args})"),
    ngettext("Did you mean {possibility}?", "(Did you mean one of: {possibilities}?)"),
]

# Each click module bound gettext's functions when it was imported; these are the ones that say something.
_CLICK_MODULES = (click.core, click.decorators, click.exceptions, click.formatting, click.parser, click.termui,
                  click.types, click.utils)


def _say(message: str) -> str:
    return catalogue(current_language()).gettext(message)


def _say_plural(singular: str, plural: str, count: int) -> str:
    return catalogue(current_language()).ngettext(singular, plural, count)


def _said_help(method):
    """``method`` of a command or option, run with its help text (marked N_() in server/cli.py) said in the
    current language: click keeps the English it was given at import, before the shell's language is known."""

    def speaking(self, *args, **kwargs):
        kept = self.help, getattr(self, "short_help", None)
        if self.help:
            self.help = _say(inspect.cleandoc(self.help))
        if kept[1]:
            self.short_help = _say(inspect.cleandoc(kept[1]))
        try:
            return method(self, *args, **kwargs)
        finally:
            self.help = kept[0]
            if kept[1]:
                self.short_help = kept[1]

    speaking.kunjung_says_help = True  # type: ignore[attr-defined]
    return speaking


def install_cli_language() -> None:
    """Point click's modules at the catalogue; the language is looked up each time a message is said."""
    for module in _CLICK_MODULES:
        if hasattr(module, "_"):
            module._ = _say  # type: ignore[attr-defined]
        if hasattr(module, "ngettext"):
            module.ngettext = _say_plural  # type: ignore[attr-defined]
    # help texts: a command's own (``kunjung import-households --help``), its line in the group's list, and
    # each option's
    for owner, name in ((click.core.Command, "format_help_text"), (click.core.Command, "get_short_help_str"),
                        (click.core.Option, "get_help_record")):
        method = getattr(owner, name)
        if not getattr(method, "kunjung_says_help", False):
            setattr(owner, name, _said_help(method))
