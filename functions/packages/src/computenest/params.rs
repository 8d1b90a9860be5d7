//! The parameters of a Compute Nest call: the decoded query, read as the SDK flattens it
//! (`Name`, `List.1`, `Filter.1.Values.2`, JSON-string fields). Unknown parameters are ignored;
//! a missing required one is `MissingParameter`, a bad value `InvalidParameter`, both naming it.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use super::error::CnError;

/// Longest list (`X.1` .. `X.n`) read.
pub const MAX_LIST: usize = 100;

/// The parameters of one call.
pub struct Params(pub BTreeMap<String, String>);

impl Params {
    /// A parameter, `None` if absent or empty (the SDK sends absent optionals as nothing, and
    /// computenest-cli sends some as empty strings).
    pub fn optional(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A required parameter.
    pub fn required(&self, name: &str) -> Result<&str, CnError> {
        self.optional(name).ok_or_else(|| CnError::missing(name))
    }

    /// An optional integer within bounds.
    pub fn integer(&self, name: &str, (min, max): (u64, u64)) -> Result<Option<u64>, CnError> {
        let Some(text) = self.optional(name) else { return Ok(None) };
        match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(CnError::invalid(name, format!("must be an integer from {min} to {max}"))),
        }
    }

    /// An optional JSON-string parameter (`ArtifactProperty`, `Filters`, ...).
    pub fn json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, CnError> {
        let Some(text) = self.optional(name) else { return Ok(None) };
        serde_json::from_str(text).map(Some).map_err(|e| CnError::invalid(name, format!("not the JSON expected: {e}")))
    }

    /// A flattened list `name.1`, `name.2`, ... (in order, stopping at the first gap).
    pub fn list(&self, name: &str) -> Vec<&str> {
        (1..=MAX_LIST).map_while(|i| self.0.get(&format!("{name}.{i}")).map(String::as_str)).collect()
    }

    /// Flattened filters `Filter.N.Name` with `Filter.N.Values.M`: (name, values).
    pub fn filters(&self, name: &str) -> Vec<(&str, Vec<&str>)> {
        (1..=MAX_LIST)
            .map_while(|i| {
                let key = self.0.get(&format!("{name}.{i}.Name"))?;
                Some((key.as_str(), self.list(&format!("{name}.{i}.Values"))))
            })
            .collect()
    }

    /// Flattened tags `Tag.N.Key` / `Tag.N.Value`.
    pub fn tags(&self, name: &str) -> Vec<(&str, &str)> {
        (1..=MAX_LIST)
            .map_while(|i| {
                let key = self.0.get(&format!("{name}.{i}.Key"))?;
                let value = self.0.get(&format!("{name}.{i}.Value")).map_or("", String::as_str);
                Some((key.as_str(), value))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn flattened_lists_and_filters_read_as_the_sdk_writes_them() {
        let p = params(&[
            ("Filter.1.Name", "Name"),
            ("Filter.1.Values.1", "a"),
            ("Filter.1.Values.2", "b"),
            ("Filter.2.Name", "Type"),
            ("SupportRegionIds.1", "cn-hangzhou"),
            ("MaxResults", "500"),
            ("Empty", ""),
        ]);
        assert_eq!(p.filters("Filter"), vec![("Name", vec!["a", "b"]), ("Type", vec![])]);
        assert_eq!(p.list("SupportRegionIds"), vec!["cn-hangzhou"]);
        assert_eq!(p.optional("Empty"), None);
        assert_eq!(p.required("Empty").unwrap_err().code, "MissingParameter");
        assert_eq!(p.integer("MaxResults", (1, 100)).unwrap_err().code, "InvalidParameter");
    }
}
