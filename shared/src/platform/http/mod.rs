//! HTTP at the boundary: the one error type and its problem+json documents, extractors that
//! answer problems, and the account token callers present.

pub mod account;
pub mod error;
#[cfg(any(test, feature = "testing"))]
pub mod in_process;
pub mod problem;
pub mod request;
