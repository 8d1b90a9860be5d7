//! Service templates: finding `{{ computenest::KIND::NAME }}` identifiers and replacing them,
//! leaving every other byte as it was.
//!
//! An identifier is `{{`, optional spaces, `computenest::KIND::NAME`, optional spaces, `}}`.
//! Anything else, including other `{{...}}` (`{{resolve:oos:...}}`, `{{.ID}}`,
//! `{{workflow.name}}`), `${Var}`, stray `}}` and text that merely mentions computenest, is
//! not an identifier and is copied unchanged.

use std::ops::Range;

mod openings;

use openings::Openings;

use serde::Serialize;

pub use crate::platform::http::problem::{Position, TextProblem as TemplateProblem, TextProblems as TemplateProblems};

/// Largest template accepted.
pub const MAX_TEMPLATE_BYTES: usize = 10 << 20;
/// Longest identifier name.
pub const MAX_NAME_LEN: usize = crate::names::MAX_NAME_LEN;

const PREFIX: &str = "computenest::";
/// How far after `computenest::` a closing `}}` is looked for: the longest kind, `::`, the
/// longest name and generous room for spaces.
const MAX_BODY_LEN: usize = 9 + 2 + MAX_NAME_LEN + 64;

/// What an identifier stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentifierKind {
    /// `acrimage::NAME`: an image reference.
    AcrImage,
    /// `acr::dockerconfigjson`: image pull credentials.
    Acr,
    /// `helmchart::NAME`: a chart reference.
    HelmChart,
    /// `helm::dockerconfigjson`: chart pull credentials.
    Helm,
    /// `file::NAME`: a download URL.
    File,
}

impl IdentifierKind {
    fn parse(kind: &str) -> Option<Self> {
        Some(match kind {
            "acrimage" => Self::AcrImage,
            "acr" => Self::Acr,
            "helmchart" => Self::HelmChart,
            "helm" => Self::Helm,
            "file" => Self::File,
            _ => return None,
        })
    }

    /// The kind as written in templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AcrImage => "acrimage",
            Self::Acr => "acr",
            Self::HelmChart => "helmchart",
            Self::Helm => "helm",
            Self::File => "file",
        }
    }

    /// Whether the name is fixed (`dockerconfigjson`) rather than an association.
    pub fn is_credential(self) -> bool {
        matches!(self, Self::Acr | Self::Helm)
    }
}

/// One identifier found in a template, borrowing the template's text (scanning allocates
/// nothing per identifier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identifier<'t> {
    pub kind: IdentifierKind,
    /// `computenest::KIND::NAME` as written, without braces or spaces: the key relations use.
    pub key: &'t str,
    /// The whole `{{ ... }}` as written.
    pub text: &'t str,
    /// Byte range of the whole `{{ ... }}`.
    #[serde(skip)]
    pub span: Range<usize>,
    /// Where it starts.
    pub position: Position,
}

impl<'t> Identifier<'t> {
    /// Its name: what follows `computenest::KIND::`.
    pub fn name(&self) -> &'t str {
        self.key.get(PREFIX.len() + self.kind.as_str().len() + 2..).unwrap_or_default()
    }
}

/// Maps byte offsets to line:column, moving forward only: given the newlines before an offset
/// ([`Openings`] counts them), only the characters since the last newline are counted, so
/// scanning stays linear even on one very long line.
struct Lines<'a> {
    bytes: &'a [u8],
    counted_to: usize,
    line: usize,
    column: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Self { bytes: text.as_bytes(), counted_to: 0, line: 1, column: 1 }
    }

    /// The position of `offset`, a char boundary not before the previous offset asked for,
    /// with `newlines` before it.
    fn position(&mut self, offset: usize, newlines: usize) -> Position {
        debug_assert!(offset >= self.counted_to);
        let span = self.bytes.get(self.counted_to..offset).unwrap_or_default();
        let tail = if newlines + 1 > self.line {
            self.line = newlines + 1;
            self.column = 1;
            memchr::memrchr(b'\n', span).and_then(|n| span.get(n + 1..)).unwrap_or_default()
        } else {
            span
        };
        // Columns count characters; `tail` is UTF-8 cut at character boundaries.
        self.column += bytecount::num_chars(tail);
        self.counted_to = offset;
        Position { line: self.line, column: self.column }
    }
}

