//! `berth-packages`: runs the packages function under Lambda or as an HTTP server.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    berth_shared::platform::runtime::main(berth_packages::NAME, berth_packages::function).await
}
