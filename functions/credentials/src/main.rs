//! `berth-credentials`: runs the credentials function under Lambda or as an HTTP server.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    berth_shared::platform::runtime::main(berth_credentials::NAME, berth_credentials::function).await
}
