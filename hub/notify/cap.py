"""CAP 1.2 alerts (OASIS) and the Atom feed of current alerts; pure functions, no I/O.

An incident's first alert is an `Alert`; later changes are `Update`s and its clearing is a
`Cancel`, each naming every earlier message of the incident in `references`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MIME = "application/cap+xml"
ATOM_MIME = "application/atom+xml"
_SEVERITY = {"minor": "Minor", "moderate": "Moderate", "severe": "Severe", "extreme": "Extreme"}
# CAP forbids spaces, commas and the XML-special '<' and '&' in identifiers and senders.
_UNSAFE = re.compile(r"[\s,<&]+")


@dataclass(frozen=True, slots=True)
class CapRef:
    """An earlier message, as `references` names it."""

    sender: str
    identifier: str
    sent: str

    def __str__(self) -> str:
        return f"{self.sender},{self.identifier},{self.sent}"


@dataclass(frozen=True, slots=True)
class CapArea:
    """Where the alert applies: a description and polygons as (lon, lat) rings."""

    desc: str
    rings: tuple[tuple[tuple[float, float], ...], ...] = ()


def cap_time(seconds: float) -> str:
    """CAP's dateTime: whole seconds with an explicit offset (no 'Z', no fractions)."""
    return datetime.fromtimestamp(int(seconds), tz=UTC).isoformat()


def safe_token(text: str) -> str:
    """`text` usable as a CAP identifier or sender."""
    return _UNSAFE.sub("-", text.strip()) or "-"


def msg_type(event: str, earlier: int) -> str:
    """Alert for an incident's first message, Cancel when it cleared, else Update."""
    if earlier == 0:
        return "Alert"
    return "Cancel" if event == "cleared" else "Update"


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    if text is not None:
        el.text = text
    return el


def _polygon(ring: Sequence[tuple[float, float]]) -> str | None:
    points = list(ring)
    if len(points) < 3:
        return None
    if points[0] != points[-1]:
        points.append(points[0])
    if len(points) < 4:
        return None
    return " ".join(f"{lat:.6f},{lon:.6f}" for lon, lat in points)


def build_alert(
    *,
    identifier: str,
    sender: str,
    sent: str,
    kind: str,
    references: Iterable[CapRef],
    incident: dict[str, Any],
    text: str,
    category: str,
    language: str,
    sender_name: str | None,
    web: str | None,
    area: CapArea,
) -> bytes:
    """One CAP 1.2 alert message as UTF-8 XML."""
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier", safe_token(identifier))
    _sub(alert, "sender", safe_token(sender))
    _sub(alert, "sent", sent)
    _sub(alert, "status", "Actual")
    _sub(alert, "msgType", kind)
    _sub(alert, "scope", "Public")
    refs = " ".join(str(r) for r in references)
    if refs:
        _sub(alert, "references", refs)
    _sub(alert, "incidents", safe_token(str(incident["id"])))
    info = _sub(alert, "info")
    _sub(info, "language", language)
    _sub(info, "category", category)
    _sub(info, "event", str(incident.get("rule") or "incident"))
    _sub(info, "responseType", "AllClear" if kind == "Cancel" else "Monitor")
    # A cancelled alert is over; the hub's alerts are about what its sensors see now.
    _sub(info, "urgency", "Past" if kind == "Cancel" else "Immediate")
    _sub(info, "severity", _SEVERITY.get(str(incident.get("severity")), "Unknown"))
    _sub(info, "certainty", "Observed")
    if sender_name:
        _sub(info, "senderName", sender_name)
    _sub(info, "headline", str(incident.get("title") or incident.get("rule") or ""))
    _sub(info, "description", text)
    if web:
        _sub(info, "web", web)
    for name in ("id", "state", "subject", "site", "region"):
        value = incident.get(name)
        if value:
            param = _sub(info, "parameter")
            _sub(param, "valueName", f"hub:{name}")
            _sub(param, "value", str(value))
    area_el = _sub(info, "area")
    _sub(area_el, "areaDesc", area.desc or str(incident.get("region") or ""))
    for ring in area.rings:
        polygon = _polygon(ring)
        if polygon:
            _sub(area_el, "polygon", polygon)
    ET.register_namespace("", CAP_NS)
    out: bytes = ET.tostring(alert, encoding="utf-8", xml_declaration=True)
    return out


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """A current alert in the feed: the incident's latest CAP message."""

    incident_id: str
    identifier: str
    sent: str
    kind: str
    headline: str
    summary: str


def build_feed(entries: Sequence[FeedEntry], *, base_url: str, title: str, author: str) -> bytes:
    """The Atom feed (RFC 4287) of current alerts, newest first, each linking its CAP XML."""
    ET.register_namespace("", ATOM_NS)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    ordered = sorted(entries, key=lambda e: e.sent, reverse=True)
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    sub(feed, "id", f"{base_url}/cap/feed.atom")
    sub(feed, "title", title)
    sub(feed, "updated", ordered[0].sent if ordered else cap_time(0))
    sub(feed, "link", rel="self", href=f"{base_url}/cap/feed.atom", type=ATOM_MIME)
    sub(sub(feed, "author"), "name", author)
    for entry in ordered:
        item = sub(feed, "entry")
        sub(item, "id", f"urn:cap:{safe_token(entry.identifier)}")
        sub(item, "title", f"{entry.kind}: {entry.headline}")
        sub(item, "updated", entry.sent)
        href = f"{base_url}/cap/{entry.incident_id}.xml"
        sub(item, "link", rel="alternate", href=href, type=CAP_MIME)
        sub(item, "summary", entry.summary)
    out: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return out
