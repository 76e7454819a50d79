"""Errors meant for the user: the CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """A problem the user can fix (bad path, bad argument, bad file); the message says what to do."""
