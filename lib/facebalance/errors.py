"""The one domain exception type; the CLI and stage boundary turn it into a one-line error."""


class FacebalanceError(Exception):
    """A user-facing error: bad params, bad input data, a missing file.

    The message must say what was wrong and where (file, row, key) and what was expected.
    """


class CorruptImageError(FacebalanceError):
    """An image that cannot be decoded; the message names its id and shard file."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (torch's and Arrow's run to dozens of
    lines), or its type's name when it has none."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
