//! The rules a package request must follow, each refusal naming the field at fault.

use std::collections::BTreeSet;

use super::*;
use crate::names::AccountId;
use crate::platform::http::error::ApiError;

/// A validated package request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPackage {
    /// The package document to create (with `next_version_number` already past the first).
    pub package: Package,
    /// Its first version.
    pub version: PackageVersion,
}

fn invalid(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(field, code, message)
}

/// Checks a length in characters against inclusive bounds.
fn check_length(field: &str, value: &str, (min, max): (usize, usize)) -> Result<(), ApiError> {
    let length = value.chars().count();
    if length < min || length > max {
        return Err(invalid(
            field,
            "invalid_length",
            format!("{field} must be {min} to {max} characters (got {length})"),
        ));
    }
    Ok(())
}

fn is_word(value: &str) -> bool {
    value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Validates a package name: 3..=128 letters, digits and `_`.
pub fn validate_package_name(field: &str, name: &str) -> Result<(), ApiError> {
    check_length(field, name, NAME_LEN)?;
    if !is_word(name) {
        return Err(invalid(field, "invalid_characters", format!("{field} may contain only letters, digits and '_'")));
    }
    Ok(())
}

/// Validates a version name: 3..=50 letters, digits and `_`.
pub fn validate_version_name(field: &str, name: &str) -> Result<(), ApiError> {
    check_length(field, name, VERSION_LEN)?;
    if !is_word(name) {
        return Err(invalid(field, "invalid_characters", format!("{field} may contain only letters, digits and '_'")));
    }
    Ok(())
}

/// Validates the name of a version being created through Berth's own API: a valid name, and
/// not [`DRAFT_VERSION`], which only the Compute Nest API makes.
pub fn validate_new_version_name(field: &str, name: &str) -> Result<(), ApiError> {
    validate_version_name(field, name)?;
    if name == DRAFT_VERSION {
        return Err(invalid(field, "reserved_name", format!("'{DRAFT_VERSION}' is the Compute Nest draft's name")));
    }
    Ok(())
}

/// Validates a description: 10..=500 characters, no control characters but newlines.
pub fn validate_description(description: &str) -> Result<(), ApiError> {
    check_length("description", description, DESCRIPTION_LEN)?;
    if description.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(invalid("description", "invalid_characters", "description may not contain control characters"));
    }
    Ok(())
}

/// Validates tags: at most 20, keys 1..=128 and unique, values up to 128, no `acs:`/`aliyun`
/// prefixes (reserved, as in Alibaba Cloud tagging).
pub fn validate_tags(tags: &[Tag]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(invalid("tags", "too_many", format!("at most {MAX_TAGS} tags (got {})", tags.len())));
    }
    let mut seen = BTreeSet::new();
    for (i, tag) in tags.iter().enumerate() {
        let key_len = tag.key.chars().count();
        if key_len == 0 || key_len > MAX_TAG_KEY {
            return Err(invalid(
                format!("tags[{i}].key"),
                "invalid_length",
                format!("tag keys are 1 to {MAX_TAG_KEY} characters"),
            ));
        }
        if tag.key.starts_with("acs:") || tag.key.starts_with("aliyun") {
            return Err(invalid(
                format!("tags[{i}].key"),
                "reserved",
                "tag keys may not start with 'acs:' or 'aliyun'",
            ));
        }
        if tag.value.chars().count() > MAX_TAG_VALUE {
            return Err(invalid(
                format!("tags[{i}].value"),
                "invalid_length",
                format!("tag values are at most {MAX_TAG_VALUE} characters"),
            ));
        }
        if tag.key.chars().chain(tag.value.chars()).any(char::is_control) {
            return Err(invalid(format!("tags[{i}]"), "invalid_characters", "tags may not contain control characters"));
        }
        if !seen.insert(tag.key.as_str()) {
            return Err(invalid(format!("tags[{i}].key"), "duplicate", format!("tag key '{}' appears twice", tag.key)));
        }
    }
    Ok(())
}

