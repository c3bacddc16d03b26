use proptest::prelude::*;

use super::*;

/// A stream shaped as the simulator and the API send it.
pub(crate) fn sim_stream(deltas: usize, tool: bool) -> String {
    let mut s = String::new();
    s.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_sim_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":120,\"cache_creation_input_tokens\":7,\"cache_read_input_tokens\":900,\"output_tokens\":1}}}\n\n");
    s.push_str("event: ping\ndata: {\"type\": \"ping\"}\n\n");
    s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    for i in 0..deltas {
        s.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"word{i} \\\"message_delta\\\" \"}}}}\n\n"));
        if i % 4 == 3 {
            s.push_str("event: ping\ndata: {\"type\": \"ping\"}\n\n");
        }
    }
    s.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    if tool {
        s.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"search\",\"input\":{}}}\n\n");
        s.push_str("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"usage\\\": \"}}\n\n");
        s.push_str(
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        );
    }
    let reason = if tool { "tool_use" } else { "end_turn" };
    s.push_str(&format!("event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{reason}\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{}}}}}\n\n", 10 + deltas));
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s
}

#[derive(Debug, PartialEq)]
struct Seen {
    usage: Option<TokenUsage>,
    model: Option<String>,
    stop: Option<String>,
    error: Option<ErrorClass>,
    stopped: bool,
    content: bool,
}

fn read_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Seen {
    let mut r = SseUsageReader::new();
    for c in chunks {
        r.feed(c);
    }
    Seen {
        usage: r.usage(),
        model: r.model().map(str::to_owned),
        stop: r.stop_reason().map(str::to_owned),
        error: r.error_class(),
        stopped: r.is_stopped(),
        content: r.reading().content_seen,
    }
}

fn read(s: &str) -> Seen {
    read_chunks([s.as_bytes()])
}

fn tokens(input: u64, output: u64, creation: u64, read: u64) -> Option<TokenUsage> {
    Some(TokenUsage {
        input,
        output,
        cache_creation_input: creation,
        cache_read_input: read,
    })
}

#[test]
fn a_sim_shaped_stream_reads_whole() {
    let seen = read(&sim_stream(9, false));
    assert_eq!(seen.usage, tokens(120, 19, 7, 900));
    assert_eq!(seen.model.as_deref(), Some("claude-sonnet-4-5"));
    assert_eq!(seen.stop.as_deref(), Some("end_turn"));
    assert!(seen.stopped);
    assert!(seen.content);
    assert_eq!(seen.error, None);
    let tool = read(&sim_stream(2, true));
    assert_eq!(tool.stop.as_deref(), Some("tool_use"));
    assert_eq!(tool.usage, tokens(120, 12, 7, 900));
}

#[test]
fn every_byte_boundary_gives_the_same_record() {
    for stream in [sim_stream(5, true), hand_written()] {
        let whole = read(&stream);
        let bytes = stream.as_bytes();
        for split in 0..=bytes.len() {
            assert_eq!(
                read_chunks([&bytes[..split], &bytes[split..]]),
                whole,
                "split at {split}"
            );
        }
        // One byte at a time.
        assert_eq!(read_chunks(bytes.chunks(1)), whole);
    }
}

/// CRLF and CR line ends, comments, a multi-line data, no space after the
/// colon, fields in odd order, a `message_delta` that also updates input.
fn hand_written() -> String {
    concat!(
        ": a comment\r\n",
        "retry: 1000\r\n\r\n",
        "event:message_start\r\n",
        "data:{\"type\":\"message_start\",\r\n",
        "data: \"message\":{\"model\":\"claude-opus-4-1\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\r\n\r\n",
        "event: ping\rdata: {}\r\r",
        "id: 7\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\"}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"input_tokens\":6,\"cache_read_input_tokens\":40,\"output_tokens\":77}}\n\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    )
    .to_owned()
}

#[test]
fn hand_written_framing_reads() {
    let seen = read(&hand_written());
    assert_eq!(seen.usage, tokens(6, 77, 0, 40));
    assert_eq!(seen.model.as_deref(), Some("claude-opus-4-1"));
    assert_eq!(seen.stop.as_deref(), Some("max_tokens"));
    // The stop came without an `event:` line, named by its `type`.
    assert!(seen.stopped);
    assert!(seen.content);
}

#[test]
fn a_stream_without_message_stop_keeps_what_it_saw() {
    let stream = sim_stream(3, false);
    let cut = stream.find("event: content_block_stop").unwrap();
    let seen = read(&stream[..cut]);
    assert_eq!(seen.usage, tokens(120, 1, 7, 900));
    assert!(!seen.stopped);
    // Cut mid-event: the partial event is dropped.
    let cut = stream.find("\"output_tokens\":13").unwrap();
    let seen = read(&stream[..cut]);
    assert_eq!(seen.usage, tokens(120, 1, 7, 900));
}

#[test]
fn an_error_event_after_the_200_is_classified() {
    let stream = sim_stream(1, false);
    let cut = stream.find("event: content_block_stop").unwrap();
    let failed = format!(
        "{}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}}\n\n",
        &stream[..cut]
    );
    let seen = read(&failed);
    assert_eq!(seen.error, Some(ErrorClass::Overloaded));
    assert_eq!(seen.usage, tokens(120, 1, 7, 900));
    let garbled = read("event: error\ndata: not json\n\n");
    assert_eq!(garbled.error, Some(ErrorClass::Server));
}

/// A one-delta stream up to its `message_delta`.
fn before_delta() -> String {
    let stream = sim_stream(1, false);
    let cut = stream.find("event: message_delta").unwrap();
    stream[..cut].to_owned()
}

#[test]
fn malformed_usage_makes_usage_unknown() {
    for bad in [
        "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":\"12\"}}",
        "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":-3}}",
        "{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":",
    ] {
        let mut r = SseUsageReader::new();
        r.feed(before_delta().as_bytes());
        r.feed(format!("event: message_delta\ndata: {bad}\n\n").as_bytes());
        assert_eq!(r.usage(), None, "{bad}");
        assert_eq!(r.malformed_events(), 1);
    }
}

