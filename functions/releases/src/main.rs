//! `berth-releases`: runs the releases function under Lambda or as an HTTP server.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    berth_shared::platform::runtime::main(berth_releases::NAME, berth_releases::function).await
}
