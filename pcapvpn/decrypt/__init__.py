"""Decryption and integrity checks of IKEv2 SK/SKF, IKEv1 and ESP with keys from key tables.

Algorithms (all through ``cryptography``; 3DES from its ``decrepit`` module when present, single
DES as 3DES with the key repeated):

* IKEv2 (RFC 7296 §3.14; SKF: RFC 7383 §2.5): AES-CBC 128/192/256 (RFC 3602), AES-CTR (RFC 5930:
  the key material ends with a 4-byte nonce), AES-GCM and AES-CCM with 8/12/16-octet ICV
  (RFC 5282: salt 4 / 3 bytes, 8-byte IV, the associated data is everything from the IKE header to
  the end of the SK/SKF payload header), ChaCha20-Poly1305 (RFC 7634), 3DES, NULL; HMAC-MD5-96,
  HMAC-SHA1-96, HMAC-SHA1-160, HMAC-SHA2-256-128, HMAC-SHA2-384-192, HMAC-SHA2-512-256 (the ICV
  covers the whole message up to the ICV).
* IKEv1 (RFC 2409 Appendix B): DES, 3DES, AES-CBC.  Phase 1: the first IV is
  ``hash(g^xi | g^xr)`` cut to the block size, then each encrypted message's last ciphertext
  block is the next IV; phase 2 / Informational / Transaction: ``hash(last phase-1 ciphertext
  block | Message ID)`` for an exchange's first message, then the chain per Message ID.  IKEv1
  has no integrity check on its encryption: a wrong key is recognised by a payload chain that
  does not parse (unknown payload types, lengths running past the message).
* ESP (RFC 4303): AES-CBC, 3DES/DES-CBC, AES-CTR (RFC 3686), AES-GCM (RFC 4106), AES-CCM
  (RFC 4309), ChaCha20-Poly1305 (RFC 7634), NULL (RFC 2410); HMAC ICVs as above.  Without an
  integrity check (``ANY n bit`` / tcpdump ``-hmac96``) a wrong key is recognised by the trailer:
  the default padding 1, 2, 3 ... (RFC 4303 §2.4) and a known Next Header.

Statuses (``Opened.status``): ``ok`` (integrity verified), ``unverified`` (no integrity check
was possible; the plaintext is sane), ``icv_failed`` (the keys do not match this SA/message),
``malformed`` (decrypted, but the result is no valid payload chain / trailer: wrong key where
nothing else can tell), ``truncated``, ``unsupported``.

Nothing here keeps packet bytes beyond a call; key material never appears in a message.

Key tables are read by :mod:`.keyfile` into the records and the store of :mod:`.keys`.  The
rooms: :mod:`.primitives` (ciphers, AEAD, HMAC, the statuses), :mod:`.ikev2` (SK/SKF),
:mod:`.ikev1` (phase-1 / phase-2 IV chains), :mod:`.esp`, and :mod:`.payloads` (what decrypted IKE
payloads say, as :class:`.payloads.InnerPayloads`).  The tracker calls them
(:mod:`pcapvpn.track.ike`, :mod:`pcapvpn.track.inner.decrypted`); rules read only what the
tracker keeps.
"""
