"""Write the sample inputs of ``genguard batch`` beside this script: the same output on every run.

- ``reviews.jsonl``: 1,000 product-review classification requests in the OpenAI Batch input shape.
- ``reviews.csv``: the first 50 reviews as a table, for a template::

      genguard batch examples/batch/reviews.csv --out runs/csv --model gpt-4o-mini \\
          --template "Classify this review of {product} as positive, negative or mixed: {text}"

- ``bad.jsonl``: one line of every kind the reader refuses, to see what it says about each.

Run ``python examples/batch/make_reviews.py`` after changing it; a test checks the files match.
"""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).parent
COUNT = 1000
TABLE_ROWS = 50
SEED = 20240611
MODEL = "gpt-4o-mini"
SYSTEM = (
    "You classify product reviews. Answer with exactly one word: positive, negative or mixed. "
    "Mixed means the review praises and criticises the product in about equal measure."
)

PRODUCTS = {
    "headphones": ["the Arlo NC700 headphones", "these wireless earbuds", "the Kestrel over-ear headset"],
    "kitchen": ["this 12-cup coffee maker", "the cast iron skillet", "this hand blender", "the rice cooker"],
    "outdoor": [
        "the two-person tent",
        "this hiking backpack",
        "the insulated water bottle",
        "these trail shoes",
    ],
    "home": ["the robot vacuum", "this memory foam pillow", "the LED desk lamp", "these blackout curtains"],
    "tech": ["this USB-C hub", "the 27-inch monitor", "the mechanical keyboard", "this phone case"],
    "kids": ["the wooden train set", "this kids' scooter", "the 500-piece puzzle", "the baby monitor"],
}
# Each aspect with whether it is plural, so the verbs agree with it.
ASPECTS = {
    "headphones": ["sound", "battery life", "noise cancelling", "the ear cushions+", "the app", "the mic"],
    "kitchen": ["cleanup", "build quality", "the handle", "the price", "the weight", "the finish"],
    "outdoor": ["weight", "waterproofing", "durability", "the price", "the colours+", "the stitching"],
    "home": [
        "setup",
        "the design",
        "the materials+",
        "the packaging",
        "the price",
        "the smell out of the box",
    ],
    "tech": ["build quality", "the cable", "the fit", "the price", "the finish", "the instructions+"],
    "kids": ["safety", "the instructions+", "replay value", "the paint", "assembly", "the pieces+"],
}
PRAISE = [
    "{aspect} {is} excellent",
    "I was surprised by how good {aspect} {is}",
    "{aspect} {beats} what I had before",
    "no complaints at all about {aspect}",
    "{aspect} {is} exactly as described",
    "honestly {aspect} {is} the best part",
    "{aspect} {has} held up after {weeks} weeks of daily use",
]
COMPLAINT = [
    "{aspect} {is} a letdown",
    "{aspect} stopped working properly after {weeks} weeks",
    "I had real problems with {aspect}",
    "{aspect} {feels} cheap",
    "{aspect} {is} worse than the photos suggest",
    "the seller never answered my question about {aspect}",
]
VERBS = {"is": "are", "beats": "beat", "has": "have", "feels": "feel"}
OPENERS = [
    "Bought {product} for my daughter.",
    "I've used {product} every day for a month.",
    "Second one I've owned.",
    "Got {product} on sale.",
    "Gift for my partner, who uses it daily.",
    "Ordered {product} after reading a lot of reviews.",
    "",
]
CLOSERS = {
    "positive": ["Would buy again.", "Five stars.", "Highly recommend!", "Worth every penny.", "Love it."],
    "negative": ["Returning it.", "One star.", "Save your money.", "Very disappointed.", "Do not buy."],
    "mixed": ["Three stars.", "It's fine, I guess.", "OK for the price.", "Not sure I'd buy it again.", ""],
}
QUIRKS = [
    'Packaging said "premium", which is a stretch.',
    "Arrived a day early.",
    "Box was dented, product fine.",
    "",
]


def clause_text(clause: str, aspect: str, rng: random.Random) -> str:
    plural = aspect.endswith("+")
    verbs = {verb: VERBS[verb] if plural else verb for verb in VERBS}
    return clause.format(aspect=aspect.rstrip("+"), weeks=rng.randint(2, 9), **verbs)


def review(rng: random.Random) -> tuple[str, str, str]:
    """One review: (product, text, the label a careful reader would give it)."""
    category = rng.choice(sorted(PRODUCTS))
    product = rng.choice(PRODUCTS[category])
    label = rng.choices(["positive", "negative", "mixed"], weights=[5, 3, 2])[0]
    aspects = rng.sample(ASPECTS[category], 2)
    if label == "positive":
        clauses = rng.sample(PRAISE, 2)
    elif label == "negative":
        clauses = rng.sample(COMPLAINT, 2)
    else:
        clauses = [rng.choice(PRAISE), rng.choice(COMPLAINT)]
        rng.shuffle(clauses)
    joined = [clause_text(clause, aspect, rng) for clause, aspect in zip(clauses, aspects, strict=True)]
    link = " but " if label == "mixed" else rng.choice([", and ", ". Also, ", "; "])
    body = joined[0][0].upper() + joined[0][1:] + link + joined[1] + "."
    parts = [
        rng.choice(OPENERS).format(product=product),
        body,
        rng.choice(QUIRKS),
        rng.choice(CLOSERS[label]),
    ]
    text = " ".join(part for part in parts if part)
    if rng.random() < 0.15:
        text = text.lower()
    if rng.random() < 0.1:
        text = text.replace(". ", "!! ", 1)
    return product, text, label