/// `KIND::NAME` split at its first `::` (a `str` pattern search builds a searcher per call).
fn split_kind(body: &str) -> Option<(&str, &str)> {
    let bytes = body.as_bytes();
    let at = memchr::memchr_iter(b':', bytes).find(|&n| matches!(bytes.get(n + 1), Some(b':')))?;
    Some((body.get(..at)?, body.get(at + 2..)?))
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Finds every identifier, and every `{{ computenest::...` that is not a valid one.
pub fn scan(text: &str) -> (Vec<Identifier<'_>>, TemplateProblems) {
    let bytes = text.as_bytes();
    let mut lines = Lines::new(text);
    let mut found = Vec::new();
    let mut problems = TemplateProblems::default();
    let mut openings = Openings::new(text);
    let mut from = 0;
    while let Some((start, newlines)) = openings.next(from) {
        let mut i = start + 2;
        while matches!(bytes.get(i), Some(b' ')) {
            i += 1;
        }
        if !bytes.get(i..).unwrap_or_default().starts_with(PREFIX.as_bytes()) {
            // Not ours ({{resolve:...}}, {{.ID}}, ...): move past this `{` only, so `{{{ computenest` still scans.
            from = start + 1;
            continue;
        }
        let body_start = i + PREFIX.len();
        // The identifier ends at the first `}}` on the same line, looked for only as far as the
        // longest possible identifier reaches, so a long line of unclosed ones stays linear.
        let mut limit = bytes.len().min(body_start + MAX_BODY_LEN);
        while !text.is_char_boundary(limit) {
            limit -= 1;
        }
        let line_end =
            memchr::memchr(b'\n', bytes.get(body_start..limit).unwrap_or_default()).map_or(limit, |n| body_start + n);
        // A one-shot memmem builds a searcher per call; over these few bytes a `}` search is faster.
        let line = bytes.get(body_start..line_end).unwrap_or_default();
        let close =
            memchr::memchr_iter(b'}', line).find(|&n| matches!(line.get(n + 1), Some(b'}'))).map(|n| body_start + n);
        let Some(close) = close else {
            let shown: String = text.get(start..line_end).unwrap_or_default().chars().take(200).collect();
            problems.push(TemplateProblem {
                position: lines.position(start, newlines),
                code: "unclosed_identifier",
                identifier: shown,
                message: format!("identifier has no closing }}}} on its line within {MAX_BODY_LEN} characters"),
            });
            from = body_start;
            continue;
        };
        let end = close + 2;
        let whole = text.get(start..end).unwrap_or_default();
        let body = text.get(body_start..close).unwrap_or_default().trim_end_matches(' ');
        let position = lines.position(start, newlines);
        let problem = |code: &'static str, message: String| TemplateProblem {
            position,
            code,
            identifier: whole.chars().take(200).collect(),
            message,
        };
        match split_kind(body) {
            Some((kind, name)) if !name.is_empty() && name.len() <= MAX_NAME_LEN && name.bytes().all(is_name_byte) => {
                match IdentifierKind::parse(kind) {
                    Some(kind) if kind.is_credential() && name != "dockerconfigjson" => problems.push(problem(
                        "malformed_identifier",
                        format!("{}:: takes only dockerconfigjson", kind.as_str()),
                    )),
                    Some(kind) => found.push(Identifier {
                        kind,
                        key: text.get(body_start - PREFIX.len()..body_start + body.len()).unwrap_or_default(),
                        text: whole,
                        span: start..end,
                        position,
                    }),
                    None => problems.push(problem(
                        "unknown_kind",
                        format!("unknown kind '{kind}' (expected acrimage, acr, helmchart, helm or file)"),
                    )),
                }
            }
            _ => problems.push(problem(
                "malformed_identifier",
                format!(
                    "expected computenest::KIND::NAME with NAME of letters, digits, '_' or '-' (at most {MAX_NAME_LEN})"
                ),
            )),
        }
        from = end;
    }
    (found, problems)
}

/// Replaces each identifier's span with `value(identifier)`; every other byte is copied.
/// `identifiers` must come from [`scan`] of the same text.
#[cfg(test)]
fn substitute(text: &str, identifiers: &[Identifier<'_>], mut value: impl FnMut(&Identifier<'_>) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for identifier in identifiers {
        out.push_str(text.get(last..identifier.span.start).unwrap_or_default());
        out.push_str(&value(identifier));
        last = identifier.span.end;
    }
    out.push_str(text.get(last..).unwrap_or_default());
    out
}

