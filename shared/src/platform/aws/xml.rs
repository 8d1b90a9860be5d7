//! Reading the awsQuery protocol's XML answers with `quick-xml`, bounded in depth: a walk
//! that hands each element's end to the caller with its path and, for an element without
//! children, its decoded text.

use quick_xml::events::Event;

/// Deepest element nesting read (AWS's answers nest about ten deep).
pub const MAX_DEPTH: usize = 32;

/// Why an answer is not XML that can be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Not well-formed XML, or not UTF-8 text.
    #[error("an answer that is not XML ({0})")]
    Malformed(String),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("an answer nested deeper than {MAX_DEPTH} elements")]
    TooDeep,
    /// An entity other than XML's five and character references.
    #[error("an answer with an unknown entity '&{0};'")]
    Entity(String),
}

fn malformed(error: &dyn std::error::Error) -> XmlError {
    XmlError::Malformed(error.to_string())
}

/// Walks `xml`, calling `on_end(path, text)` as each element ends: `path` is the local names
/// from the root to it, `text` its text when it has no child element (`None` otherwise).
pub fn walk(xml: &str, mut on_end: impl FnMut(&[String], Option<String>)) -> Result<(), XmlError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    // The text of the innermost open element, while it has had no child.
    let mut text: Option<String> = None;
    loop {
        match reader.read_event().map_err(|e| malformed(&e))? {
            Event::Start(start) => {
                if path.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let name = std::str::from_utf8(start.local_name().as_ref()).map_err(|e| malformed(&e))?.to_owned();
                path.push(name);
                text = Some(String::new());
            }
            Event::Empty(empty) => {
                if path.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let name = std::str::from_utf8(empty.local_name().as_ref()).map_err(|e| malformed(&e))?.to_owned();
                path.push(name);
                on_end(&path, Some(String::new()));
                path.pop();
                text = None;
            }
            Event::Text(part) => {
                if let Some(text) = text.as_mut() {
                    text.push_str(&part.decode().map_err(|e| malformed(&e))?);
                }
            }
            Event::CData(part) => {
                if let Some(text) = text.as_mut() {
                    text.push_str(&part.decode().map_err(|e| malformed(&e))?);
                }
            }
            Event::GeneralRef(entity) => {
                if let Some(text) = text.as_mut() {
                    match entity.resolve_char_ref().map_err(|e| malformed(&e))? {
                        Some(c) => text.push(c),
                        None => {
                            let entity = entity.decode().map_err(|e| malformed(&e))?;
                            let resolved = quick_xml::escape::resolve_predefined_entity(&entity)
                                .ok_or_else(|| XmlError::Entity(entity.into_owned()))?;
                            text.push_str(resolved);
                        }
                    }
                }
            }
            Event::End(_) => {
                on_end(&path, text.take());
                path.pop();
            }
            Event::Eof => return Ok(()),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// Whether `path` is `expected`, compared by name.
pub fn is(path: &[String], expected: &[&str]) -> bool {
    path.len() == expected.len() && path.iter().zip(expected).all(|(a, b)| a == b)
}

/// Whether `path` starts with `prefix`; answers the rest.
pub fn under<'a>(path: &'a [String], prefix: &[&str]) -> Option<&'a [String]> {
    let (head, rest) = path.split_at_checked(prefix.len())?;
    head.iter().zip(prefix).all(|(a, b)| a == b).then_some(rest)
}

/// The code and message of an error answer (`<ErrorResponse><Error><Code>…<Message>…`, or
/// `<Response><Errors><Error>…` as some services and moto write it), if it is one.
pub fn error_of(xml: &str) -> Option<(String, String)> {
    let mut found: Option<(String, String)> = None;
    walk(xml, |path, text| {
        let Some((leaf, parent)) = path.split_last() else { return };
        if parent.last().map(String::as_str) != Some("Error") {
            return;
        }
        match (leaf.as_str(), text) {
            ("Code", Some(code)) => found.get_or_insert_default().0 = code,
            ("Message", Some(message)) => found.get_or_insert_default().1 = message,
            _ => {}
        }
    })
    .ok()?;
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(xml: &str) -> Result<Vec<(String, Option<String>)>, XmlError> {
        let mut out = Vec::new();
        walk(xml, |path, text| out.push((path.join("/"), text)))?;
        Ok(out)
    }

    #[test]
    fn leaves_come_with_their_path_and_decoded_text() {
        let xml = r#"<?xml version="1.0"?><R xmlns="x"><a>1 &amp; &lt;2&gt; &#x263A;</a><b><c><![CDATA[<d>]]></c><e/></b></R>"#;
        assert_eq!(
            leaves(xml).unwrap(),
            [
                ("R/a".to_owned(), Some("1 & <2> \u{263A}".to_owned())),
                ("R/b/c".to_owned(), Some("<d>".to_owned())),
                ("R/b/e".to_owned(), Some(String::new())),
                ("R/b".to_owned(), None),
                ("R".to_owned(), None),
            ]
        );
    }

    #[test]
    fn anything_else_is_refused_without_reading_it_all() {
        assert!(leaves("<a></b>").is_err());
        let deep = format!("<R>{}", "<a>".repeat(100_000));
        assert_eq!(leaves(&deep), Err(XmlError::TooDeep));
        let empty_deep = format!("{}<e/>", "<a>".repeat(MAX_DEPTH));
        assert_eq!(leaves(&empty_deep), Err(XmlError::TooDeep));
        assert_eq!(leaves("<a>&bomb;</a>"), Err(XmlError::Entity("bomb".into())));
    }

    #[test]
    fn error_answers_give_their_code_and_message() {
        let aws = "<ErrorResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\"><Error><Type>Sender</Type>\
                   <Code>ValidationError</Code><Message>Group &apos;web&apos; not found</Message></Error>\
                   <RequestId>r</RequestId></ErrorResponse>";
        assert_eq!(error_of(aws), Some(("ValidationError".into(), "Group 'web' not found".into())));
        let ec2_style = "<Response><Errors><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></Errors></Response>";
        assert_eq!(error_of(ec2_style), Some(("Throttling".into(), "Rate exceeded".into())));
        assert_eq!(error_of("<DescribeAlarmsResponse/>"), None);
        assert_eq!(error_of("not xml <"), None);
    }

    #[test]
    fn paths_compare_by_name() {
        let path: Vec<String> = ["A", "B", "C"].map(str::to_owned).to_vec();
        assert!(is(&path, &["A", "B", "C"]));
        assert!(!is(&path, &["A", "B"]));
        assert_eq!(under(&path, &["A", "B"]).map(|rest| rest.len()), Some(1));
        assert_eq!(under(&path, &["A", "X"]), None);
        assert_eq!(under(&path, &["A", "B", "C", "D"]), None);
    }
}