def reviews() -> list[tuple[str, str, str, str]]:
    rng = random.Random(SEED)
    return [(f"review-{i:04d}", *review(rng)) for i in range(1, COUNT + 1)]


def reviews_jsonl(rows: list[tuple[str, str, str, str]]) -> bytes:
    rng = random.Random(SEED + 1)
    out = io.StringIO()
    for custom_id, product, text, _ in rows:
        body = {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Review of {product}:\n{text}"},
            ],
            "max_tokens": rng.randint(48, 64),
            "temperature": 0,
        }
        line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
        out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return out.getvalue().encode()


def reviews_csv(rows: list[tuple[str, str, str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "product", "text", "expected"])
    writer.writerows(rows[:TABLE_ROWS])
    return out.getvalue().encode()


def _line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Classify: great kettle, loud click."}]}
CHAT_URL = "/v1/chat/completions"

# (what the line shows, its bytes): the order is the file's order, one kind each.
BAD_LINES: list[tuple[str, bytes]] = [
    ("a good line", _line({"custom_id": "ok-1", "method": "POST", "url": CHAT_URL, "body": CHAT})),
    (
        "broken JSON",
        b'{"custom_id": "broken", "method": "POST", "url": "/v1/chat/completions", "body": {"model": }\n',
    ),
    ("a JSON array, not an object", _line([{"custom_id": "in-a-list", "url": CHAT_URL, "body": CHAT}])),
    ("no custom_id", _line({"method": "POST", "url": CHAT_URL, "body": CHAT})),
    ("an empty custom_id", _line({"custom_id": "", "method": "POST", "url": CHAT_URL, "body": CHAT})),
    (
        "a custom_id that is not a string",
        _line({"custom_id": 1.5, "method": "POST", "url": CHAT_URL, "body": CHAT}),
    ),
    ("an unknown url", _line({"custom_id": "url", "method": "POST", "url": "/v1/audio/speech", "body": CHAT})),
    ("a method other than POST", _line({"custom_id": "get", "method": "GET", "url": CHAT_URL, "body": CHAT})),
    (
        "a body that is not an object",
        _line({"custom_id": "str-body", "url": CHAT_URL, "body": json.dumps(CHAT)}),
    ),
    (
        "a body without model",
        _line({"custom_id": "no-model", "url": CHAT_URL, "body": {"messages": CHAT["messages"]}}),
    ),
    (
        "a chat body without messages",
        _line({"custom_id": "no-messages", "url": CHAT_URL, "body": {"model": MODEL}}),
    ),
    (
        "messages that are not a list",
        _line({"custom_id": "str-messages", "url": CHAT_URL, "body": {"model": MODEL, "messages": "hi"}}),
    ),
    (
        "a message without a role",
        _line(
            {
                "custom_id": "no-role",
                "url": CHAT_URL,
                "body": {"model": MODEL, "messages": [{"content": "hi"}]},
            }
        ),
    ),
    (
        "an embeddings body without input",
        _line(
            {"custom_id": "no-input", "url": "/v1/embeddings", "body": {"model": "text-embedding-3-small"}}
        ),
    ),
    (
        "an images body without prompt",
        _line({"custom_id": "no-prompt", "url": "/v1/images/generations", "body": {"model": "gpt-image-1"}}),
    ),
    ("a bare body that could be chat or embeddings", _line({"model": MODEL, "messages": [], "input": "x"})),
    ("a blank line: skipped, not a problem", b"\n"),
    (
        "bytes that are not UTF-8",
        b'{"custom_id": "latin-1", "url": "/v1/embeddings", "body": {"input": "caf\xe9"}}\n',
    ),
    (
        "a custom_id used twice (check_file finds it)",
        _line({"custom_id": "ok-1", "url": CHAT_URL, "body": CHAT}),
    ),
]


def bad_jsonl() -> bytes:
    return b"".join(line for _, line in BAD_LINES)


def files() -> dict[str, bytes]:
    rows = reviews()
    return {"reviews.jsonl": reviews_jsonl(rows), "reviews.csv": reviews_csv(rows), "bad.jsonl": bad_jsonl()}


def main() -> int:
    for name, data in files().items():
        (HERE / name).write_bytes(data)
        lines = data.count(b"\n")
        print(f"wrote {HERE / name} ({lines} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
