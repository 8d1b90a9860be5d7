//! The `.dockerconfigjson` both kinds of pull credential are handed out as (a temporary key's,
//! an instance credential's): what `docker login` writes and a Kubernetes pull Secret holds.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

/// base64 of a docker config with one registry's credentials.
pub fn dockerconfigjson(registry: &str, username: &str, password: &str) -> String {
    let auth = STANDARD.encode(format!("{username}:{password}"));
    let config = json!({ "auths": { registry: { "username": username, "password": password, "auth": auth } } });
    STANDARD.encode(config.to_string())
}