pub fn validate_resource_group(group: &str) -> Result<(), ApiError> {
    let ok = !group.is_empty()
        && group.len() <= MAX_RESOURCE_GROUP
        && group.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(invalid(
            "resource_group",
            "invalid_resource_group",
            format!("resource_group is 1 to {MAX_RESOURCE_GROUP} letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// Validates a `client_token`: 1..=64 visible ASCII characters.
pub fn validate_client_token(field: &str, token: &str) -> Result<(), ApiError> {
    if token.is_empty() || token.len() > MAX_CLIENT_TOKEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            field,
            "invalid_client_token",
            format!("client_token is 1 to {MAX_CLIENT_TOKEN} visible ASCII characters"),
        ));
    }
    Ok(())
}

/// Whether `tag` follows the distribution tag grammar.
pub fn is_image_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_IMAGE_TAG
        && bytes.first().is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn validate_image(field: &str, spec: &ImageSpec, account: &AccountId) -> Result<ImageRecord, ApiError> {
    let repository = RepositoryName::parse(&spec.repository).map_err(|e| {
        invalid(
            format!("{field}.repository"),
            "invalid_repository",
            format!("{e} (give the full name, e.g. {account}/app)"),
        )
    })?;
    if repository.is_namespace_root(account) {
        return Err(invalid(
            format!("{field}.repository"),
            "repository_is_namespace",
            format!("'{repository}' is your namespace itself; images live below it, e.g. {account}/app"),
        ));
    }
    if !repository.is_in(account) {
        return Err(invalid(
            format!("{field}.repository"),
            "outside_namespace",
            format!("'{repository}' is outside your namespace '{account}': images must be pushed to {account}/..."),
        ));
    }
    if !is_image_tag(&spec.tag) {
        return Err(invalid(
            format!("{field}.tag"),
            "invalid_tag",
            format!("tags are 1 to {MAX_IMAGE_TAG} letters, digits, '_', '.' or '-', not starting with '.' or '-'"),
        ));
    }
    Ok(ImageRecord::unchecked(repository, &spec.tag))
}

fn validate_file_name(field: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_FILE_NAME
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !ok {
        return Err(invalid(
            field,
            "invalid_file_name",
            format!("file names are 1 to {MAX_FILE_NAME} letters, digits, '_', '.' or '-'"),
        ));
    }
    Ok(())
}

/// Validates a version's content against the package type; `prefix` names the request field
/// holding the version (`version.` in a package create, empty in a version create).
pub fn validate_version(
    prefix: &str,
    spec: &VersionSpec,
    package: &str,
    package_type: PackageType,
    number: u32,
    account: &AccountId,
    now: &str,
) -> Result<PackageVersion, ApiError> {
    validate_new_version_name(&format!("{prefix}name"), &spec.name)?;
    validate_content(prefix, spec, package, package_type, number, account, now)
}

/// Validates a version's content against the package type, as [`validate_version`] does, but
/// not its name (which the caller chose: the Compute Nest draft's is [`DRAFT_VERSION`]).
pub fn validate_content(
    prefix: &str,
    spec: &VersionSpec,
    package: &str,
    package_type: PackageType,
    number: u32,
    account: &AccountId,
    now: &str,
) -> Result<PackageVersion, ApiError> {
    let field = |name: &str| format!("{prefix}{name}");
    let only = |name: &str, for_type: &str| {
        invalid(field(name), "not_for_type", format!("{} is only for {for_type} packages", field(name)))
    };
    let mut images = Vec::new();
    let mut file = None;
    match package_type {
        PackageType::ContainerImage => {
            if spec.chart.is_some() {
                return Err(only("chart", "HelmChart"));
            }
            if spec.file_name.is_some() {
                return Err(only("file_name", "File"));
            }
            let list = spec.images.as_deref().unwrap_or_default();
            if list.is_empty() {
                return Err(invalid(field("images"), "required", "a ContainerImage version needs at least one image"));
            }
            if list.len() > MAX_IMAGES {
                return Err(invalid(field("images"), "too_many", format!("at most {MAX_IMAGES} images per version")));
            }
            for (i, spec) in list.iter().enumerate() {
                let record = validate_image(&field(&format!("images[{i}]")), spec, account)?;
                if images.iter().any(|r: &ImageRecord| r.repository == record.repository && r.tag == record.tag) {
                    return Err(invalid(field(&format!("images[{i}]")), "duplicate", "the same image appears twice"));
                }
                images.push(record);
            }
        }
        PackageType::HelmChart => {
            if spec.images.is_some() {
                return Err(only("images", "ContainerImage"));
            }
            if spec.file_name.is_some() {
                return Err(only("file_name", "File"));
            }
            let chart = spec
                .chart
                .as_ref()
                .ok_or_else(|| invalid(field("chart"), "required", "a HelmChart version needs its chart"))?;
            images.push(validate_image(&field("chart"), chart, account)?);
        }
        PackageType::File => {
            if spec.images.is_some() {
                return Err(only("images", "ContainerImage"));
            }
            if spec.chart.is_some() {
                return Err(only("chart", "HelmChart"));
            }
            let name = spec
                .file_name
                .as_deref()
                .ok_or_else(|| invalid(field("file_name"), "required", "a File version needs its file_name"))?;
            validate_file_name(&field("file_name"), name)?;
            file = Some(FileRecord { file_name: name.to_owned(), size: None, digest: None });
        }
    }
    Ok(PackageVersion {
        package: package.to_owned(),
        version: spec.name.clone(),
        number,
        package_type,
        status: VersionStatus::Creating,
        images,
        file,
        reason: None,
        label: None,
        created_at: now.to_owned(),
        updated_at: now.to_owned(),
        untrusted: None,
    })
}

/// The rules of a `POST /v1/packages` body (a trait: the body is a wire type of `berth-api`).
pub trait CreatePackageRules {
    /// Checks every rule, naming the field at fault. `now` is RFC 3339.
    fn validate(&self, account: &AccountId, now: &str) -> Result<ValidPackage, ApiError>;
}

impl CreatePackageRules for CreatePackageRequest {
    fn validate(&self, account: &AccountId, now: &str) -> Result<ValidPackage, ApiError> {
        validate_package_name("name", &self.name)?;
        validate_description(&self.description)?;
        let resource_group = self.resource_group.clone().unwrap_or_else(|| DEFAULT_RESOURCE_GROUP.to_owned());
        validate_resource_group(&resource_group)?;
        validate_tags(&self.tags)?;
        if let Some(token) = &self.client_token {
            validate_client_token("client_token", token)?;
        }
        let version = validate_version("version.", &self.version, &self.name, self.package_type, 1, account, now)?;
        let package = Package {
            name: self.name.clone(),
            description: self.description.clone(),
            resource_group,
            tags: self.tags.clone(),
            package_type: self.package_type,
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
            next_version_number: 2,
            deleting: false,
            require_signature: self.require_signature,
        };
        Ok(ValidPackage { package, version })
    }
}

/// The rules of a `PATCH /v1/packages/{name}` body.
pub trait UpdatePackageRules {
    /// Checks the fields given and applies them to `package`.
    fn apply(&self, package: &mut Package, now: &str) -> Result<(), ApiError>;
}

impl UpdatePackageRules for UpdatePackageRequest {
    fn apply(&self, package: &mut Package, now: &str) -> Result<(), ApiError> {
        if self.description.is_none() && self.tags.is_none() && self.require_signature.is_none() {
            return Err(invalid("body", "empty_update", "give description, tags and/or require_signature to change"));
        }
        if let Some(required) = self.require_signature {
            package.require_signature = Some(required);
        }
        if let Some(description) = &self.description {
            validate_description(description)?;
            package.description = description.clone();
        }
        if let Some(tags) = &self.tags {
            validate_tags(tags)?;
            package.tags = tags.clone();
        }
        package.updated_at = now.to_owned();
        Ok(())
    }
}

/// Settles a `Creating` version from its per-image checks: `Available` when every image
/// passed, else `Failed` with a one-line reason naming each failure.
pub fn settle(version: &mut PackageVersion, checked: Vec<ImageRecord>, now: &str) {
    let failures: Vec<String> = checked
        .iter()
        .filter_map(|image| image.failure.as_ref().map(|f| format!("{}:{}: {}", image.repository, image.tag, f.code)))
        .collect();
    version.images = checked;
    version.updated_at = now.to_owned();
    if failures.is_empty() {
        version.status = VersionStatus::Available;
        version.reason = None;
    } else {
        version.status = VersionStatus::Failed;
        version.reason = Some(failures.join("; "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountId {
        AccountId::parse("acme").unwrap()
    }

    fn request(json: serde_json::Value) -> Result<ValidPackage, ApiError> {
        let request: CreatePackageRequest =
            serde_json::from_value(json).map_err(|e| ApiError::invalid("body", "x", e.to_string()))?;
        request.validate(&account(), "2026-11-24T00:00:00Z")
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "name": "web_app", "description": "a web application", "type": "ContainerImage",
            "version": { "name": "v_1", "images": [{ "repository": "acme/web", "tag": "v1" }] }
        })
    }

    fn field_of(result: Result<ValidPackage, ApiError>) -> String {
        match result {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_validates() {
        let valid = request(base()).unwrap();
        assert_eq!(valid.version.status, VersionStatus::Creating);
        assert_eq!(valid.version.number, 1);
        assert_eq!(valid.package.resource_group, DEFAULT_RESOURCE_GROUP);
        assert_eq!(valid.version.images[0].repository.as_str(), "acme/web");
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("/name", serde_json::json!("ab"), "name"),
            ("/name", serde_json::json!("a".repeat(129)), "name"),
            ("/name", serde_json::json!("web-app"), "name"),
            ("/description", serde_json::json!("too short"), "description"),
            ("/version/name", serde_json::json!("v1"), "version.name"),
            ("/version/images/0/repository", serde_json::json!("other/web"), "version.images[0].repository"),
            ("/version/images/0/repository", serde_json::json!("acme12/web"), "version.images[0].repository"),
            ("/version/images/0/repository", serde_json::json!("acme/../x"), "version.images[0].repository"),
            ("/version/images/0/tag", serde_json::json!("-bad"), "version.images[0].tag"),
            ("/version/images", serde_json::json!([]), "version.images"),
            ("/resource_group", serde_json::json!("a b"), "resource_group"),
            ("/client_token", serde_json::json!(""), "client_token"),
        ];
        for (pointer, value, field) in cases {
            let mut body = base();
            match body.pointer_mut(pointer) {
                Some(slot) => *slot = value,
                None => body[&pointer[1..]] = value,
            }
            assert_eq!(field_of(request(body)), field, "{pointer}");
        }
    }

    #[test]
    fn the_draft_name_is_left_to_compute_nest() {
        let mut body = base();
        body["version"]["name"] = "draft".into();
        assert!(matches!(request(body), Err(ApiError::Invalid { code: "reserved_name", .. })));
        let spec: VersionSpec = serde_json::from_value(base()["version"].clone()).unwrap();
        let draft = VersionSpec { name: DRAFT_VERSION.into(), ..spec };
        let version = validate_content("", &draft, "web_app", PackageType::ContainerImage, 1, &account(), "t").unwrap();
        assert_eq!(version.images[0].repository.as_str(), "acme/web");
    }

    #[test]
    fn tags_are_bounded_and_unique() {
        let tags = |n: usize| (0..n).map(|i| Tag { key: format!("k{i}"), value: "v".into() }).collect::<Vec<_>>();
        assert!(validate_tags(&tags(20)).is_ok());
        assert!(validate_tags(&tags(21)).is_err());
        let twice = vec![Tag { key: "a".into(), value: String::new() }, Tag { key: "a".into(), value: "x".into() }];
        assert!(matches!(validate_tags(&twice), Err(ApiError::Invalid { field, .. }) if field == "tags[1].key"));
    }

    #[test]
    fn content_must_match_the_type() {
        let mut body = base();
        body["type"] = "HelmChart".into();
        assert_eq!(field_of(request(body)), "version.images");
        let mut body = base();
        body["type"] = "File".into();
        body["version"] = serde_json::json!({ "name": "v_1", "file_name": "../etc" });
        assert_eq!(field_of(request(body)), "version.file_name");
    }

    #[test]
    fn settle_is_available_only_when_every_image_passed() {
        let mut version = request(base()).unwrap().version;
        let mut image = version.images[0].clone();
        image.digest = Some("sha256:00".into());
        settle(&mut version, vec![image.clone()], "t");
        assert_eq!(version.status, VersionStatus::Available);
        image.failure = Some(ImageFailure { code: "not_found".into(), message: "no such tag".into() });
        settle(&mut version, vec![image], "t");
        assert_eq!(version.status, VersionStatus::Failed);
        assert_eq!(version.reason.as_deref(), Some("acme/web:v1: not_found"));
    }
}
