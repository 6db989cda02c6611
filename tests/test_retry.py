"""Which LLM errors are transient (retried by the task) and which are not."""

from __future__ import annotations

import json

import instructor
import openai
import pytest
from instructor.core.exceptions import InstructorRetryException
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, ValidationError

from jtbd.coding.retry import TRANSIENT_STATUS, is_transient

try:  # the HTTP client openai itself uses (openai 3.x: httpx2, a drop-in httpx)
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx

URL = "http://localhost:8080/v1/chat/completions"


def request():
    return httpx.Request("POST", URL)


def status_error(code: int) -> openai.APIStatusError:
    response = httpx.Response(code, request=request(), json={"error": {"message": "nope"}})
    return openai.APIStatusError(f"Error code: {code}", response=response, body={"message": "nope"})


def raised(exc: BaseException, cause: BaseException | None = None, *, implicit: bool = False) -> BaseException:
    """`exc` as really raised: `raise exc from cause`, or raised while handling `cause`."""
    try:
        if cause is None:
            raise exc
        try:
            raise cause
        except BaseException as inner:
            if implicit:
                raise exc  # noqa: B904  (__context__ only)
            raise exc from inner
    except BaseException as outer:  # noqa: BLE001
        return outer


def validation_error() -> ValidationError:
    class Draft(BaseModel):
        n: int

    try:
        Draft.model_validate({"n": "many"})
    except ValidationError as err:
        return err
    raise AssertionError("unreachable")


def retry_exception(cause: BaseException) -> InstructorRetryException:
    return raised(InstructorRetryException(str(cause), n_attempts=3, total_usage=0), cause)


# --- transient ----------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(TRANSIENT_STATUS))
def test_retryable_status_codes(code):
    assert is_transient(status_error(code))


def test_transient_set_is_408_409_429_and_5xx():
    assert TRANSIENT_STATUS == {408, 409, 429, 500, 502, 503, 504}


@pytest.mark.parametrize("make", [
    lambda: openai.APITimeoutError(request=request()),
    lambda: openai.APIConnectionError(request=request()),
    lambda: openai.APIConnectionError(message="Connection refused", request=request()),
    lambda: TimeoutError("read timed out"),
    lambda: ConnectionResetError("reset by peer"),
    lambda: ConnectionRefusedError(),
    lambda: BrokenPipeError(),
], ids=["api-timeout", "api-connection", "api-connection-msg", "timeout", "reset", "refused", "broken-pipe"])
def test_timeouts_and_connection_errors(make):
    assert is_transient(make())


def test_typed_openai_status_errors():
    response = httpx.Response(429, request=request())
    assert is_transient(openai.RateLimitError("slow down", response=response, body=None))
    response = httpx.Response(500, request=request())
    assert is_transient(openai.InternalServerError("boom", response=response, body=None))


@pytest.mark.parametrize("cause", [
    status_error(503), status_error(429), openai.APITimeoutError(request=request()), TimeoutError(),
], ids=["503", "429", "api-timeout", "timeout"])
def test_transient_cause_inside_instructor_retry_exception(cause):
    assert is_transient(retry_exception(cause))
    # two levels deep, and through an implicit (during handling) context
    assert is_transient(raised(RuntimeError("task failed"), retry_exception(cause)))
    assert is_transient(raised(RuntimeError("task failed"), cause, implicit=True))


def test_through_instructor_for_real():
    """instructor.patch around a create that cannot connect: the error it raises is transient."""
    def create(**_):
        raise openai.APIConnectionError(request=request())

    patched = instructor.patch(create=create, mode=instructor.Mode.JSON_SCHEMA)

    class Draft(BaseModel):
        n: int

    with pytest.raises(Exception) as caught:
        patched(response_model=Draft, messages=[{"role": "user", "content": "hi"}], max_retries=1)
    assert is_transient(caught.value)


# --- not transient ------------------------------------------------------------


@pytest.mark.parametrize("code", [400, 401, 403, 404, 413, 422, 501])
def test_client_errors_are_not_transient(code):
    assert not is_transient(status_error(code))


@pytest.mark.parametrize("make", [
    validation_error,
    lambda: ValueError("bad"),
    lambda: KeyError("sentence"),
    lambda: RuntimeError("the local backend needs llama-cpp-python"),
    lambda: FileNotFoundError("model file missing"),
    lambda: json.JSONDecodeError("Expecting value", "", 0),
    lambda: retry_exception(validation_error()),
    lambda: retry_exception(status_error(400)),
    lambda: retry_exception(status_error(401)),
], ids=["validation", "value", "key", "runtime", "file-not-found", "json", "retry-validation", "retry-400",
        "retry-401"])
def test_errors_that_would_fail_again(make):
    assert not is_transient(make())


def test_validation_errors_after_instructor_reasks_are_not_transient():
    def create(**_):
        return ChatCompletion.model_validate({
            "id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": '{"n": "many"}'}}],
        })

    patched = instructor.patch(create=create, mode=instructor.Mode.JSON_SCHEMA)

    class Draft(BaseModel):
        n: int

    with pytest.raises(Exception) as caught:
        patched(response_model=Draft, messages=[{"role": "user", "content": "hi"}], max_retries=2)
    assert not is_transient(caught.value)


@pytest.mark.parametrize("value", [None, "timeout", 503, TimeoutError, object()])
def test_non_exceptions_are_not_transient(value):
    assert not is_transient(value)


def test_cyclic_cause_chain_terminates():
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert not is_transient(a)
    c = TimeoutError("c")
    b.__cause__ = c
    c.__cause__ = a
    assert is_transient(a)
