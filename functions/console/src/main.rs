//! `berth-console`: serves the web console under Lambda or as an HTTP server. It reads no keys,
//! store or queue.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    berth_shared::platform::runtime::main_stateless(berth_console::NAME, berth_console::router()).await
}
