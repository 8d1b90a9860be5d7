//! `berth-render`: runs the render function under Lambda or as an HTTP server.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    berth_shared::platform::runtime::main(berth_render::NAME, berth_render::function).await
}
