"""Plate text: one spelling per plate, and the keyed digests that the watch-list travels as.

A plate is read as `12가 3456`, `123가-4567` or `서울 12가 3456` depending on the reader and
the plate's age; the watch-list and the readers must agree on one form, so every plate is
normalised before it is compared, stored or hashed: Unicode NFC (a syllable typed as jamo
becomes one character), spaces, hyphens and dots left out, Latin letters upper-cased.

Stream workers never see the watch-list itself: the hub publishes HMAC-SHA256 digests of the
normalised plates, keyed with `plates.secret`, which the workers share with the hub and a
broker client does not. (Plain hashes would not hide anything: there are only some 10^9
Korean plates, hashed in minutes.)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

# Korean registration plates: the current `123가4567`, the older `12가3456`, and the regional
# form of before 2006, `서울12가3456` (two syllables of the province or city first).
KOREAN = r"(?:[가-힣]{2})?[0-9]{2,3}[가-힣][0-9]{4}"
DIGEST_BYTES = 16  # 128 bits: no collision among any number of plates a province lists
_DROPPED = re.compile(r"[\s\-.·]+")


def normalize(text: str) -> str:
    """`text` in the one form plates are compared in (it may still not be a plate)."""
    return _DROPPED.sub("", unicodedata.normalize("NFC", text)).upper()


def plate_pattern(pattern: str = KOREAN) -> re.Pattern[str]:
    """The compiled pattern a normalised plate must match whole."""
    return re.compile(pattern)


def digest(secret: bytes, plate: str) -> str:
    """The keyed digest of a normalised plate, as hex."""
    mac = hmac.new(secret, plate.encode(), hashlib.sha256).digest()
    return mac[:DIGEST_BYTES].hex()
