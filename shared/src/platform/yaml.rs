//! YAML from requests (a Compute Nest `config.yaml`), parsed in time linear in its length.
//!
//! libyaml, under yaml_serde, spends time growing with the square of flow nesting
//! (`a: [[[[...]]]]`: 16,000 levels took 0.7 s, 100,000 over 3 minutes), and yaml_serde loads
//! every event of a document before its own depth limit applies. So a first pass walks libyaml's
//! events itself and stops at the first collection nested deeper than [`MAX_YAML_DEPTH`], or once
//! aliases would expand the document past [`MAX_YAML_NODES`] nodes; with the nesting bounded,
//! both passes are linear in the input. A syntax error is left to the second pass to report.

use std::collections::HashMap;
use std::ffi::CStr;
use std::mem::MaybeUninit;

use libyaml_rs as sys;
use serde::de::DeserializeOwned;

/// Deepest nesting of collections (flow `[`/`{` and block alike) accepted.
pub const MAX_YAML_DEPTH: usize = 64;
/// Most nodes a document may hold, every alias counted as the nodes it stands for.
pub const MAX_YAML_NODES: usize = 200_000;

/// Why a YAML text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    #[error("collections are nested deeper than {MAX_YAML_DEPTH} levels (line {line})")]
    TooDeep { line: u64 },
    #[error("the document holds more than {MAX_YAML_NODES} nodes, aliases expanded (line {line})")]
    TooManyNodes { line: u64 },
    #[error("{0}")]
    Syntax(String),
}

/// Parses `text` into `T` once its shape is within [`MAX_YAML_DEPTH`] and [`MAX_YAML_NODES`].
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    check_shape(text.as_bytes())?;
    yaml_serde::from_str(text).map_err(|e| YamlError::Syntax(e.to_string()))
}

/// Walks the events of `input`, refusing the first collection too deep and the first node past
/// the node limit. Linear: libyaml's cost per event grows with the open flow collections, which
/// the walk never lets pass [`MAX_YAML_DEPTH`] (plus the bounded look-ahead of its scanner).
pub fn check_shape(input: &[u8]) -> Result<(), YamlError> {
    let Some(mut events) = Events::new(input) else { return Ok(()) };
    // Open collections: the anchor each was given and the node count when it opened.
    let mut open: Vec<(Option<Vec<u8>>, usize)> = Vec::new();
    let mut anchored: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut nodes = 0usize;
    while let Some(event) = events.next() {
        match event.kind {
            Kind::Start => {
                nodes += 1;
                open.push((event.anchor, nodes - 1));
                if open.len() > MAX_YAML_DEPTH {
                    return Err(YamlError::TooDeep { line: event.line + 1 });
                }
            }
            Kind::End => {
                if let Some((Some(anchor), before)) = open.pop() {
                    anchored.insert(anchor, nodes - before);
                }
            }
            Kind::Scalar => {
                nodes += 1;
                if let Some(anchor) = event.anchor {
                    anchored.insert(anchor, 1);
                }
            }
            // An alias of an anchor still open (or unknown) counts one: yaml_serde refuses it.
            Kind::Alias => {
                nodes = nodes.saturating_add(event.anchor.and_then(|a| anchored.get(&a).copied()).unwrap_or(1))
            }
            Kind::Other => {}
        }
        if nodes > MAX_YAML_NODES {
            return Err(YamlError::TooManyNodes { line: event.line + 1 });
        }
    }
    Ok(())
}

enum Kind {
    Start,
    End,
    Scalar,
    Alias,
    Other,
}

struct Event {
    kind: Kind,
    anchor: Option<Vec<u8>>,
    line: u64,
}

/// libyaml's parser over borrowed input, stopped at the stream's end or its first error.
struct Events<'a> {
    parser: Box<MaybeUninit<sys::yaml_parser_t>>,
    done: bool,
    _input: std::marker::PhantomData<&'a [u8]>,
}

impl<'a> Events<'a> {
    fn new(input: &'a [u8]) -> Option<Self> {
        let mut parser = Box::new(MaybeUninit::<sys::yaml_parser_t>::uninit());
        // SAFETY: initialize fills the parser (on failure it owns nothing to free); the input
        // outlives it (the lifetime 'a), and the box keeps the parser at one address.
        unsafe {
            if sys::yaml_parser_initialize(parser.as_mut_ptr()).fail {
                return None;
            }
            sys::yaml_parser_set_encoding(parser.as_mut_ptr(), sys::YAML_UTF8_ENCODING);
            sys::yaml_parser_set_input_string(parser.as_mut_ptr(), input.as_ptr(), input.len() as u64);
        }
        Some(Self { parser, done: false, _input: std::marker::PhantomData })
    }

    fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        let mut event = MaybeUninit::<sys::yaml_event_t>::uninit();
        // SAFETY: the parser is initialized and not failed; a successful parse fills `event`,
        // which is read (anchors copied out) before it is deleted, once.
        unsafe {
            if sys::yaml_parser_parse(self.parser.as_mut_ptr(), event.as_mut_ptr()).fail {
                self.done = true;
                return None;
            }
            let raw = &*event.as_ptr();
            let anchor_at =
                |pointer: *const u8| (!pointer.is_null()).then(|| CStr::from_ptr(pointer.cast()).to_bytes().to_vec());
            let (kind, anchor) = match raw.type_ {
                sys::YAML_SEQUENCE_START_EVENT => (Kind::Start, anchor_at(raw.data.sequence_start.anchor)),
                sys::YAML_MAPPING_START_EVENT => (Kind::Start, anchor_at(raw.data.mapping_start.anchor)),
                sys::YAML_SEQUENCE_END_EVENT | sys::YAML_MAPPING_END_EVENT => (Kind::End, None),
                sys::YAML_SCALAR_EVENT => (Kind::Scalar, anchor_at(raw.data.scalar.anchor)),
                sys::YAML_ALIAS_EVENT => (Kind::Alias, anchor_at(raw.data.alias.anchor)),
                sys::YAML_STREAM_END_EVENT => {
                    self.done = true;
                    (Kind::Other, None)
                }
                _ => (Kind::Other, None),
            };
            let line = raw.start_mark.line;
            sys::yaml_event_delete(event.as_mut_ptr());
            Some(Event { kind, anchor, line })
        }
    }
}

impl Drop for Events<'_> {
    fn drop(&mut self) {
        // SAFETY: built only by `new`, after a successful initialize.
        unsafe { sys::yaml_parser_delete(self.parser.as_mut_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn value(text: &str) -> Result<yaml_serde::Value, YamlError> {
        parse(text)
    }

    #[test]
    fn ordinary_yaml_parses_as_yaml_serde_parses_it() {
        for text in [
            "a: 1\nb: [x, {y: z}]\nc: |\n  [[[ not structure\n",
            "Service:\n  DeployMetadata:\n    TemplateConfigs:\n      - Name: t\n        Url: t.yaml\n",
            "base: &b {k: v}\nuse: *b\n",
            "",
            "- - - - x\n",
        ] {
            assert_eq!(value(text).unwrap(), yaml_serde::from_str::<yaml_serde::Value>(text).unwrap(), "{text}");
        }
        assert!(matches!(value("a: [unclosed"), Err(YamlError::Syntax(_))));
    }

    #[test]
    fn nesting_at_the_limit_parses_and_one_more_level_is_refused() {
        // The mapping `a:` is one level, the sequences the rest.
        let at = format!("a: {}{}", "[".repeat(MAX_YAML_DEPTH - 1), "]".repeat(MAX_YAML_DEPTH - 1));
        assert!(check_shape(at.as_bytes()).is_ok());
        let over = format!("a: {}{}", "[".repeat(MAX_YAML_DEPTH), "]".repeat(MAX_YAML_DEPTH));
        assert_eq!(check_shape(over.as_bytes()), Err(YamlError::TooDeep { line: 1 }));
        let block: String = (0..=MAX_YAML_DEPTH).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        assert!(matches!(check_shape(block.as_bytes()), Err(YamlError::TooDeep { .. })));
    }

    #[test]
    fn deep_nesting_is_refused_in_linear_time() {
        // 200,000 levels (about 400 KB) took libyaml minutes; refused here in milliseconds,
        // however the levels are spread over lines and kinds.
        let depth = 200_000;
        for text in [
            format!("a: {}{}", "[".repeat(depth), "]".repeat(depth)),
            format!("a: {}", "[\n".repeat(depth)),
            format!("a: {}", "{a: ".repeat(depth)),
            format!("{}x", "- ".repeat(depth)),
        ] {
            let started = Instant::now();
            assert!(matches!(value(&text), Err(YamlError::TooDeep { .. })), "{}", &text[..20]);
            // Generous: a debug build on a loaded machine.
            assert!(started.elapsed() < Duration::from_secs(2), "{:?} for {}", started.elapsed(), &text[..20]);
        }
    }

    #[test]
    fn aliases_that_expand_past_the_node_limit_are_refused() {
        // Each level aliases the one before ten times: 10^6 nodes from a few hundred bytes.
        let mut text = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..=6 {
            let previous = format!("*l{}", level - 1);
            text.push_str(&format!("l{level}: &l{level} [{}]\n", [previous.as_str(); 10].join(", ")));
        }
        assert!(matches!(check_shape(text.as_bytes()), Err(YamlError::TooManyNodes { .. })));
        assert!(check_shape(b"a: &a [x, y]\nb: [*a, *a]\n").is_ok());
    }
}
