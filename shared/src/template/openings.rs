//! Finding each `{{` of a template and the line it is on, in one pass over the text.
//!
//! Every identifier needs both: where the next `{{` is and how many newlines come before it.
//! Two SIMD passes (memchr's search, then bytecount's count up to each find) read the text
//! twice and took longer than copying it; on x86-64 with AVX2 one pass looks at each 128 bytes
//! once for both. Elsewhere the two passes remain.

/// Finds `{{` from an offset on, counting the newlines it passes, moving forward only.
pub(super) struct Openings<'a> {
    bytes: &'a [u8],
    /// How far the newlines are counted.
    at: usize,
    /// Newlines in `bytes[..at]`.
    newlines: usize,
}

impl<'a> Openings<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Self { bytes: text.as_bytes(), at: 0, newlines: 0 }
    }

    /// The first `{{` starting at or after `from` (not before an offset asked for or found
    /// earlier), and the number of newlines before it.
    pub(super) fn next(&mut self, from: usize) -> Option<(usize, usize)> {
        debug_assert!(from >= self.at, "openings move forward only");
        self.newlines += bytecount::count(self.bytes.get(self.at..from).unwrap_or_default(), b'\n');
        self.at = from;
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has both features `next_avx2` is compiled for.
            return unsafe { self.next_avx2() };
        }
        self.next_two_passes()
    }

    /// memchr's search for `{{`, then bytecount's count of the newlines up to it.
    fn next_two_passes(&mut self) -> Option<(usize, usize)> {
        let offset = memchr::memmem::find(self.bytes.get(self.at..).unwrap_or_default(), b"{{")?;
        let found = self.at + offset;
        self.newlines += bytecount::count(self.bytes.get(self.at..found).unwrap_or_default(), b'\n');
        self.at = found;
        Some((found, self.newlines))
    }

    /// One pass, 128 bytes a step: newlines are summed in byte lanes (flushed before a lane can
    /// overflow), and a step holding a `{` is looked at closely for a `{{`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,popcnt")]
    unsafe fn next_avx2(&mut self) -> Option<(usize, usize)> {
        use std::arch::x86_64::{
            __m256i, _mm256_cmpeq_epi8, _mm256_extract_epi64, _mm256_loadu_si256, _mm256_movemask_epi8,
            _mm256_or_si256, _mm256_sad_epu8, _mm256_set1_epi8, _mm256_setzero_si256, _mm256_sub_epi8,
            _mm256_testz_si256,
        };
        /// The sum of the 32 byte lanes.
        #[target_feature(enable = "avx2")]
        fn lanes_sum(counts: __m256i) -> usize {
            let sums = _mm256_sad_epu8(counts, _mm256_setzero_si256());
            (_mm256_extract_epi64::<0>(sums)
                + _mm256_extract_epi64::<1>(sums)
                + _mm256_extract_epi64::<2>(sums)
                + _mm256_extract_epi64::<3>(sums)) as usize
        }
        /// One bit a byte of the four vectors: whether it is `byte`.
        #[target_feature(enable = "avx2")]
        fn bits(a: __m256i, b: __m256i, c: __m256i, d: __m256i, byte: __m256i) -> u128 {
            let bits = |v| u128::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, byte)) as u32);
            bits(a) | (bits(b) << 32) | (bits(c) << 64) | (bits(d) << 96)
        }
        // Four increments a step: a lane holds at most 4 * 63 = 252.
        const STEPS_PER_FLUSH: usize = 63;

        let bytes = self.bytes;
        let first = self.at;
        let open = _mm256_set1_epi8(b'{' as i8);
        let newline = _mm256_set1_epi8(b'\n' as i8);
        let mut counts = _mm256_setzero_si256();
        let mut steps = 0;
        let mut newlines = self.newlines;
        let mut at = first;
        while let Some(step) = bytes.get(at..at + 128) {
            // SAFETY: `step` is 128 readable bytes; loadu reads unaligned.
            let (a, b, c, d) = unsafe {
                let p = step.as_ptr();
                (
                    _mm256_loadu_si256(p.cast()),
                    _mm256_loadu_si256(p.add(32).cast()),
                    _mm256_loadu_si256(p.add(64).cast()),
                    _mm256_loadu_si256(p.add(96).cast()),
                )
            };
            let braces = _mm256_or_si256(
                _mm256_or_si256(_mm256_cmpeq_epi8(a, open), _mm256_cmpeq_epi8(b, open)),
                _mm256_or_si256(_mm256_cmpeq_epi8(c, open), _mm256_cmpeq_epi8(d, open)),
            );
            if _mm256_testz_si256(braces, braces) == 0 {
                let opens = bits(a, b, c, d, open);
                // A `{` ending the step before pairs with one starting this step.
                let carried = u128::from(at > first && matches!(bytes.get(at - 1), Some(b'{')));
                // Bit i: bytes i - 1 and i are both `{`.
                let pairs = opens & ((opens << 1) | carried);
                if pairs != 0 {
                    let second = pairs.trailing_zeros();
                    // Newlines of this step before the pair (none when it starts a step before).
                    let before = bits(a, b, c, d, newline) & ((1u128 << second) >> 1).saturating_sub(1);
                    let found = at + second as usize - 1;
                    self.newlines = newlines + lanes_sum(counts) + before.count_ones() as usize;
                    self.at = found;
                    return Some((found, self.newlines));
                }
            }
            counts = _mm256_sub_epi8(counts, _mm256_cmpeq_epi8(a, newline));
            counts = _mm256_sub_epi8(counts, _mm256_cmpeq_epi8(b, newline));
            counts = _mm256_sub_epi8(counts, _mm256_cmpeq_epi8(c, newline));
            counts = _mm256_sub_epi8(counts, _mm256_cmpeq_epi8(d, newline));
            steps += 1;
            if steps == STEPS_PER_FLUSH {
                newlines += lanes_sum(counts);
                counts = _mm256_setzero_si256();
                steps = 0;
            }
            at += 128;
        }
        self.newlines = newlines + lanes_sum(counts);
        self.at = at;
        // Under 128 bytes left; a pair may straddle the last step and them.
        if at > first && matches!(bytes.get(at - 1), Some(b'{')) && matches!(bytes.get(at), Some(b'{')) {
            self.at = at - 1;
            return Some((at - 1, self.newlines));
        }
        self.next_two_passes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every `{{` and the newlines before it, the way `next` is driven by the scan.
    fn all<'t>(
        text: &'t str,
        mut next: impl FnMut(&mut Openings<'t>, usize) -> Option<(usize, usize)>,
    ) -> Vec<(usize, usize)> {
        let mut openings = Openings::new(text);
        let mut found = Vec::new();
        let mut from = 0;
        while let Some((at, newlines)) = next(&mut openings, from) {
            found.push((at, newlines));
            from = at + 1;
        }
        found
    }

    proptest! {
        /// The one-pass search finds what the two passes find, and both what a naive look
        /// finds: pairs straddling 64-byte steps, runs of `{`, newlines on either side.
        #[test]
        fn one_pass_and_two_passes_agree_with_a_naive_look(
            text in prop::collection::vec(prop_oneof![Just("{"), Just("\n"), Just("x"), Just("é"), Just("{{"), Just("}")], 0..400)
                .prop_map(|parts| parts.concat()),
        ) {
            let naive: Vec<_> = text
                .match_indices('{')
                .filter(|(at, _)| text[at + 1..].starts_with('{'))
                .map(|(at, _)| (at, text[..at].matches('\n').count()))
                .collect();
            prop_assert_eq!(&all(&text, Openings::next), &naive);
            prop_assert_eq!(
                &all(&text, |o, from| {
                    o.newlines += bytecount::count(&o.bytes[o.at..from], b'\n');
                    o.at = from;
                    o.next_two_passes()
                }),
                &naive
            );
        }
    }
}
