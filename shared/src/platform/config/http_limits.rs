//! The HTTP server's limits (`BERTH_HTTP_*`).

use super::*;

/// Bounds on what HTTP clients may hold (see `platform::serve`): a client that sends its
/// headers or its body slowly, or does not read its answer, is cut off; one address holds a share
/// of the connections only; past the limit, idle and unauthenticated connections make room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// `BERTH_HTTP_HEADER_TIMEOUT_SECONDS` (10): a request's headers must arrive within it; also
    /// how long an idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// `BERTH_HTTP_BODY_TIMEOUT_SECONDS` (30): longest wait for the next part of a request body.
    pub body_idle_timeout: Duration,
    /// `BERTH_HTTP_REQUEST_TIMEOUT_SECONDS` (120): an authenticated request's whole body must
    /// arrive within it of its headers (a 408 otherwise).
    pub request_timeout: Duration,
    /// `BERTH_HTTP_ANONYMOUS_REQUEST_TIMEOUT_SECONDS` (10): the same for a request whose
    /// credential is not (yet) verified, whose bodies are small.
    pub anonymous_request_timeout: Duration,
    /// `BERTH_HTTP_WRITE_TIMEOUT_SECONDS` (30): an answer the client takes nothing of for this
    /// long is dropped with its connection.
    pub write_timeout: Duration,
    /// `BERTH_HTTP_MAX_CONNECTIONS` (4096): open connections served at once (at most what the
    /// open-files limit, raised to its hard limit, leaves). 2,000 registry clients keeping their
    /// connections alive must fit under 7/8 of it, where idle ones begin to be closed (their next
    /// request racing the close).
    pub max_connections: usize,
    /// `BERTH_HTTP_MAX_CONNECTIONS_PER_ADDRESS` (256): open connections of one client address.
    pub max_connections_per_address: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            anonymous_request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_address: 256,
        }
    }
}

impl HttpLimits {
    /// The limits from `BERTH_HTTP_*` (defaults above).
    pub(super) fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let seconds = |variable: &'static str, default: u32, range: std::ops::RangeInclusive<u32>| {
            parse_number(get, variable, default, range).map(|n| Duration::from_secs(u64::from(n)))
        };
        Ok(Self {
            header_read_timeout: seconds("BERTH_HTTP_HEADER_TIMEOUT_SECONDS", 10, 1..=300)?,
            body_idle_timeout: seconds("BERTH_HTTP_BODY_TIMEOUT_SECONDS", 30, 1..=3600)?,
            request_timeout: seconds("BERTH_HTTP_REQUEST_TIMEOUT_SECONDS", 120, 1..=3600)?,
            anonymous_request_timeout: seconds("BERTH_HTTP_ANONYMOUS_REQUEST_TIMEOUT_SECONDS", 10, 1..=300)?,
            write_timeout: seconds("BERTH_HTTP_WRITE_TIMEOUT_SECONDS", 30, 1..=3600)?,
            max_connections: parse_number(get, "BERTH_HTTP_MAX_CONNECTIONS", 4096, 1..=65_536)? as usize,
            max_connections_per_address: parse_number(get, "BERTH_HTTP_MAX_CONNECTIONS_PER_ADDRESS", 256, 1..=65_536)?
                as usize,
        })
    }
}
