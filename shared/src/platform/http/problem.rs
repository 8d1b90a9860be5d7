//! RFC 9457 problem details: the one shape every Berth API error takes.
//!
//! Whatever of a request an error body shows is bounded: a rejected value is cut to
//! [`MAX_SHOWN_CHARS`] characters (see [`shown`]), every quoted span of a detail likewise
//! ([`bounded_text`]), and a whole detail to [`MAX_DETAIL_CHARS`].

use std::borrow::Cow;
use std::fmt;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Most characters of a request value an error shows; longer values are cut and end with [`CUT`].
pub const MAX_SHOWN_CHARS: usize = 200;
/// Most characters of a problem's `detail` (a list of several faults can be long).
pub const MAX_DETAIL_CHARS: usize = 2000;
/// Marks where a shown value or a detail was cut.
pub const CUT: char = '\u{2026}';
/// How much of a value is searched for secrets before it is shown (only its start is shown).
const REDACT_WINDOW: usize = 64 << 10;

/// A request value as an error may show it: secrets blanked (as in logs), control and
/// bidirectional-formatting characters escaped (`\n`, `\u{202e}`), and cut on a character
/// boundary to at most [`MAX_SHOWN_CHARS`] characters followed by [`CUT`]. Borrowed when
/// nothing changes. Use it wherever a message formats a value from a request, e.g.
/// `format!("'{}' is not a package name", shown(value))`.
pub fn shown(value: &str) -> Cow<'_, str> {
    let mut end = value.len().min(REDACT_WINDOW);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    match crate::platform::secret::redact(value.get(..end).unwrap_or_default()) {
        Cow::Borrowed(_) => escape_and_cut(value, MAX_SHOWN_CHARS),
        Cow::Owned(mut redacted) => {
            // Enough of the rest to fill the window shown, and to know whether it was cut.
            redacted.extend(value.get(end..).unwrap_or_default().chars().take(MAX_SHOWN_CHARS + 1));
            Cow::Owned(escape_and_cut(&redacted, MAX_SHOWN_CHARS).into_owned())
        }
    }
}

/// A message that may quote request values (a parser's error, a formatted rule): every span
/// in `"..."` (with `\` escapes), `` `...` `` or `'...'` is passed through [`shown`], then the
/// whole is escaped as [`shown`] does and cut to `max` characters. An apostrophe inside a word
/// (`can't`) opens no span.
pub fn bounded_text(text: &str, max: usize) -> Cow<'_, str> {
    let spans = quoted_spans(text);
    let mut rebuilt: Option<String> = None;
    let mut last = 0;
    for (start, end) in spans {
        let inner = text.get(start..end).unwrap_or_default();
        if let Cow::Owned(cut) = shown(inner) {
            let out = rebuilt.get_or_insert_with(|| String::with_capacity(text.len().min(max * 4)));
            out.push_str(text.get(last..start).unwrap_or_default());
            out.push_str(&cut);
            last = end;
        }
    }
    match rebuilt {
        None => escape_and_cut(text, max),
        Some(mut out) => {
            out.push_str(text.get(last..).unwrap_or_default());
            Cow::Owned(escape_and_cut(&out, max).into_owned())
        }
    }
}

/// Byte ranges of the insides of quoted spans (see [`bounded_text`]), in order. An unclosed
/// span runs to the end.
fn quoted_spans(text: &str) -> Vec<(usize, usize)> {
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b >= 0x80;
    let mut spans = Vec::new();
    let mut i = 0;
    while let Some(&quote) = bytes.get(i) {
        let opens = match quote {
            b'"' | b'`' => true,
            b'\'' => !i.checked_sub(1).and_then(|p| bytes.get(p)).is_some_and(|&b| word(b)),
            _ => false,
        };
        if !opens {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut j = start;
        let end = loop {
            let Some(&b) = bytes.get(j) else {
                break bytes.len();
            };
            match b {
                b'\\' if quote == b'"' => j += 2,
                b if b == quote && (quote != b'\'' || bytes.get(j + 1).is_none_or(|&n| !word(n))) => break j,
                _ => j += 1,
            }
        };
        // `j += 2` may step past the end; every byte matched is ASCII, so `end` is a boundary.
        let end = end.min(bytes.len());
        spans.push((start, end));
        i = end + 1;
    }
    spans
}

/// Characters shown escaped: controls (C0, DEL, C1) and the invisible formatting characters
/// that reorder or hide text (bidirectional overrides and isolates, zero-width characters).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// Escapes [`needs_escape`] characters and cuts to `max` characters (escapes counted as what
/// they print), ending a cut with [`CUT`]. Borrowed when nothing changes.
fn escape_and_cut(text: &str, max: usize) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut count = 0;
    for (i, c) in text.char_indices() {
        let escape = needs_escape(c);
        let width = if escape { c.escape_default().count() } else { 1 };
        if count + width > max {
            let mut cut = out.unwrap_or_else(|| text.get(..i).unwrap_or_default().to_owned());
            cut.push(CUT);
            return Cow::Owned(cut);
        }
        count += width;
        match (&mut out, escape) {
            (Some(out), true) => out.extend(c.escape_default()),
            (Some(out), false) => out.push(c),
            (None, true) => {
                let mut escaped = String::with_capacity(i + 16);
                escaped.push_str(text.get(..i).unwrap_or_default());
                escaped.extend(c.escape_default());
                out = Some(escaped);
            }
            (None, false) => {}
        }
    }
    out.map_or(Cow::Borrowed(text), Cow::Owned)
}