/// `head`, a 10 MiB string in 64 KiB chunks, then the event's end; the
/// reader never holds more than the limit.
fn feed_long_event(r: &mut SseUsageReader, head: &[u8]) {
    r.feed(head);
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..160 {
        r.feed(&chunk);
        assert!(r.data.capacity() <= DEFAULT_EVENT_LIMIT);
    }
    r.feed(b"\"}\n\n");
}

#[test]
fn a_ten_mib_line_is_skipped_not_buffered() {
    let mut r = SseUsageReader::new();
    r.feed(before_delta().as_bytes());
    // A 10 MiB content delta, fed in 64 KiB chunks: skipped without a copy.
    feed_long_event(&mut r, b"event: content_block_delta\ndata: {\"text\":\"");
    // A 10 MiB message_delta: over the limit, skipped, usage unknown.
    feed_long_event(
        &mut r,
        b"event: message_delta\ndata: {\"usage\":{\"output_tokens\":5},\"pad\":\"",
    );
    assert_eq!(r.oversized_events(), 1);
    assert_eq!(r.usage(), None);
    // The stream goes on being read.
    r.feed(b"event: message_stop\ndata: {}\n\n");
    assert!(r.is_stopped());
}

#[test]
fn long_names_and_unknown_fields_are_skipped() {
    let long = format!(
        "event: {}\ndata: {{\"usage\":{{\"output_tokens\":\"x\"}}}}\n\n{}",
        "m".repeat(100),
        sim_stream(1, false)
    );
    let seen = read(&long);
    assert_eq!(seen.usage, tokens(120, 11, 7, 900));
    let odd = format!("{}: value\n\n{}", "f".repeat(100), sim_stream(1, false));
    assert_eq!(read(&odd).usage, tokens(120, 11, 7, 900));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_chunkings_give_the_same_record(
        deltas in 0usize..12,
        tool in any::<bool>(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let stream = sim_stream(deltas, tool);
        let bytes = stream.as_bytes();
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for to in at {
            chunks.push(&bytes[from..to]);
            from = to;
        }
        chunks.push(&bytes[from..]);
        prop_assert_eq!(read_chunks(chunks), read(&stream));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        chunk in 1usize..64,
    ) {
        let mut r = SseUsageReader::with_event_limit(256);
        for c in bytes.chunks(chunk) {
            r.feed(c);
            prop_assert!(r.data.len() <= 256);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Streams of any SSE shape (names repeated or missing, comments,
    /// other fields, `\n`, `\r\n` and `\r` line ends mixed) read the same
    /// whole, where the reader may skip events in one go, and a byte at a
    /// time, where it never can.
    #[test]
    fn any_framing_reads_the_same_whole_and_byte_by_byte(
        events in proptest::collection::vec(
            proptest::collection::vec((line(), line_end()), 0..5),
            0..24,
        ),
        ends in proptest::collection::vec(line_end(), 24),
    ) {
        let mut stream = String::new();
        for (i, lines) in events.iter().enumerate() {
            for &(line, end) in lines {
                stream.push_str(LINES[line]);
                stream.push_str(["\n", "\r\n", "\r"][end]);
            }
            stream.push_str(["\n", "\r\n", "\r"][ends[i]]);
        }
        let bytes = stream.as_bytes();
        let whole = counted(read_chunks([bytes]), bytes, bytes.len());
        let byte_by_byte = counted(read_chunks(bytes.chunks(1)), bytes, 1);
        prop_assert_eq!(whole, byte_by_byte);
    }
}

/// A line of [`LINES`], the first ten (names and the data that goes with
/// them) three times as often as the odd ones.
fn line() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0usize..10, 1 => 0..LINES.len()]
}

/// A line end: `\n` most often, as the API sends.
fn line_end() -> impl Strategy<Value = usize> {
    prop_oneof![4 => Just(0usize), 1 => Just(1), 1 => Just(2)]
}

/// Lines the framing proptest builds streams from.
const LINES: &[&str] = &[
    "event: message_start",
    "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}",
    "event: message_delta",
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":30}}",
    "event: content_block_delta",
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}",
    "event: ping",
    "data: {\"type\": \"ping\"}",
    "event: message_stop",
    "event: error",
    "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"x\"}}",
    "event:content_block_delta",
    "data:{\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}",
    "data: not json",
    ": a comment",
    "id: 7",
    "events: x",
    "event",
    "data",
    "",
];

/// The record, and the counters, read from `bytes` in chunks of `chunk`.
fn counted(seen: Seen, bytes: &[u8], chunk: usize) -> (Seen, u32, u32) {
    let mut r = SseUsageReader::new();
    for c in bytes.chunks(chunk.max(1)) {
        r.feed(c);
    }
    (seen, r.malformed_events(), r.oversized_events())
}
