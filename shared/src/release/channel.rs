//! The wake channel: the one WebSocket each agent holds to Berth. Berth only ever says "wake"
//! on it (no job, no secret: the agent then fetches its job with a short poll); the agent only
//! says "ping", which keeps its `last_seen`.

use serde::{Deserialize, Serialize};

/// Where an agent opens its channel (`GET`, upgraded to a WebSocket, with its host token).
pub const CHANNEL_PATH: &str = "/v1/agent/channel";

/// How often an agent pings on its channel: its `last_seen` is written at most once a minute,
/// and a host unseen for `MIN_STALE_AFTER_SECONDS` (120) counts as stale.
pub const HEARTBEAT_SECONDS: u64 = 60;

/// Longest message either side sends on the channel; anything longer is refused unread.
pub const MAX_CHANNEL_MESSAGE_BYTES: usize = 1024;

/// What Berth sends an agent on its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToAgent {
    /// A job may be due: poll for it now.
    Wake,
}

/// What an agent sends Berth on its channel. Tagged `action`, which API Gateway's route
/// selection (`$request.body.action`) reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FromAgent {
    /// The agent is alive: its `last_seen` moves on (at most one write a minute).
    Ping,
}

/// Close code of a channel whose host token no longer acts for its host (removed, or
/// registered again): the agent stops using that token.
pub const CLOSE_REFUSED: u16 = 4401;

#[cfg(test)]
mod tests {
    use super::*;

    /// Agents in the field and API Gateway's route selection read these bytes.
    #[test]
    fn the_channel_messages_are_stable_on_the_wire() {
        assert_eq!(serde_json::to_string(&ToAgent::Wake).unwrap(), r#"{"type":"wake"}"#);
        assert_eq!(serde_json::to_string(&FromAgent::Ping).unwrap(), r#"{"action":"ping"}"#);
        assert_eq!(serde_json::from_str::<FromAgent>(r#"{"action":"ping"}"#).unwrap(), FromAgent::Ping);
        assert!(serde_json::from_str::<FromAgent>(r#"{"action":"other"}"#).is_err());
    }
}