/// An API error as the caller sees it: status, a stable machine `code`, a human `detail`,
/// and the request field at fault when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// A URI naming the problem type; stable per `code`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the problem type.
    pub title: String,
    /// HTTP status code, repeated in the body as RFC 9457 asks.
    pub status: u16,
    /// Explanation of this occurrence; never contains a secret.
    pub detail: String,
    /// Stable code for programs to match on, e.g. `invalid_field`.
    pub code: String,
    /// The offending request field (JSON pointer-ish dotted path), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every occurrence when a request has several faults at once (a template's identifiers),
    /// each an object with at least `code` and `message`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<serde_json::Value>,
}

impl Problem {
    /// A problem with the given status, stable code and detail. The detail is bounded as
    /// [`bounded_text`] says, to [`MAX_DETAIL_CHARS`].
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        let detail = match bounded_text(&detail, MAX_DETAIL_CHARS) {
            Cow::Borrowed(_) => detail,
            Cow::Owned(bounded) => bounded,
        };
        Self {
            kind: format!("urn:berth:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
            field: None,
            problems: Vec::new(),
        }
    }

    /// Names the request field at fault (a path that may hold a request's map keys: shown
    /// as [`shown`] says).
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = Some(match shown(&field) {
            Cow::Borrowed(_) => field,
            Cow::Owned(bounded) => bounded,
        });
        self
    }

    /// Lists every fault of the request.
    pub fn with_problems(mut self, problems: Vec<serde_json::Value>) -> Self {
        self.problems = problems;
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn problem_is_problem_json_with_code_and_field() {
        let response = Problem::new(StatusCode::BAD_REQUEST, "invalid_field", "ttl too long")
            .with_field("ttl_seconds")
            .into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["code"], "invalid_field");
        assert_eq!(value["field"], "ttl_seconds");
        assert_eq!(value["status"], 400);
        assert_eq!(value["type"], "urn:berth:problem:invalid_field");
    }

    #[test]
    fn shown_values_are_cut_escaped_and_redacted() {
        assert!(matches!(shown("acme/web"), Cow::Borrowed("acme/web")));
        let exactly = "a".repeat(MAX_SHOWN_CHARS);
        assert!(matches!(shown(&exactly), Cow::Borrowed(_)));

        let long = "é".repeat(20 << 20);
        let cut = shown(&long);
        assert_eq!(cut.chars().count(), MAX_SHOWN_CHARS + 1);
        assert!(cut.starts_with("éé") && cut.ends_with(CUT));

        assert_eq!(shown("a\nb\u{1b}[31m\u{202e}c\td"), "a\\nb\\u{1b}[31m\\u{202e}c\\td");
        // An escape counts as what it prints, so the cut still bounds the output.
        let controls = "\u{1}".repeat(1000);
        assert!(shown(&controls).chars().count() <= MAX_SHOWN_CHARS + 1);

        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2lnbmF0dXJl";
        assert_eq!(shown(&format!("x {jwt} y")), "x [redacted] y");
        let mut padded = format!("{jwt} ");
        padded.push_str(&"z".repeat(REDACT_WINDOW * 2));
        let cut = shown(&padded);
        assert!(cut.starts_with("[redacted] zzz") && cut.ends_with(CUT), "{cut}");
        assert_eq!(cut.chars().count(), MAX_SHOWN_CHARS + 1);
    }

    #[test]
    fn quoted_spans_of_a_message_are_bounded() {
        let value = "A".repeat(5000);
        for message in [
            format!("invalid type: string \"{value}\", expected a boolean at line 1 column 5020"),
            format!("unknown variant `{value}`, expected `push` or `pull`"),
            format!("'{value}' is not a package name (3-128 letters)"),
            format!("can't use '{value}"),
        ] {
            let bounded = bounded_text(&message, MAX_DETAIL_CHARS);
            assert!(bounded.len() < 400, "{bounded}");
            assert!(bounded.contains(&format!("{}{CUT}", "A".repeat(MAX_SHOWN_CHARS))), "{bounded}");
        }
        let message = format!("invalid type: string \"{value}\", expected a boolean");
        assert!(bounded_text(&message, MAX_DETAIL_CHARS).ends_with("\", expected a boolean"));
        // Escaped quotes inside a quoted value do not end it.
        let message = format!("string \"a\\\"{value}\" x");
        assert!(bounded_text(&message, MAX_DETAIL_CHARS).len() < 400);
        // Our own text is left alone: apostrophes in words, short quotes.
        for text in ["the service's template 'web' can't be found", "expected `a`, `b` or \"c\""] {
            assert!(matches!(bounded_text(text, MAX_DETAIL_CHARS), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn details_and_fields_are_bounded() {
        let value = "x ".repeat(1 << 20);
        let problem = Problem::new(StatusCode::BAD_REQUEST, "invalid_field", format!("bad: {value}"))
            .with_field(format!("relations.{}", "k".repeat(1 << 20)));
        assert_eq!(problem.detail.chars().count(), MAX_DETAIL_CHARS + 1);
        assert!(problem.detail.ends_with(CUT));
        assert_eq!(problem.field.as_ref().unwrap().chars().count(), MAX_SHOWN_CHARS + 1);
    }
}

/// A 1-based line and column (in characters) in a submitted text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, counted in characters.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One fault at a line:column of a submitted text, such as an identifier of a template that
/// cannot be rendered: a 422 lists every one ([`crate::platform::http::error::ApiError::Template`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TextProblem {
    /// Where.
    pub position: Position,
    /// Stable code: `malformed_identifier`, `unclosed_identifier`, `unknown_kind`,
    /// `not_associated`, `not_available`.
    pub code: &'static str,
    /// The identifier text (up to 200 characters).
    pub identifier: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for TextProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.position, self.identifier, self.message)
    }
}

