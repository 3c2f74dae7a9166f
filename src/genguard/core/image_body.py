"""Image responses and file types by their bytes, sans-I/O: an images body becomes an :class:`ImageResult`
and an :class:`~genguard.Outcome`; :func:`sniff` names a file's type from its first bytes. Never raises.

An image the provider's safety filter flagged is not an image: a per-image flag (``is_nsfw``, ``nsfw``,
``has_nsfw_concepts``, a ``finish_reason``/``finishReason`` of the content-filter family such as Fireworks'
``CONTENT_FILTERED``, Azure's ``content_filter_results`` with a category ``filtered``), a flag list beside
``data`` (``nsfw_content_detected: [true]``, ``has_nsfw_concepts``, as fal and diffusers send), or an item
with no URL and no bytes that only carries a ``revised_prompt``. A flagged image is dropped even when a URL or
bytes came with it (diffusers and fal send a black placeholder); the response is ``content_filtered`` when
nothing else is left, and ok with ``images_filtered`` in its JSON when some images survived.

>>> image_outcome({"created": 1, "data": []}).code
'content_filtered'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .error_verdict import classify_error
from .headers import request_id as header_request_id
from .json_text import dumps
from .json_values import as_int, as_map
from .outcome import Outcome, Usage
from .taxonomy import is_content_filter

__all__ = ["ImageItem", "ImageResult", "image_outcome", "parse_image_response", "sniff"]


# -- images ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageItem:
    """One image of an images response: a ``url`` to fetch or ``b64_json`` bytes, and any rewritten prompt."""

    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class ImageResult:
    """An images response: its items (empty when the provider filtered them), usage and ``created`` time.

    >>> parse_image_response({"created": 1, "data": [{"url": "https://x/a.png"}]}).items[0].url
    'https://x/a.png'
    """

    items: tuple[ImageItem, ...] = ()
    usage: Usage | None = None
    created: int | None = None
    filtered: int = 0
    """How many images the provider's safety filter flagged (not in ``items``)."""
    filtered_by: tuple[str, ...] = ()
    """What said so (``is_nsfw``, ``finish_reason CONTENT_FILTERED``...), for the message."""


def parse_image_response(data: object) -> ImageResult | None:
    """Read ``{"created", "data": [{"url"|"b64_json", "revised_prompt"?}], "usage"?}``; ``None`` if the body
    is not an images response. Images a safety filter flagged are counted in ``filtered``, not kept in
    ``items``. Never raises.

    >>> parse_image_response({"created": 1, "data": []}).items
    ()
    >>> parse_image_response({"data": [{"url": None, "b64_json": None, "is_nsfw": True}]}).filtered
    1
    """
    d = as_map(data)
    if d is None:
        return None
    items_raw = d.get("data")
    if not isinstance(items_raw, list):
        # No images at all, but the body says the filter took them (Fireworks: {"finishReason": ...}).
        whole = _filter_word(d)
        if whole is None:
            return None
        return ImageResult((), Usage.from_dict(d.get("usage")), as_int(d.get("created")), 1, (whole,))
    flags = _flag_lists(d)
    whole = _filter_word(d)
    items: list[ImageItem] = []
    filtered_by: list[str] = []
    for position, item in enumerate(items_raw):
        if not isinstance(item, Mapping):
            return None
        url = item.get("url")
        b64 = item.get("b64_json")
        url = url if isinstance(url, str) and url else None
        b64 = b64 if isinstance(b64, str) and b64 else None
        revised = item.get("revised_prompt")
        revised = revised if isinstance(revised, str) else None
        flag = _item_flag(item) or next((name for name, values in flags if _nth(values, position)), None)
        if flag is None and url is None and b64 is None:
            if revised is None and whole is None:
                return None
            # The prompt was read (and perhaps rewritten) but no image came back: the filter took it.
            flag = whole or "no image, only a revised_prompt"
        if flag is not None:
            filtered_by.append(flag)
            continue
        items.append(ImageItem(url, b64, revised))
    return ImageResult(
        tuple(items),
        Usage.from_dict(d.get("usage")),
        as_int(d.get("created")),
        len(filtered_by),
        tuple(dict.fromkeys(filtered_by)),
    )


