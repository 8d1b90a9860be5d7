//! Paged listings, newest first: `page_size` (1 to [`MAX_PAGE_SIZE`]) and an opaque
//! `page_token` the previous page answered as `next_page_token`, as the packages function does.

use super::*;

/// Largest page of a listing.
pub const MAX_PAGE_SIZE: usize = 100;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: usize = 20;
/// Most applications per account, and groups or deployments per application: a listing
/// orders them by creation and so reads them all.
pub const MAX_CHILDREN: usize = 1000;
/// Most revisions a deployment keeps readable.
pub const MAX_REVISIONS: u64 = 10_000;

/// Validates a page size (absent: the default).
pub fn page_size(size: Option<usize>) -> Result<usize, ApiError> {
    let size = size.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(ApiError::invalid("page_size", "out_of_range", format!("page_size must be 1 to {MAX_PAGE_SIZE}")));
    }
    Ok(size)
}

/// The sort key of an item listed newest first: later creation first, then by name.
pub fn newest_key(created_at: u64, name: &str) -> String {
    format!("{:020}.{name}", u64::MAX - created_at)
}

/// One page of items whose keys sort in listing order (e.g. [`newest_key`]): those after
/// `token`, at most `size`, and the token of the next page (`None` on the last).
pub fn page<T>(mut items: Vec<(String, T)>, token: Option<&str>, size: usize) -> (Vec<T>, Option<String>) {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rest: Vec<(String, T)> =
        items.into_iter().filter(|(key, _)| token.is_none_or(|t| key.as_str() > t)).collect();
    let more = rest.len() > size;
    rest.truncate(size);
    let next = if more { rest.last().map(|(key, _)| key.clone()) } else { None };
    (rest.into_iter().map(|(_, item)| item).collect(), next)
}

/// Checks a page token's shape: one this API answered (printable, short), else the field at fault.
pub fn validate_page_token(token: Option<&str>) -> Result<(), ApiError> {
    match token {
        Some(t) if t.is_empty() || t.len() > 300 || !t.bytes().all(|b| b.is_ascii_graphic()) => {
            Err(ApiError::invalid("page_token", "invalid_page_token", "not a token this listing answered"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_run_newest_first_to_the_end_without_repeats() {
        let items: Vec<(String, u64)> = (0..7u64).map(|i| (newest_key(100 + i / 2, &format!("n{i}")), i)).collect();
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (items, next) = page(items.clone(), token.as_deref(), 3);
            seen.extend(items);
            match next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, [6, 4, 5, 2, 3, 0, 1], "newest first, names in order within a second");
        assert_eq!(page(items.clone(), None, 7).1, None, "an exact last page has no next");
        assert!(matches!(page_size(Some(0)), Err(ApiError::Invalid { .. })));
        assert!(matches!(page_size(Some(MAX_PAGE_SIZE + 1)), Err(ApiError::Invalid { .. })));
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE_SIZE);
        assert!(validate_page_token(Some("a b")).is_err() && validate_page_token(Some("x.y")).is_ok());
    }
}
