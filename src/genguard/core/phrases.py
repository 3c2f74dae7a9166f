"""The words of providers' error messages, and what each means: one table, read by the error verdict.

A provider that refuses a request does not always say so with a code: Bedrock, Vertex, DashScope, Moonshot and
most gateways put the reason in prose ("Input is too long for requested model.", "Input data may contain
inappropriate content."). Each :class:`Phrase` here is one such wording: the sign it gives (what it means), who
words it so, and messages as they send them. :func:`says` tells whether a message carries a sign; the verdict
(:mod:`genguard.core.error_verdict`) decides, by status, which signs count. Every example is checked by a test
to read as its sign, and docs/failures.md lists the table.

>>> says("context_length_exceeded", "prompt is too long: 208423 tokens > 200000 maximum")
True
>>> says("prompt_blocked", "Invalid value for 'temperature': expected a number")
False
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, get_args

__all__ = ["PHRASES", "SIGNS", "Phrase", "Sign", "says"]

Sign = Literal[
    "model_not_found",
    "context_length_exceeded",
    "quota_exceeded",
    "periodic_quota",
    "short_window",
    "request_too_large",
    "prompt_blocked",
    "auth_failed",
    "unavailable",
    "rate_limited",
    "gateway_timeout",
]

SIGNS: Mapping[str, str] = MappingProxyType(
    {
        "model_not_found": "model_not_found",
        "context_length_exceeded": "context_length_exceeded",
        "quota_exceeded": "quota_exceeded",
        # A quota counted per day or per month: waiting a minute will not refill it.
        "periodic_quota": "quota_exceeded",
        # A quota message that is really a short-window limit (Google words its per-minute limits as quotas).
        "short_window": "rate_limited",
        "request_too_large": "request_too_large",
        "prompt_blocked": "prompt_blocked",
        "auth_failed": "auth_failed",
        "unavailable": "unavailable",
        "rate_limited": "rate_limited",
        "gateway_timeout": "gateway_timeout",
    }
)
"""Each sign and the failure code it stands for."""


@dataclass(frozen=True, slots=True)
class Phrase:
    """One wording a provider uses, the sign it gives, and messages worded that way.

    ``pattern`` is a regular expression (matched ignoring case) for words that vary; without one the words
    themselves are looked for, any run of spaces matching any other.
    """

    sign: Sign
    words: str
    source: str
    examples: tuple[str, ...]
    pattern: str | None = None

    @property
    def regex(self) -> str:
        """The regular expression this phrase is matched by."""
        if self.pattern is not None:
            return self.pattern
        return r"\s+".join(re.escape(part) for part in self.words.split())


def _p(sign: Sign, words: str, source: str, *examples: str, pattern: str | None = None) -> Phrase:
    return Phrase(sign, words, source, examples, pattern)


PHRASES: tuple[Phrase, ...] = (
    # -- the model does not exist ------------------------------------------------------------------------
    _p("model_not_found", "model ... does not exist / not found / is not available / decommissioned",
       "OpenAI, vLLM, Groq",
       "The model `gpt-5-turbo` does not exist or you do not have access to it.",
       "The model `llama2-70b-4096` has been decommissioned and is no longer supported.",
       pattern=r"\bmodels?\b[^.;\n]{0,160}?(?:does not exist|doesn't exist|not found|is not available"
               r"|not available|decommissioned|no longer (?:available|supported)|is not a valid model"
               r"|unknown model)"),
    _p("model_not_found", "not found, try pulling", "Ollama", "model 'llama9' not found, try pulling it first"),
    _p("model_not_found", "invalid model / unknown model / no such model", "Mistral, OpenAI-compatible servers",
       "Invalid model: mistral-huge", pattern=r"\bunknown model\b|\binvalid model\b|\bno such model\b"),
    _p("model_not_found", "is not a valid model", "OpenAI", "gpt-x is not a valid model ID"),
    _p("model_not_found", "No endpoints found", "OpenRouter", "No endpoints found for anthropic/claude-9."),
    _p("model_not_found", "No models loaded", "LM Studio",
       "No models loaded. Please load a model in the developer page or use the `lms load` command.",
       pattern=r"no models? (?:are |is )?loaded"),
    _p("model_not_found", "模型不存在", "Zhipu", "模型不存在，请检查模型代码。"),
    # -- the prompt is longer than the model takes -------------------------------------------------------
    _p("context_length_exceeded", "maximum context length", "OpenAI, Azure, vLLM, DeepSeek, OpenRouter, Mistral",
       "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
       "This endpoint's maximum context length is 128000 tokens. However, you requested about 130000 tokens.",
       "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length"),
    _p("context_length_exceeded", "context_length_exceeded", "LiteLLM and gateways quoting the code",
       "litellm.ContextWindowExceededError: context_length_exceeded",
       pattern=r"context[_ ]length[_ ]exceeded|contextwindowexceeded"),
    _p("context_length_exceeded", "context window", "gateways", "The input exceeds the model's context window."),
    _p("context_length_exceeded", "prompt is too long", "Anthropic, Bedrock (Claude), Fireworks",
       "prompt is too long: 208423 tokens > 200000 maximum"),
    _p("context_length_exceeded", "exceed(s) context", "Anthropic",
       "input length and `max_tokens` exceed context limit: 197600 + 8192 > 200000, decrease input length or "
       "`max_tokens` and try again", pattern=r"exceeds? (?:the )?context"),
    _p("context_length_exceeded", "exceeds the maximum number of tokens", "Google Gemini",
       "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
       pattern=r"exceeds the maximum number of tokens|input token count.{0,40}exceeds"),
    _p("context_length_exceeded", "longer than the model's context", "OpenAI-compatible servers",
       "Your prompt is longer than the model's context length.",
       pattern=r"longer than the model's (?:maximum )?context"),
    _p("context_length_exceeded", "reduce the length of the messages", "Groq, OpenAI",
       "Please reduce the length of the messages or completion.",
       pattern=r"reduce the length of the (?:messages|prompt)"),
    _p("context_length_exceeded", "`inputs` tokens + `max_new_tokens` must be <=",
       "Hugging Face TGI, Together, Inference Endpoints",
       "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens "
       "and 200 `max_new_tokens`", pattern=r"max_new_tokens. must be <="),
    _p("context_length_exceeded", "`inputs` must have less than N tokens", "Hugging Face TGI",
       "Input validation error: `inputs` must have less than 1024 tokens. Given: 2000",
       pattern=r"inputs. must have less than \d+ tokens"),
    _p("context_length_exceeded", "too many tokens for the model", "OpenAI-compatible servers",
       "too many input tokens for model: 9000 > 8192", pattern=r"too many (?:input )?tokens for (?:the )?model"),
    _p("context_length_exceeded", "exceeds the available context size", "llama.cpp",
       "the request exceeds the available context size, try increasing it"),
    _p("context_length_exceeded", "context length of only", "LM Studio",
       "Trying to keep the first 5000 tokens when context the overflows. However, the model is loaded with "
       "context length of only 4096 tokens, which is not enough.",
       pattern=r"context (?:length|size|window) of only"),
    _p("context_length_exceeded", "larger context length", "Ollama, LM Studio",
       "Try a model with a larger context length."),
    _p("context_length_exceeded", "exceeded max context length", "Ollama",
       "prompt too long; exceeded max context length by 4021 tokens"),
    _p("context_length_exceeded", "Input is too long", "AWS Bedrock",
       "Input is too long for requested model."),
    _p("context_length_exceeded", "maximum prompt length", "xAI",
       "This model's maximum prompt length is 131072 but the request contains 136973 tokens."),
    _p("context_length_exceeded", "total number of tokens ... cannot exceed", "Cohere",
       "too many tokens: total number of tokens (prompt and prediction) cannot exceed 2048 - received 6354.",
       pattern=r"total number of tokens.{0,40}cannot exceed"),
    _p("context_length_exceeded", "exceeded model token limit", "Moonshot",
       "Invalid request: Your request exceeded model token limit: 262144 (requested: 269030)"),
    _p("context_length_exceeded", "Range of input length should be", "Alibaba DashScope",
       "<400> InternalError.Algo.InvalidParameter: Range of input length should be [1, 204800]"),
    _p("context_length_exceeded", "'messages...': string too long", "OpenAI",
       "Invalid 'messages[1].content': string too long. Expected a string with maximum length 10485760, but got "
       "a string with length 12000000 instead.",
       pattern=r"(?:messages|input|prompt)[^:\n]{0,60}: string too long"),
    # -- the account is out of money or quota ------------------------------------------------------------
    _p("quota_exceeded", "insufficient balance / credits / quota / funds", "OpenAI-compatible gateways, DeepSeek",
       "Insufficient Balance", "Insufficient credits",
       pattern=r"insufficient[_ ](?:balance|credits?|quota|funds)"),
    _p("quota_exceeded", "exceeded your current quota", "OpenAI",
       "You exceeded your current quota, please check your plan and billing details."),
    _p("quota_exceeded", "credit balance is too low", "Anthropic",
       "Your credit balance is too low to access the Anthropic API."),
    _p("quota_exceeded", "out of credits", "gateways", "You are out of credits."),
    _p("quota_exceeded", "billing", "OpenAI, gateways", "Billing hard limit has been reached",
       pattern=r"\bbilling\b"),
    _p("quota_exceeded", "resource pack", "Kling", "Resource pack exhausted"),
    _p("quota_exceeded", "payment required", "gateways", "Payment Required"),
    _p("quota_exceeded", "balance is not enough", "gateways", "Your balance is not enough",
       pattern=r"balance is (?:not enough|insufficient)"),
    _p("quota_exceeded", "quota exhausted", "gateways", "Your quota has been exhausted",
       pattern=r"quota (?:has been |is )?exhausted"),
    _p("quota_exceeded", "余额不足 / 额度不足 / 资源包", "Chinese providers and gateways",
       "用户额度不足, 剩余额度: ＄0.012345", "账户余额不足", pattern=r"余额不足|额度不足|资源包"),
    _p("quota_exceeded", "spending limit", "xAI",
       "Your team has either used all available credits or reached its monthly spending limit."),
    _p("quota_exceeded", "purchase credits", "OpenRouter, xAI", "Please purchase more credits.",
       pattern=r"(?:purchase|buy) (?:more )?credits"),
    _p("quota_exceeded", "budget exceeded", "LiteLLM", "Budget has been exceeded! Current cost: 10.2",
       pattern=r"budget has been exceeded|exceeded (?:your |the )?budget"),
    _p("quota_exceeded", "reached your usage limits", "Anthropic",
       "You have reached your specified API usage limits. You will regain access on 2025-05-01 at 00:00 UTC.",
       pattern=r"reached your (?:specified )?(?:api )?usage limits?"),
    _p("quota_exceeded", "account is in arrears", "Zhipu, Kling",
       "Your account is in arrears, please recharge and try again", "Account in arrears",
       pattern=r"\bin arrears\b|欠费"),
    _p("quota_exceeded", "free tier of the model has been exhausted", "Alibaba DashScope",
       "The free tier of the model has been exhausted. If you wish to continue access the model on a paid "
       "basis, please disable the \"use free tier only\" mode in the management console."),
    # -- a quota counted per day or per month (not a per-minute rate limit) --------------------------------
    _p("periodic_quota", "per day / RPD / TPD", "OpenAI, Groq, OpenRouter, Moonshot",
       "Rate limit reached for gpt-3.5-turbo in organization org-x on requests per day (RPD): Limit 10000, "
       "Used 10000, Requested 1. Please try again in 8.64s.",
       "Rate limit reached for model `llama-3.1-8b-instant` on tokens per day (TPD): Limit 500000, Used 499812, "
       "Requested 1530. Please try again in 3m51.552s.",
       "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day",
       pattern=r"\bper[ _-]?day\b|\b(?:RPD|TPD)\b"),
    _p("periodic_quota", "PerDay / ByDay quota ids", "Google Gemini (quotaId), Azure AI and GitHub Models",
       "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
       "Rate limit of 150 per 86400s exceeded for UserByModelByDay. Please wait 3600 seconds before retrying.",
       pattern=r"(?-i:(?:Per|By)Day)"),
    _p("periodic_quota", "daily", "Baidu Qianfan, Google, Azure",
       "Open api daily request limit reached", "Daily Limit Exceeded", pattern=r"\bdaily\b"),
    _p("periodic_quota", "per month / monthly", "Cohere",
       "You are using a Trial key, which is limited to 1000 API calls / month.",
       pattern=r"\bper[ _-]?month\b|\bmonthly\b|/\s?month\b"),
    # -- a quota message that is a short-window limit -----------------------------------------------------
    _p("short_window", "retry in N / per minute", "Google Gemini",
       "You exceeded your current quota, please check your plan and billing details. Please retry in 38.47s.",
       "Quota exceeded for quota metric 'Generate Content API requests per minute'",
       pattern=r"(?:retry|try again) in \d|per[ _-]?min(?:ute)?\b|perminute"),
    # -- one request larger than the limit itself ---------------------------------------------------------
    _p("request_too_large", "Request too large", "OpenAI, Groq",
       "Request too large for gpt-4 in organization org-x on tokens per min (TPM): Limit 10000, Requested 31538.",
       "413 Request Entity Too Large",
       pattern=r"request too large|request (?:entity|payload|body) (?:is )?too large"),
    # -- the provider refused the input for policy --------------------------------------------------------
    _p("prompt_blocked", "moderation", "OpenAI, xAI, gateways",
       "Input was flagged by moderation", "Generated image rejected by content moderation.",
       pattern=r"moderation"),
    _p("prompt_blocked", "guardrail", "AWS Bedrock, gateways", "Request blocked by guardrail policy"),
    _p("prompt_blocked", "content management policy", "Azure OpenAI",
       "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
       "Please modify your prompt and retry."),
    _p("prompt_blocked", "content policy", "OpenAI, gateways",
       "This request has been flagged by our content policy.", pattern=r"content[ _]polic(?:y|ies)"),
    _p("prompt_blocked", "safety system", "OpenAI images, Azure OpenAI images",
       "Your request was rejected as a result of our safety system.",
       "Your task failed as a result of our safety system."),
    _p("prompt_blocked", "flagged as / by / for", "OpenAI",
       "Invalid prompt: your prompt was flagged as potentially violating our usage policy. Please try again "
       "with a different prompt.", pattern=r"flagged (?:as|by|for)"),
    _p("prompt_blocked", "violates the usage / content / safety policy", "gateways",
       "This prompt violates our usage policies.",
       pattern=r"violat\w* (?:our |the )?(?:usage|content|safety) polic"),
    _p("prompt_blocked", "Responsible AI", "Google Vertex Imagen, Azure",
       "The prompt could not be submitted. This prompt contains sensitive words that violate Google's "
       "Responsible AI practices. Try rephrasing the prompt.", pattern=r"responsible ?ai"),
    _p("prompt_blocked", "safety filter threshold prohibited", "Google Vertex Imagen",
       "Your current safety filter threshold prohibited one or more words in this prompt. If you think this was "
       "an error, send feedback."),
    _p("prompt_blocked", "may contain inappropriate content", "Alibaba DashScope (DataInspectionFailed)",
       "Input data may contain inappropriate content.",
       "<400> InternalError.Algo.DataInspectionFailed: Input text data may contain inappropriate content.",
       pattern=r"may contain inappropriate content"),
    _p("prompt_blocked", "considered high risk", "Moonshot",
       "The request was rejected because it was considered high risk"),
    _p("prompt_blocked", "unsafe or sensitive content", "Zhipu (code 1301)",
       "System detected potentially unsafe or sensitive content in input or generation. Please avoid using "
       "prompts that may generate sensitive content.",
       "系统检测到输入或生成内容可能包含不安全或敏感内容，请您避免输入易产生敏感内容的提示语，感谢您的配合。",
       pattern=r"unsafe or sensitive content|不安全或敏感内容"),
    # -- the key -------------------------------------------------------------------------------------------
    _p("auth_failed", "API key not valid / invalid API key / incorrect API key", "Google, OpenAI, Anthropic",
       "API key not valid. Please pass a valid API key.",
       "Incorrect API key provided: sk-abc. You can find your API key at https://platform.openai.com/account/api-keys.",
       "invalid x-api-key",
       pattern=r"api key not valid|invalid api[ -]?key|incorrect api key|invalid x-api-key"
               r"|invalid authentication|api key (?:is )?(?:missing|invalid|expired|revoked)|no api key provided"
               r"|missing (?:api key|bearer)"),
    # -- words that carry a verdict when no status does (an error inside a stream or a 2xx body) ----------------
    _p("unavailable", "overloaded / over capacity / server busy", "Anthropic, Google, Chinese providers",
       "Overloaded", "The model is overloaded. Please try again later.", "当前服务集群负载已饱和，请稍后重试",
       pattern=r"overload|over capacity|at capacity|too busy|server (?:is )?busy|saturated"
               r"|负载已饱和|负载过高|繁忙"),
    _p("rate_limited", "rate limit / too many requests / qps limit", "most providers, Baidu Qianfan",
       "Rate limit exceeded", "Open api qps request limit reached",
       pattern=r"rate[ _-]?limit|too many requests|qps (?:request )?limit"),
    _p("gateway_timeout", "timed out / deadline exceeded", "gateways, Google",
       "upstream request timed out", "Deadline exceeded", pattern=r"timed? ?out|deadline exceeded"),
)  # fmt: skip
"""Every wording genguard reads, by sign."""


def _compile() -> dict[str, re.Pattern[str]]:
    compiled = {}
    for sign in get_args(Sign):
        parts = [f"(?:{p.regex})" for p in PHRASES if p.sign == sign]
        compiled[sign] = re.compile("|".join(parts), re.IGNORECASE)
    return compiled


_BY_SIGN = _compile()


def says(sign: Sign, text: str | None) -> bool:
    """Whether ``text`` carries ``sign`` in any of the wordings of :data:`PHRASES`.

    >>> says("periodic_quota", "Quota exceeded for quotaId GenerateRequestsPerDayPerProjectPerModel-FreeTier")
    True
    """
    if not text:
        return False
    return _BY_SIGN[sign].search(text) is not None
