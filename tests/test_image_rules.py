"""Per-model image rules: lookup, extension by the user, and the requests a call turns into."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from genguard.core.image_rules import (
    PASS_THROUGH,
    ImageModelRules,
    ImageRuleBook,
    plan_image_requests,
    rules_for,
)


def test_builtin_rules() -> None:
    assert rules_for("gpt-image-1").returns == "b64_json"
    assert "response_format" in rules_for("gpt-image-1-mini").rejects
    assert rules_for("dall-e-3").max_n == 1
    assert rules_for("dall-e-2").max_n == 10
    assert rules_for("qwen-image").max_n == 1
    assert rules_for("QWEN-IMAGE").max_n == 1
    assert rules_for("openrouter/dall-e-3").max_n == 1
    assert rules_for("stable-diffusion-9") is PASS_THROUGH
    assert rules_for(None) is PASS_THROUGH


def test_exact_name_beats_prefix_and_longest_prefix_wins() -> None:
    book = ImageRuleBook(builtin=False)
    book.register("img-", ImageModelRules(max_n=8))
    book.register("img-pro-", ImageModelRules(max_n=4))
    book.register("img-pro-max", ImageModelRules(max_n=2))
    assert book.lookup("img-fast").max_n == 8
    assert book.lookup("img-pro-2").max_n == 4
    assert book.lookup("img-pro-max").max_n == 2
    assert book.lookup("dall-e-3") is PASS_THROUGH


def test_gpt_image_drops_response_format_with_a_logged_note(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="genguard"):
        plan = plan_image_requests(
            "gpt-image-1", {"prompt": "a fox", "n": 2, "response_format": "url", "output_format": "webp"}
        )
    assert plan.requests == ({"prompt": "a fox", "n": 2, "output_format": "webp", "model": "gpt-image-1"},)
    assert plan.returns == "b64_json"
    assert len(plan.notes) == 1
    assert "response_format" in plan.notes[0]
    assert "b64_json" in plan.notes[0]
    assert any("response_format" in r.getMessage() for r in caplog.records)


def test_n_is_split_into_calls_the_model_accepts() -> None:
    plan = plan_image_requests("qwen-image", {"prompt": "a fox", "n": 4, "size": "1024x1024"})
    assert [r["n"] for r in plan.requests] == [1, 1, 1, 1]
    assert all(r["size"] == "1024x1024" for r in plan.requests)
    assert any("4 times" in n for n in plan.notes)
    assert [r["n"] for r in plan_image_requests("dall-e-2", {"prompt": "x", "n": 23}).requests] == [10, 10, 3]
    single = plan_image_requests("dall-e-3", {"prompt": "x", "n": 1})
    assert single.requests == ({"prompt": "x", "n": 1, "model": "dall-e-3"},)
    assert single.notes == ()


def test_unknown_model_passes_through() -> None:
    params = {"prompt": "x", "n": 7, "response_format": "url", "weird": True}
    plan = plan_image_requests("my-own-model", params)
    assert plan.requests == ({**params, "model": "my-own-model"},)
    assert plan.notes == ()


def test_dall_e_drops_gpt_image_only_params() -> None:
    plan = plan_image_requests("dall-e-3", {"prompt": "x", "background": "transparent", "moderation": "low"})
    assert plan.requests == ({"prompt": "x", "model": "dall-e-3"},)
    assert len(plan.notes) == 2


def test_defaults_fill_missing_params() -> None:
    book = ImageRuleBook({"seedream-": ImageModelRules(defaults={"watermark": False})})
    plan = plan_image_requests("seedream-3", {"prompt": "x"}, book=book)
    assert plan.requests[0]["watermark"] is False
    plan = plan_image_requests("seedream-3", {"prompt": "x", "watermark": True}, book=book)
    assert plan.requests[0]["watermark"] is True


def test_load_from_toml_json_and_dict(tmp_path: Path) -> None:
    toml = tmp_path / "rules.toml"
    toml.write_text(
        '[models."flux-"]\nmax_n = 4\nrejects = ["quality"]\n\n[models."flux-pro"]\nreturns = "url"\n'
    )
    book = ImageRuleBook(builtin=False)
    book.load(toml)
    assert book.lookup("flux-schnell").max_n == 4
    assert book.lookup("flux-pro").returns == "url"
    js = tmp_path / "rules.json"
    js.write_text('{"kolors": {"max_n": 2}}')
    book.load(js)
    assert book.lookup("kolors").max_n == 2
    book.load({"models": {"ideogram-": {"rejects": ["style"]}}})
    assert book.lookup("ideogram-v3").rejects == frozenset({"style"})


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('[models."m"]\nmax_n = 0\n', "max_n"),
        ('[models."m"]\nreturns = "png"\n', "returns"),
        ('[models."m"]\nrejects = "quality"\n', "rejects"),
        ('[models."m"]\nmaxn = 2\n', "unknown image rule field"),
        ("not toml [", "cannot read"),
        ('models = "x"\n', "'models' must be a table"),
    ],
)
def test_bad_rule_files_name_file_and_field(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ValueError, match=needle) as info:
        ImageRuleBook().load(path)
    assert "bad.toml" in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read image rules"):
        ImageRuleBook().load(tmp_path / "nope.json")
