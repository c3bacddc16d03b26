"""Drive a running claude-tower gateway with the official Anthropic Python SDK.

Run by .ci/sdk-test, which starts the gateway on the built-in simulator with
the Foundry route first and the Anthropic route behind it, and passes its
address in CLAUDE_TOWER_URL and the embedded simulator's address in
CLAUDE_TOWER_SIM_URL.
"""

import json
import os
import sys
import traceback
import urllib.request

import anthropic

GATEWAY = os.environ["CLAUDE_TOWER_URL"]
SIM = os.environ["CLAUDE_TOWER_SIM_URL"]
MODEL = "claude-sonnet-4-6"


def sim_faults(script):
    req = urllib.request.Request(
        SIM + "/_sim/faults", data=script.encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as res:
        assert res.status in (200, 204), res.status


def sim_reset():
    req = urllib.request.Request(SIM + "/_sim/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as res:
        assert res.status in (200, 204), res.status


def sim_requests():
    with urllib.request.urlopen(SIM + "/_sim/requests", timeout=10) as res:
        return json.loads(res.read())


def client(**kw):
    # The key is the SDK's own requirement; the gateway strips it before upstream.
    return anthropic.Anthropic(
        base_url=GATEWAY, api_key="sk-ant-client-key-never-forwarded", **kw
    )


def test_messages_create():
    sim_reset()
    msg = client().messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "Hello through the gateway"}],
    )
    assert msg.type == "message", msg
    assert msg.role == "assistant"
    assert msg.content and msg.content[0].type == "text"
    assert msg.usage.output_tokens > 0
    seen = sim_requests()
    assert len(seen) == 1, seen
    assert seen[0]["credential"] != "none"


def stream_once(**kw):
    """One `messages.stream` call: its event types, final message and headers."""
    events = []
    with client(**kw).messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "Stream please"}],
    ) as stream:
        for event in stream:
            events.append(event.type)
        final = stream.get_final_message()
        headers = stream.response.headers
    assert events[0] == "message_start", events
    assert events.count("message_start") == 1, events
    assert "content_block_delta" in events, events
    assert events[-1] == "message_stop", events
    assert final.stop_reason == "end_turn", final.stop_reason
    text = "".join(b.text for b in final.content if b.type == "text")
    assert text, final
    return headers


def test_messages_stream():
    sim_reset()
    stream_once()


def test_stream_overloaded_before_any_content_is_retried_by_the_gateway():
    sim_reset()
    # 200, message_start, ping, then `event: error` overloaded_error, once.
    sim_faults("foundry=stream-error:early")
    try:
        # No SDK retries: the stream completes because the gateway retried.
        headers = stream_once(max_retries=0)
        assert headers.get("x-claude-tower-attempts") == "foundry=2", headers
        assert len(sim_requests()) == 2
    finally:
        sim_reset()


def test_stream_overloaded_before_any_content_fails_over():
    sim_reset()
    sim_faults("foundry=stream-error:early*50")
    try:
        headers = stream_once(max_retries=0)
        assert headers.get("x-claude-tower-route") == "anthropic", headers
        attempts = headers.get("x-claude-tower-attempts")
        assert attempts == "foundry=3, anthropic=1", attempts
    finally:
        sim_reset()


def test_foundry_429_is_a_rate_limit_error_with_a_sane_hint():
    sim_reset()
    # An Azure-shaped 429 with Retry-After as an HTTP-date, on every attempt;
    # the Anthropic route behind it is overloaded, so the 429 is the answer.
    sim_faults("foundry=429:date+1s*20;anthropic=529*20")
    try:
        client(max_retries=0).messages.create(
            model=MODEL,
            max_tokens=16,
            messages=[{"role": "user", "content": "rate limit me"}],
        )
    except anthropic.RateLimitError as e:
        hint = e.response.headers.get("retry-after")
        assert hint is not None and hint.isdigit(), hint
        assert 1 <= int(hint) <= 30, hint
        assert e.response.headers.get("retry-after-ms", "").isdigit()
        body = e.response.json()
        assert body["type"] == "error", body
        assert body["error"]["type"] == "rate_limit_error", body
    else:
        raise AssertionError("expected anthropic.RateLimitError")
    finally:
        sim_reset()


def main():
    tests = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
    passed = failed = 0
    for test in tests:
        try:
            test()
        except Exception:
            failed += 1
            print(f"FAIL {test.__name__}")
            traceback.print_exc()
        else:
            passed += 1
            print(f"ok   {test.__name__}")
    print(f"sdk: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
