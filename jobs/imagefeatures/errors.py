"""Errors the jobs report to the user as a one-line message and an exit code."""


class JobInputError(Exception):
    """Bad input or arguments: nothing was written. Exit code 2."""

    exit_code = 2


class CheckFailedError(Exception):
    """Output was written but failed validation. Exit code 1."""

    exit_code = 1


def first_line(exc: BaseException) -> str:
    """An exception's message as one line for the user (py4j's are whole Java stack traces,
    whose first line only names the Java method called: the Java exception says what failed)."""
    java = getattr(exc, "java_exception", None)
    text = (str(java) if java is not None else str(exc)).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