/// Escapes a value for the inside of a JSON string (templates in JSON keep parsing); `None`
/// when it needs no escape, which is the case for image references, URLs and base64.
pub fn json_string_content(value: &str) -> Option<String> {
    if !value.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return None;
    }
    let quoted = serde_json::to_string(value).expect("a string serialises");
    quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_both_spellings_and_leaves_the_rest() {
        let text = "a: {{ computenest::acrimage::nginx }}\nb: \"{{computenest::acr::dockerconfigjson}}\"\n\
                    c: {{resolve:oos:aliyun/services/computenest/images/x}} {{.ID}} {{workflow.name}} ${Var} }} computenest\n\
                    d: {{  computenest::helmchart::My_Chart-2  }}";
        let (found, problems) = scan(text);
        assert!(problems.is_empty(), "{problems:?}");
        let keys: Vec<_> = found.iter().map(|i| (i.key.to_owned(), i.position.to_string())).collect();
        assert_eq!(
            keys,
            [
                ("computenest::acrimage::nginx".to_string(), "1:4".to_string()),
                ("computenest::acr::dockerconfigjson".to_string(), "2:5".to_string()),
                ("computenest::helmchart::My_Chart-2".to_string(), "4:4".to_string()),
            ]
        );
        let out = substitute(text, &found, |i| format!("<{}>", i.name()));
        assert_eq!(
            out,
            text.replace("{{ computenest::acrimage::nginx }}", "<nginx>")
                .replace("{{computenest::acr::dockerconfigjson}}", "<dockerconfigjson>")
                .replace("{{  computenest::helmchart::My_Chart-2  }}", "<My_Chart-2>")
        );
    }

    #[test]
    fn reports_every_bad_identifier_with_its_position() {
        let text = "x: {{ computenest::acrimage:: }}\n  y: {{ computenest::bogus::a }}\nz: {{ computenest::acrimage::ok }} {{ computenest::acr::other }}\nw: é{{ computenest::file::f\n";
        let (found, problems) = scan(text);
        assert_eq!(found.len(), 1);
        let got: Vec<_> = problems.iter().map(|p| (p.position.to_string(), p.code)).collect();
        assert_eq!(
            got,
            [
                ("1:4".to_string(), "malformed_identifier"),
                ("2:6".to_string(), "unknown_kind"),
                ("3:36".to_string(), "malformed_identifier"),
                ("4:5".to_string(), "unclosed_identifier"),
            ]
        );
    }

    #[test]
    fn json_values_stay_inside_strings() {
        assert_eq!(json_string_content("a\"b\\c\n").as_deref(), Some("a\\\"b\\\\c\\n"));
        assert_eq!(json_string_content("127.0.0.1:5000/acme/web:1.0"), None);
    }

    fn filler() -> impl Strategy<Value = String> {
        // Text that can hold braces, colons and the word computenest, but no identifier.
        prop::collection::vec(
            prop_oneof![
                "[a-zA-Z0-9 :._$\né中-]{0,12}",
                Just("{{ .ID }}".to_string()),
                Just("}}".to_string()),
                Just("{{resolve:oos:computenest/x}}".to_string()),
                Just("computenest".to_string()),
                Just("${Var}".to_string()),
                Just("{".to_string()),
            ],
            0..8,
        )
        .prop_map(|parts| parts.concat())
        .prop_filter("no identifier in filler", |s| !s.contains("computenest::") && !s.ends_with('{'))
    }

    fn identifier() -> impl Strategy<Value = (String, String)> {
        (prop_oneof![Just("acrimage"), Just("helmchart"), Just("file")], "[A-Za-z0-9_-]{1,20}", " {0,2}", " {0,2}")
            .prop_map(|(kind, name, before, after)| {
                (format!("{{{{{before}computenest::{kind}::{name}{after}}}}}"), format!("<{kind}:{name}>"))
            })
    }

    proptest! {
        #[test]
        fn output_is_input_with_exactly_those_spans_replaced(
            parts in prop::collection::vec((filler(), identifier()), 0..6),
            tail in filler(),
        ) {
            let mut text = String::new();
            let mut expected = String::new();
            for (before, (ident, value)) in &parts {
                text.push_str(before);
                text.push_str(ident);
                expected.push_str(before);
                expected.push_str(value);
            }
            text.push_str(&tail);
            expected.push_str(&tail);
            let (found, problems) = scan(&text);
            prop_assert!(problems.is_empty(), "{:?}", problems);
            prop_assert_eq!(found.len(), parts.len());
            for identifier in &found {
                // Positions agree with a naive count over the text before the identifier.
                let before = &text[..identifier.span.start];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                prop_assert_eq!(identifier.position, Position { line, column });
            }
            let out = substitute(&text, &found, |i| format!("<{}:{}>", i.kind.as_str(), i.name()));
            prop_assert_eq!(out, expected);
        }
    }
}
