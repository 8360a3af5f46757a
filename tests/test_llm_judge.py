"""The LLM judge against a real OpenAI-compatible server on 127.0.0.1: what it sends, what it
makes of the answer, its tokens and cost, its retries, and the API key kept out of everything."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from support.openai_standin import DEFAULT_USAGE, OpenAIStandin
from support.servers import closed_port
from support.traces import agent_trace, make_span, make_trace

from pytest_evalrows.judging import JudgeError, JudgeRunner, LLMJudge
from pytest_evalrows.judging.llm import OUTPUT_ALLOWANCE
from pytest_evalrows.judging.prompt import estimate_tokens, render_trace

KEY = "sk-test-0123456789-secret"
CRITERIA = "The agent must search the web before it answers."


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return KEY


@pytest.fixture
def model() -> Iterator[OpenAIStandin]:
    with OpenAIStandin() as standin:
        yield standin


def make_judge(base_url: str, **options: Any) -> LLMJudge:
    options.setdefault("backoff", 0.0)
    return LLMJudge("searches-first", CRITERIA, model="gpt-test", base_url=base_url, **options)


def judge_once(judge: LLMJudge, trace: Any = None) -> Any:
    return asyncio.run(judge(trace or agent_trace()))


def test_the_answer_becomes_a_judgment_with_tokens_and_cost(model: OpenAIStandin) -> None:
    judge = make_judge(model.base_url, input_cost_per_token=0.001, output_cost_per_token=0.002)
    judged = judge_once(judge)
    assert (judged.score, judged.passed) == (0.8, True)
    assert judged.reasoning == "the agent searched before answering"
    assert [(s.span_id, s.name, s.result) for s in judged.steps] == [
        ("c1", "search", "called first")
    ]
    assert (judged.model, judged.turns) == ("gpt-test", 1)
    assert (judged.prompt_tokens, judged.completion_tokens) == (120, 30)
    assert judged.total_cost == pytest.approx(120 * 0.001 + 30 * 0.002)
    assert judged.latency_ms is not None and judged.latency_ms > 0


def test_it_posts_the_trace_and_asks_for_json(model: OpenAIStandin) -> None:
    judge_once(make_judge(model.base_url + "/"))  # a trailing slash is dropped
    assert model.paths == ["/v1/chat/completions"]
    assert model.authorizations == [f"Bearer {KEY}"]
    (body,) = model.bodies
    assert body["model"] == "gpt-test"
    assert body["response_format"] == {"type": "json_object"}
    system, user = body["messages"]
    assert system["role"] == "system" and '"passed"' in system["content"]
    assert CRITERIA in user["content"]
    for shown in ("row-1", "search", "span_id s1", "gen_ai.tool.name=web_search", "chat gpt-x"):
        assert shown in user["content"], shown


def test_the_rendered_trace_is_bounded_and_shows_errors() -> None:
    many = [make_span(f"s{i}", f"step-{i}", 100.0, 100.1, attributes={"i": i}) for i in range(3000)]
    failing = make_span("bad", "fetch", 100.2, 100.3, status="error", status_description="503")
    trace = make_trace(failing, *many, output="x" * 1_000_000)
    text = render_trace(trace)
    assert len(text) < 25_000
    assert "more spans not shown" in text and "more characters" in text
    assert "fetch [span_id bad" in text and "ERROR: 503" in text


def test_429_and_5xx_are_tried_again(model: OpenAIStandin) -> None:
    model.failures = [429, 500, 503]
    judged = judge_once(make_judge(model.base_url, retries=3))
    assert judged.passed is True
    assert model.requests == 4


def test_after_its_retries_it_fails_with_the_last_answer(model: OpenAIStandin) -> None:
    model.failures = [500, 500, 502]
    with pytest.raises(JudgeError, match=r"failed 3 time\(s\); last: HTTP 502"):
        judge_once(make_judge(model.base_url, retries=2))
    assert model.requests == 3


def test_a_4xx_other_than_429_is_not_tried_again(model: OpenAIStandin) -> None:
    model.failures = [400]
    with pytest.raises(JudgeError, match="answered HTTP 400"):
        judge_once(make_judge(model.base_url, retries=3))
    assert model.requests == 1


def test_a_server_that_cannot_be_reached_is_tried_again_then_fails() -> None:
    judge = make_judge(f"http://127.0.0.1:{closed_port()}/v1", retries=1)
    with pytest.raises(JudgeError, match=r"failed 2 time\(s\); last: ConnectError"):
        judge_once(judge)


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("Sure! The agent did well, 9/10.", "not JSON"),
        ('["a list"]', "not a JSON object"),
        ('{"score": 7, "passed": true}', "not a number in \\[0, 1\\]"),
        ('{"reasoning": "no verdict"}', "neither score nor passed"),
        ('{"passed": "yes"}', "passed is not true or false"),
    ],
)
def test_a_malformed_answer_fails_and_keeps_the_raw_text(answer: str, why: str) -> None:
    with OpenAIStandin(answer=answer) as model:
        with pytest.raises(JudgeError, match=why) as raised:
            judge_once(make_judge(model.base_url))
        assert answer in str(raised.value) or json.dumps(answer)[1:-1] in str(raised.value)
        with JudgeRunner() as runner:
            evaluation = runner.run(make_judge(model.base_url), agent_trace())
    assert evaluation.status == "failure"
    assert evaluation.error is not None and evaluation.error.startswith("JudgeError: ")
    assert answer in evaluation.error or json.dumps(answer)[1:-1] in evaluation.error
    # No verdict, but the tokens the model was paid for are kept.
    spent = evaluation.result
    assert spent is not None and (spent.score, spent.passed) == (None, None)
    assert spent.prompt_tokens == DEFAULT_USAGE["prompt_tokens"]
    assert spent.completion_tokens == DEFAULT_USAGE["completion_tokens"]


def test_a_fenced_json_answer_is_read() -> None:
    with OpenAIStandin(answer='```json\n{"score": 0.2, "passed": false}\n```') as model:
        judged = judge_once(make_judge(model.base_url))
    assert (judged.score, judged.passed) == (0.2, False)


def test_the_key_is_in_no_error_and_no_repr(model: OpenAIStandin) -> None:
    model.failures = [401]  # the stand-in's error repeats the key it was sent
    judge = make_judge(model.base_url, api_key_env="MY_MODEL_KEY")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MY_MODEL_KEY", KEY)
        with pytest.raises(JudgeError) as raised:
            judge_once(judge)
        model.failures = [500, 500]
        with JudgeRunner() as runner:
            evaluation = runner.run(
                make_judge(model.base_url, retries=1, api_key_env="MY_MODEL_KEY"), agent_trace()
            )
    assert "HTTP 401" in str(raised.value) and "***" in str(raised.value)
    assert KEY not in str(raised.value)
    assert evaluation.error is not None and "HTTP 500" in evaluation.error
    assert KEY not in evaluation.model_dump_json()
    assert KEY not in repr(judge) and KEY not in str(vars(judge))
    assert model.authorizations[0] == f"Bearer {KEY}"


def test_credentials_in_the_base_url_are_not_shown(model: OpenAIStandin) -> None:
    judge = make_judge(model.base_url.replace("http://", "http://user:hunter2@"))
    assert "hunter2" not in repr(judge)
    with pytest.raises(ValueError) as raised:
        make_judge("ftp://user:hunter2@example.com/v1")
    assert "hunter2" not in str(raised.value)


def test_a_missing_key_is_a_clear_error_and_sends_nothing(
    model: OpenAIStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(JudgeError, match="no API key: set the environment variable OPENAI_API_KEY"):
        judge_once(make_judge(model.base_url))
    assert model.requests == 0


def test_the_key_is_read_at_each_call(
    model: OpenAIStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    judge = make_judge(model.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-rotated")
    judge_once(judge)
    assert model.authorizations == ["Bearer sk-rotated"]


def test_the_estimate_counts_the_prompt_and_sends_no_request(model: OpenAIStandin) -> None:
    judge = make_judge(model.base_url, input_cost_per_token=1e-6, output_cost_per_token=4e-6)
    trace = agent_trace()
    estimate = judge.estimate(trace)
    expected_input = sum(
        math.ceil(len(message["content"].encode("utf-8")) / 4) for message in judge.messages(trace)
    )
    assert estimate.input_tokens == expected_input
    assert estimate.output_tokens == OUTPUT_ALLOWANCE
    assert estimate.estimated_cost == pytest.approx(expected_input * 1e-6 + OUTPUT_ALLOWANCE * 4e-6)
    assert estimate.model == "gpt-test"
    assert judge.estimate(trace) == estimate  # the same every time
    assert model.requests == 0


def test_tokens_are_counted_by_utf8_bytes() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("é" * 4) == 2  # 8 bytes


def test_many_evaluations_at_once_each_get_their_answer() -> None:
    with OpenAIStandin(delay=0.05) as model, JudgeRunner(concurrency=20, timeout=30) as runner:
        judge = make_judge(model.base_url)
        futures = [runner.submit(judge, agent_trace()) for _ in range(40)]
        evaluations = [future.result() for future in futures]
    assert [e.status for e in evaluations] == ["success"] * 40
    assert model.requests == 40


def test_a_slow_model_times_out_as_a_failure() -> None:
    with OpenAIStandin(delay=5) as model, JudgeRunner(timeout=0.2) as runner:
        evaluation = runner.run(make_judge(model.base_url), agent_trace())
    assert (evaluation.status, evaluation.error) == ("failure", "timed out after 0.2 s")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": ""}, "name must be a non-empty string"),
        ({"criteria": " "}, "criteria must be a non-empty string"),
        ({"model": None}, "model must be a non-empty string"),
        ({"base_url": "localhost:8000/v1"}, "base_url must be an http"),
        ({"input_cost_per_token": -1}, "input_cost_per_token must be a number >= 0"),
        ({"timeout": 0}, "timeout must be a number of seconds > 0"),
        ({"retries": -1}, "retries must be a whole number >= 0"),
        ({"api_key_env": ""}, "api_key_env must name an environment variable"),
    ],
)
def test_bad_options_are_clear_value_errors(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "name": "j",
        "criteria": "c",
        "model": "m",
        "base_url": "http://127.0.0.1:9/v1",
        **options,
    }
    name, criteria = arguments.pop("name"), arguments.pop("criteria")
    with pytest.raises(ValueError, match=message):
        LLMJudge(name, criteria, **arguments)


@pytest.mark.parametrize("padding", [440, 470, 480, 499])
def test_a_key_an_error_repeats_is_hidden_wherever_the_error_is_cut(
    api_key: str, padding: int
) -> None:
    """The error keeps the first 500 characters of the answer: a key across that cut must not
    leave its first part behind."""
    import httpx

    def refuse(request: httpx.Request) -> httpx.Response:
        given = request.headers["authorization"].removeprefix("Bearer ")
        return httpx.Response(401, text="x" * padding + f" invalid key {given}")

    judge = make_judge("http://model.test/v1", transport=httpx.MockTransport(refuse))
    with pytest.raises(JudgeError) as raised:
        judge_once(judge)
    assert "HTTP 401" in str(raised.value)
    assert api_key[:8] not in str(raised.value)


def test_the_prompt_leaves_out_earlier_judgments_so_estimates_stay_the_same() -> None:
    plain = make_trace(make_span("s1", "search", 100.1, 100.2), scores={"exact": 1.0})
    judged = make_trace(
        make_span("s1", "search", 100.1, 100.2), scores={"exact": 1.0, "judge:rubric": 0.1}
    )
    judge = make_judge("http://127.0.0.1:9/v1", input_cost_per_token=1.0)
    assert "judge:rubric" not in render_trace(judged)
    assert '"exact": 1.0' in render_trace(judged)
    assert judge.estimate(judged) == judge.estimate(plain)
