"""`python -m fairshare.cli`: the same as the `fairshare` command."""

from fairshare.cli.main import app

app()
