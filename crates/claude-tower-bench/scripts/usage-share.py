#!/usr/bin/env python3
"""The usage layer's share of a profile's samples (perf-saturation.sh).

    perf script -i OUT -F tid,ip,sym > OUT.script
    crates/claude-tower-bench/scripts/usage-share.py OUT.script

A sample is the layer's when, walking its stack from the leaf up, a frame of
the usage layer (its service call, response future, body, record delivery
and sinks) comes before any frame of the service it wraps (the quota layer
and the stack) or of the body it wraps: what the layer runs itself and what
it calls (the JSON read, the sinks, the OpenTelemetry SDK, memcpy, malloc),
not what runs under it. Prints the share, the layer's entry points and the
leaf functions of its samples.
"""
import collections
import re
import sys

LAYER = re.compile(
    r"claude_tower_usage::body::Recorder::finish"
    r"|claude_tower_usage::future::(fill_from_head|BodyKind::of|is_encoded)"
    r"|claude_tower_usage::json::JsonWatcher::feed"
    r"|claude_tower_usage::(layer::Usage<S> as tower_service"
    r"|future::ResponseFuture<F> as core::future|body::UsageBody<B> as http_body)"
    r"|drop_in_place<claude_tower_usage::(body::Recorder|future::Start)"
)
INNER = re.compile(
    r"claude_tower_quota::layer::(Quota<S> as tower_service|ResponseFuture)"
    r"|claude_tower_core::response_body::ResponseBody<.*> as http_body::Body>::poll_frame"
    r"|claude_tower::stack|drop_in_place<claude_tower_quota|hyper::body::incoming"
)


def samples(path):
    frames = []
    with open(path, errors="replace") as lines:
        for line in lines:
            if line.startswith("\t"):
                parts = line.strip().split(" ", 1)
                frames.append(parts[1] if len(parts) > 1 else "?")
            else:
                if frames:
                    yield frames
                frames = []
    if frames:
        yield frames


def main(path):
    total = 0
    entries = collections.Counter()
    leaves = collections.Counter()
    for frames in samples(path):
        total += 1
        for frame in frames:
            if INNER.search(frame):
                break
            entry = LAYER.search(frame)
            if entry:
                entries[entry.group(0)[:80]] += 1
                leaves[frames[0][:110]] += 1
                break
    ours = sum(entries.values())
    if total == 0:
        sys.exit("no samples")
    print(f"samples {total}, the usage layer's {ours}: {100 * ours / total:.2f} %"
          f" (± {100 * ours ** 0.5 / total:.2f} %, one standard error)")
    for name, n in entries.most_common(12):
        print(f"{n:6} {name}")
    print("leaves:")
    for name, n in leaves.most_common(20):
        print(f"{n:6} {name}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
