//! Credentials: temporary registry keys, the scopes they grant, the registry tokens the token
//! endpoint signs for them, and the download tokens in rendered file URLs.

pub mod registry_token;
pub mod scope;
pub mod temporary_key;
