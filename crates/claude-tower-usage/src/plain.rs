//! A strict reader for the plain JSON the Messages API writes at the two
//! ends of a message: keys and strings without escapes or control
//! characters, numbers, literals, and objects of those a few levels deep.
//! Anything else reads as `None`, and the caller takes the general way (the
//! tool-pairing scanner's skim, then serde).

/// How deep objects may nest inside the object read.
const MAX_DEPTH: u8 = 3;

/// A cursor over `b`.
pub(crate) struct Plain<'a> {
    b: &'a [u8],
    pub(crate) pos: usize,
}

/// The index of the first `"`, `\\` or control character (below 0x20) in
/// `b` at or after `from`: where a plain string ends, or stops being plain.
///
/// Eight bytes at a time (SWAR): the strings here (keys, model names, stop
/// reasons) are tens of bytes, too short for a vectorized search's set-up
/// and long enough that a byte loop was most of a small message's read. In
/// each word, a byte equal to one of the two characters is a zero byte of
/// the word XORed with it, found by the classic `(x - 0x01..) & !x & 0x80..`;
/// a byte below 0x20 by `(x - 0x20..) & !x & 0x80..`. Both may flag bytes
/// above the first true match (a borrow), never below it, so the lowest
/// flagged byte is exact.
pub(crate) fn special(b: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const QUOTE: u64 = ONES * b'"' as u64;
    const BACKSLASH: u64 = ONES * b'\\' as u64;
    const CONTROL: u64 = ONES * 0x20;
    let mut at = from;
    while let Some(word) = b.get(at..at + 8) {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes);
        let quote = x ^ QUOTE;
        let backslash = x ^ BACKSLASH;
        let found = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(CONTROL) & !x);
        let found = found & HIGH;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    b.get(at..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|i| at + i)
}

impl<'a> Plain<'a> {
    pub(crate) fn new(b: &'a [u8], pos: usize) -> Self {
        Self { b, pos }
    }

    fn ws(&mut self) {
        while matches!(self.b.get(self.pos), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.b.get(self.pos) == Some(&c)).then(|| self.pos += 1)
    }

    /// A string at `pos`: its inner bytes.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.ws();
        if self.b.get(self.pos) != Some(&b'"') {
            return None;
        }
        let start = self.pos + 1;
        let end = special(self.b, start)?;
        if self.b[end] != b'"' {
            // An escape or a control character: not plain.
            return None;
        }
        self.pos = end + 1;
        Some(&self.b[start..end])
    }

    /// A scalar or (when `depth` allows) an object at `pos`: its bytes as
    /// written.
    pub(crate) fn value(&mut self, depth: u8) -> Option<&'a [u8]> {
        self.ws();
        let start = self.pos;
        match *self.b.get(self.pos)? {
            b'"' => {
                self.string()?;
            }
            b'{' if depth < MAX_DEPTH => self.object(depth + 1, |_, _| Some(()))?,
            b'0'..=b'9' | b'-' => {
                while matches!(
                    self.b.get(self.pos),
                    Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                ) {
                    self.pos += 1;
                }
            }
            c => {
                let word: &[u8] = match c {
                    b'n' => b"null",
                    b't' => b"true",
                    b'f' => b"false",
                    _ => return None,
                };
                if self.b.get(self.pos..self.pos + word.len()) != Some(word) {
                    return None;
                }
                self.pos += word.len();
            }
        }
        Some(&self.b[start..self.pos])
    }

    /// An object at `pos`, each member handed to `member(key, value)`.
    pub(crate) fn object(
        &mut self,
        depth: u8,
        mut member: impl FnMut(&'a [u8], &'a [u8]) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            let value = self.value(depth)?;
            member(key, value)?;
            self.ws();
            match self.b.get(self.pos)? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The first members of the object at `pos`, up to the one named `key`:
    /// its value when it is a plain string. `None` when a member before it
    /// is not a plain scalar (a container, an escape), or it is not there.
    pub(crate) fn leading_string(&mut self, key: &[u8]) -> Option<&'a str> {
        self.eat(b'{')?;
        loop {
            let name = self.string()?;
            self.eat(b':')?;
            if name == key {
                return std::str::from_utf8(self.string()?).ok();
            }
            // Only scalars are skipped here; a container goes the general way.
            self.value(MAX_DEPTH)?;
            self.eat(b',')?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_objects_and_refuses_the_rest() {
        let mut seen = Vec::new();
        let b = br#" { "a" : 1 , "b":{"c":null,"d":"x"},"e":true,"f":-1.5e3 } "#;
        let mut p = Plain::new(b, 0);
        p.object(0, |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            Some(())
        })
        .unwrap();
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[1].1, br#"{"c":null,"d":"x"}"#);
        assert_eq!(&b[p.pos..], b" ");
        for bad in [
            &br#"{"a":"\n"}"#[..],
            br#"{"a":"\u0041"}"#,
            br#"{"a":[1]}"#,
            br#"{"a":1,}"#,
            br#"{"a":nul}"#,
            br#"{"a":{"b":{"c":{"d":{"e":1}}}}}"#,
            br#"{"a":1"#,
            b"{",
        ] {
            assert!(
                Plain::new(bad, 0).object(0, |_, _| Some(())).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// What `special` computes, a byte at a time.
    fn byte_loop(b: &[u8], from: usize) -> Option<usize> {
        b.get(from..)?
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            .map(|i| from + i)
    }

    #[test]
    fn special_finds_the_first_quote_backslash_or_control_byte() {
        // Every byte value at every position of words and tails, behind
        // bytes that are near misses (0x21, 0x5b, 0x5d, 0x80, 0xff, 0x1f+1).
        for len in 0..20 {
            for at in 0..len {
                for c in 0..=255u8 {
                    for filler in [b'a', 0x21, b'#', b'[', b']', 0x80, 0xff, 0xdc] {
                        let mut b = vec![filler; len];
                        b[at] = c;
                        for from in 0..=len.min(3) {
                            assert_eq!(special(&b, from), byte_loop(&b, from), "{b:?} from {from}");
                        }
                    }
                }
            }
        }
        assert_eq!(special(b"ab", 5), None);
    }

    proptest::proptest! {
        #[test]
        fn special_agrees_with_a_byte_loop(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), from in 0usize..8) {
            proptest::prop_assert_eq!(special(&b, from), byte_loop(&b, from));
        }
    }

    #[test]
    fn a_leading_string_stops_at_its_member() {
        let b = br#"{"id":"msg_1","type":"message","model":"m-1","content":[broken"#;
        assert_eq!(Plain::new(b, 0).leading_string(b"model"), Some("m-1"));
        assert_eq!(Plain::new(b, 0).leading_string(b"stop"), None);
        let b = br#"{"content":[],"model":"m"}"#;
        assert_eq!(Plain::new(b, 0).leading_string(b"model"), None);
    }
}
