"""The analyzer's own vocabulary as str-valued enums: stages, severities, bases, IKE roles.

Members are their strings (``Severity.ERROR == "error"``, same hash, ``str()``/``format()`` give
the value, JSON writes the value), so the model, the JSON report and the translations see exactly
the strings they always saw; code names them, and a misspelt name is an AttributeError instead of
a silent mismatch.  Python 3.10 has no ``StrEnum``: the ``str`` mixin does the same.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Name", "Stage", "Severity", "Basis", "Role"]


class Name(str, Enum):
    """A str-valued enum whose members print as their value (also on Python 3.10/3.12)."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


class Stage(Name):
    """Where a diagnosis is placed (DESIGN.md, "The troubleshooting model"), in the order of the
    wire; ``capture`` stands outside the order."""

    REACHABILITY = "reachability"
    NEGOTIATION = "negotiation"
    NAT_TRAVERSAL = "nat_traversal"
    AUTHENTICATION = "authentication"
    CHILD_SA = "child_sa"
    DATAPLANE = "dataplane"
    ROUTING = "routing"
    INNER = "inner"
    STABILITY = "stability"
    CAPTURE = "capture"


class Severity(Name):
    """Worst first."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Basis(Name):
    """What a finding rests on."""

    OBSERVED = "observed"
    INFERRED = "inferred"
    DECRYPTED = "decrypted"
    LOG = "log"


class Role(Name):
    """The two ends of an IKE SA (RFC 7296 §2.2: the original initiator and responder)."""

    INITIATOR = "initiator"
    RESPONDER = "responder"

    @property
    def other(self) -> Role:
        return Role.RESPONDER if self is Role.INITIATOR else Role.INITIATOR
