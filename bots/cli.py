"""The `flask flows` commands (stub, being written)."""
import click
from flask.cli import AppGroup

flows_cli = AppGroup("flows", help="Check, chat with, test and draw flows.")


@flows_cli.command("check")
def check() -> None:
    """Validate flows (stub)."""
    click.echo("ok")
