"""Findings read from decrypted IKE and ESP (--keys): ``basis: decrypted``.

The exact notification inside IKE_AUTH / CREATE_CHILD_SA / INFORMATIONAL (IKEv2) and the
encrypted Informationals of IKEv1 use the same codes as the keyless inferences
(IKE_AUTH_FAILED, IKE_TS_UNACCEPTABLE, CHILD_SA_FAILED, ESP_SPI_MISMATCH, DPD_TIMEOUT ...) and
supersede the inferred finding about the same exchange (:func:`pcapvpn.rules.supersede`).  New
codes cover what only decryption shows: certificates outside their validity at the packet's
time, overlapping traffic selectors, configuration-payload failures, negotiated SAs that never
carry ESP, inner traffic without answers, keys that do not match an SA, and SAs left undecrypted.
The IKE <-> ESP cross-check ties every ESP SA to the child SA that announced its SPI.

A rule never parses bytes: what the payloads say comes from the tracker
(``IkeMsg.inner``, ``EspSA.decrypt``).

One room per question: :mod:`.notifications` (the exact error notifications, XAUTH failures),
:mod:`.certificates`, :mod:`.selectors` (overlapping traffic selectors), :mod:`.dpd` (IKEv1
R-U-THERE in encrypted Informationals), :mod:`.keys` (keys that do not match, SAs without keys),
:mod:`.cross_check` (IKE <-> ESP); :mod:`.common` holds what they share.  Importing the package
registers the rules, in this order.  INNER_NO_ANSWER, judged on the one inner model, is
:mod:`pcapvpn.rules.inner`'s.
"""

from __future__ import annotations

from pcapvpn.rules.decrypted import (  # noqa: F401 - registers the rules
    notifications, certificates, selectors, dpd, keys, cross_check,
)