# Per-image safety flags as providers name them; a true value means the image was filtered.
_FLAG_KEYS = ("is_nsfw", "nsfw", "has_nsfw_concepts", "nsfw_content_detected")
_FINISH_KEYS = ("finish_reason", "finishReason")


def _item_flag(item: Mapping[str, object]) -> str | None:
    for key in _FLAG_KEYS:
        if item.get(key) is True:
            return key
    word = _filter_word(item)
    if word is not None:
        return word
    results = item.get("content_filter_results")
    if isinstance(results, Mapping):
        hits = [str(k) for k, v in results.items() if isinstance(v, Mapping) and v.get("filtered") is True]
        if hits:
            return "content_filter_results: " + ", ".join(hits)
    return None


def _filter_word(obj: Mapping[str, object]) -> str | None:
    for key in _FINISH_KEYS:
        value = obj.get(key)
        if isinstance(value, str) and is_content_filter(value):
            return f"{key} {value}"
    return None


def _flag_lists(d: Mapping[str, object]) -> list[tuple[str, list[object]]]:
    # fal and diffusers: a list of booleans beside the images, one per image.
    return [(key, value) for key in _FLAG_KEYS if isinstance(value := d.get(key), list)]


def _nth(values: list[object], position: int) -> bool:
    return position < len(values) and values[position] is True


def image_outcome(data: object, *, status: int = 200, headers: Mapping[str, str] | None = None) -> Outcome:
    """The :class:`~genguard.Outcome` (endpoint ``image``) of an images response body.

    >>> image_outcome({"created": 1, "data": []}).code
    'content_filtered'
    >>> image_outcome({"created": 1, "data": [{"b64_json": "aGk="}]}).extra["images"]
    ['b64_json (2 bytes)']
    """
    d = as_map(data)
    request_id = header_request_id(headers)
    if (d is not None and d.get("error")) or status >= 400:
        return classify_error(status, headers, dumps(data), endpoint="image")
    result = parse_image_response(data)
    if result is None:
        return Outcome.failure(
            "invalid_response",
            endpoint="image",
            status=status,
            request_id=request_id,
            message="the body is not an images response: no 'data' list of items with 'url' or 'b64_json'",
        )
    if not result.items:
        if result.filtered:
            n = result.filtered
            message = (
                f"the provider's safety filter flagged {'the image' if n == 1 else f'all {n} images'} "
                f"({'; '.join(result.filtered_by)}): no image came back"
            )
        else:
            message = "the response had an empty 'data' list: no images came back"
        outcome = Outcome.failure(
            "content_filtered",
            endpoint="image",
            status=status,
            request_id=request_id,
            usage=result.usage,
            message=message,
        )
        return outcome.with_extra(images_filtered=result.filtered) if result.filtered else outcome
    images = [it.url if it.url else f"b64_json ({_b64_len(it.b64_json or '')} bytes)" for it in result.items]
    revised = [it.revised_prompt for it in result.items if it.revised_prompt]
    outcome = Outcome.success(
        endpoint="image", status=status, request_id=request_id, usage=result.usage
    ).with_extra(images=images, revised_prompts=revised)
    if result.filtered:
        # Some images came back: the call is usable, but the user should know how many the filter took.
        return outcome.with_extra(images_filtered=result.filtered)
    return outcome


def _b64_len(text: str) -> int:
    """Decoded size of base64 text without decoding it (the hot path should not copy megabytes)."""
    n = len(text.rstrip())
    if n == 0:
        return 0
    pad = len(text) - len(text.rstrip("=\n\r "))
    return max(0, n * 3 // 4 - min(pad, 2))


def sniff(data: bytes) -> str | None:
    """The MIME type of a file by its first bytes (image/png, image/jpeg, image/webp, image/gif, video/mp4,
    video/webm, video/quicktime); ``None`` for anything else, such as an HTML error page.

    >>> sniff(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(8)), sniff(b"<html>expired</html>")
    ('image/png', None)
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        return None
    head = bytes(data[:64])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    box = head[4:8]
    if box == b"ftyp":
        brand = head[8:12]
        if brand == b"qt  ":
            return "video/quicktime"
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "image/heic"
        return "video/mp4"
    if box in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "video/quicktime"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm" if b"webm" in head else "video/x-matroska"
    return None
