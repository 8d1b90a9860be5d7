//! A rendered template as pieces: the template's text cut around its values.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use serde::Serialize;

/// A rendered template: the template's text with each identifier's span cut out and its value
/// put in its place. It is never copied into one buffer by the renderer: the HTTP answers
/// send its pieces as they are ([`Rendered::chunks`]) or escape them straight into JSON
/// (it serialises as one string), and whoever wants one string asks for it.
#[derive(Clone)]
pub struct Rendered<'t> {
    pub(super) text: &'t str,
    /// Each identifier's span in `text` and the value written instead, in order.
    pub(super) cuts: Vec<(Range<usize>, Arc<str>)>,
    pub(super) len: usize,
}

impl<'t> Rendered<'t> {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its pieces in order: kept text and values, alternately.
    pub fn pieces(&self) -> impl Iterator<Item = &str> + '_ {
        let mut last = 0;
        self.cuts
            .iter()
            .flat_map(move |(span, value)| {
                let kept = &self.text[last..span.start];
                last = span.end;
                [kept, &**value]
            })
            .chain(std::iter::once(&self.text[self.cuts.last().map_or(0, |(span, _)| span.end)..]))
            .filter(|piece| !piece.is_empty())
    }

    /// Its pieces as [`Bytes`], the kept text sharing `source`'s memory. `source` must be the
    /// very buffer [`Template::check`] borrowed (equal bytes elsewhere are not enough: it panics).
    pub fn chunks(&self, source: &Bytes) -> Vec<Bytes> {
        let text = source.slice_ref(self.text.as_bytes());
        let mut chunks = Vec::with_capacity(self.cuts.len() * 2 + 1);
        let mut last = 0;
        for (span, value) in &self.cuts {
            chunks.push(text.slice(last..span.start));
            chunks.push(Bytes::copy_from_slice(value.as_bytes()));
            last = span.end;
        }
        chunks.push(text.slice(last..));
        chunks.retain(|chunk| !chunk.is_empty());
        chunks
    }

    /// Appends it to `out` as one JSON string, quotes included.
    pub fn write_json_string(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        for piece in self.pieces().flat_map(bounded) {
            // escape_into quotes what it escapes: drop both quotes again.
            let at = out.len();
            json_escape_simd::escape_into(piece, out);
            out.pop();
            out.copy_within(at + 1.., at);
            out.pop();
        }
        out.push(b'"');
    }

    /// Appends it to `out`, which a caller rendering many templates may reuse.
    pub fn write_into(&self, out: &mut String) {
        out.reserve(self.len);
        self.pieces().for_each(|piece| out.push_str(piece));
    }
}

/// Longest slice handed to the SIMD escaper at once: it reserves six times what it is given,
/// so a 10 MiB piece would otherwise grow the answer's buffer to 60 MiB.
pub(super) const ESCAPE_SLICE: usize = 64 << 10;

/// `piece` in slices of at most about [`ESCAPE_SLICE`] bytes, cut at character boundaries.
fn bounded(mut piece: &str) -> impl Iterator<Item = &str> {
    std::iter::from_fn(move || {
        if piece.is_empty() {
            return None;
        }
        let mut cut = piece.len().min(ESCAPE_SLICE);
        while !piece.is_char_boundary(cut) {
            cut += 1;
        }
        let (slice, rest) = piece.split_at(cut);
        piece = rest;
        Some(slice)
    })
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.pieces().try_for_each(|piece| f.write_str(piece))
    }
}

/// Never the text: it holds a pull key.
impl fmt::Debug for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rendered").field("len", &self.len).field("substitutions", &self.cuts.len()).finish()
    }
}

/// One JSON string, escaped piece by piece as it is written: no whole copy first.
impl Serialize for Rendered<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
