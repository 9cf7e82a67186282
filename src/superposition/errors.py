"""The error every layer raises for bad user input; the command line turns it into one line and exit 2."""


class ConfigError(ValueError):
    """Bad user input; the message is one line naming the field and the fix."""
