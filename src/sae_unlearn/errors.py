"""One exception type for every user-facing mistake, so the CLI can print it without a traceback."""


class UserInputError(ValueError):
    """Bad input: the message says what is wrong and how to fix it."""


class NonFiniteLossError(RuntimeError):
    """Training produced NaN/inf; the last good weights were kept."""