/// Most text problems a 422 lists (and keeps in memory); the rest are only counted.
pub const MAX_LISTED_PROBLEMS: usize = 1000;

/// The problems of one text, in text order: the first [`MAX_LISTED_PROBLEMS`] kept, every one
/// counted. A hostile text of a million bad identifiers holds a thousand problems, not a
/// million.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextProblems {
    listed: Vec<TextProblem>,
    total: usize,
}

impl TextProblems {
    /// Adds a problem that comes after every one added so far.
    pub fn push(&mut self, problem: TextProblem) {
        self.total += 1;
        if self.listed.len() < MAX_LISTED_PROBLEMS {
            self.listed.push(problem);
        }
    }

    /// How many problems there were, listed or not.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Both lists, in text order. Each holds its own first problems, so the first
    /// [`MAX_LISTED_PROBLEMS`] of the two together are among them.
    pub fn merge(mut self, other: TextProblems) -> TextProblems {
        self.total += other.total;
        self.listed.extend(other.listed);
        self.listed.sort_by_key(|p| p.position);
        self.listed.truncate(MAX_LISTED_PROBLEMS);
        self
    }
}

impl std::ops::Deref for TextProblems {
    type Target = [TextProblem];

    fn deref(&self) -> &[TextProblem] {
        &self.listed
    }
}

#[cfg(test)]
mod text_problem_tests {
    use super::*;

    fn at(line: usize) -> TextProblem {
        TextProblem {
            position: Position { line, column: 1 },
            code: "x",
            identifier: String::new(),
            message: String::new(),
        }
    }

    #[test]
    fn a_million_problems_keep_a_thousand_and_count_the_rest() {
        let mut scanned = TextProblems::default();
        for line in (1..=1_000_000).step_by(2) {
            scanned.push(at(line));
        }
        let mut planned = TextProblems::default();
        for line in (2..=1_000_000).step_by(2) {
            planned.push(at(line));
        }
        let all = scanned.merge(planned);
        assert_eq!((all.total(), all.len()), (1_000_000, MAX_LISTED_PROBLEMS));
        let lines: Vec<usize> = all.iter().map(|p| p.position.line).collect();
        assert_eq!(lines, (1..=MAX_LISTED_PROBLEMS).collect::<Vec<_>>(), "the first thousand, in order");
    }
}
