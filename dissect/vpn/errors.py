"""The one parse error of dissect.vpn."""


class DissectError(ValueError):
    """Malformed input.

    ``reason`` is a short English sentence; ``offset`` is the byte offset (in the buffer or the
    stream being parsed) where parsing failed.
    """

    __slots__ = ("reason", "offset")

    def __init__(self, reason: str, offset: int = 0):
        super().__init__(f"{reason} (offset {offset})")
        self.reason = reason
        self.offset = offset
