//! Runs a function: under Lambda when `AWS_LAMBDA_RUNTIME_API` is set (HTTP events through
//! `lambda_http`, SQS batches through `lambda_runtime`), else as a plain HTTP server that also
//! consumes its queue. The same binary therefore runs on Lambda or on any HTTP FaaS.

use std::process::ExitCode;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::routing::get;
use lambda_runtime::{LambdaEvent, Service, service_fn};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::platform::config::Config;
use crate::platform::context::{FunctionContext, SHUTDOWN_GRACE};
use crate::platform::events::{ConsumerOptions, EventHandler, consume, handle_sqs_batch};
use crate::platform::http::error::ApiError;
pub use crate::platform::serve::serve_http;
use crate::platform::telemetry;

/// A function as the runtime sees it: its routes and, if it consumes events, its handler.
pub struct Function {
    /// Name, e.g. `credentials`.
    pub name: &'static str,
    /// Its HTTP routes (without `/healthz`, which the runtime adds).
    pub router: Router,
    /// Its event handler, if it consumes a queue.
    pub events: Option<Arc<dyn EventHandler>>,
    /// What it still does once asked to stop (removing what it made for its life only), which
    /// the process waits for, within [`SHUTDOWN_GRACE`].
    pub winding_down: Option<futures::future::BoxFuture<'static, ()>>,
}

/// Adds `/healthz`, request tracing, the problem+json 404 and 405, a problem+json 500 for
/// a handler that panics (the process and every other request carry on), and the count of
/// answers by route and status.
pub fn finish(router: Router, names: Vec<&'static str>) -> Router {
    let health = get(move || {
        let body = json!({ "status": "ok", "functions": names });
        async move { Json(body) }
    });
    telemetry::traced(
        router
            .route("/healthz", health)
            .fallback(|| async { ApiError::NotFound("route".into()) })
            .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
            .layer(axum::middleware::from_fn(crate::platform::metrics::http::count)),
    )
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    // The payload may quote request data; it is not logged, only that it happened.
    tracing::error!("a handler panicked; answered 500");
    ApiError::Internal("a handler panicked".into()).into_response()
}

/// Resolves when SIGINT or SIGTERM arrives, cancelling the returned token.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let interrupt = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = interrupt => {}
            _ = terminate => {}
        }
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}

/// Makes large buffers (request bodies, templates, answers) mappings of their own, given back to
/// the system when freed: glibc otherwise raises its mmap threshold after the first such free
/// and serves later ones from its heaps, which keep the memory (ten unread 9 MiB renders left
/// 300 MiB resident after their connections were dropped).
pub fn return_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before serving.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

/// Whether this process was started by the Lambda runtime.
pub fn under_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// Runs CPU-heavy work (scanning a 10 MiB template) so that the runtime's other tasks (health
/// checks, polls) go on meanwhile: on a multi-threaded runtime the worker hands its tasks to
/// another thread first; on a current-thread runtime (tests) it simply runs.
pub fn compute<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Runs `task` every `interval`, first at once, in the background of the current runtime;
/// not under Lambda, where a schedule sends the equivalent event. Used for sweeps.
pub fn spawn_periodic<F, Fut>(what: &'static str, interval: std::time::Duration, task: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), crate::platform::events::EventError>> + Send,
{
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    if under_lambda() {
        return;
    }
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(error) = task().await {
                tracing::warn!(%error, "{what} failed");
            }
        }
    });
}

/// The binary's whole life: config, logging, context, then Lambda or HTTP + consumer.
/// Bad configuration ends the process with one line on stderr and exit code 2.
pub async fn main(name: &'static str, build: impl FnOnce(FunctionContext) -> Function) -> ExitCode {
    // Deployed functions may take their keys from Secrets Manager (see key_bundle).
    let env = |variable: &str| std::env::var(variable).ok();
    let keys_dir = std::env::temp_dir().join("berth-keys");
    let key_files = match crate::platform::key_bundle::materialize(
        env,
        &crate::platform::key_bundle::extension_endpoint(env),
        &keys_dir,
    )
    .await
    {
        Ok(files) => files,
        Err(error) => return startup_failed(name, &error.to_string()),
    };
    let config = match Config::from_lookup(|variable| key_files.get(variable).cloned().or_else(|| env(variable))) {
        Ok(config) => config,
        Err(error) => return startup_failed(name, &format!("configuration: {error}")),
    };
    telemetry::init(config.log_format);
    return_large_buffers();
    let context = match FunctionContext::from_config(config).await {
        Ok(context) => context,
        Err(error) => return startup_failed(name, &error.to_string()),
    };
    let config = context.config.clone();
    let queue = context.queue.clone();
    let function = build(context);
    let result = if under_lambda() {
        run_lambda(function, config.metrics_emf).await
    } else {
        run_standalone(function, &config, Some(queue)).await
    };
    exit_code(result)
}

/// As [`main`], for a function that holds no state (the console's files): no keys, store or
/// queue are opened, so its role needs no access to any of them.
pub async fn main_stateless(name: &'static str, router: Router) -> ExitCode {
    let config = match Config::from_lookup(|variable| std::env::var(variable).ok()) {
        Ok(config) => config,
        Err(error) => return startup_failed(name, &format!("configuration: {error}")),
    };
    telemetry::init(config.log_format);
    let function = Function { name, router, events: None, winding_down: None };
    let result = if under_lambda() {
        run_lambda(function, config.metrics_emf).await
    } else {
        run_standalone(function, &config, None).await
    };
    exit_code(result)
}

fn exit_code(result: Result<(), lambda_runtime::Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "function stopped");
            ExitCode::FAILURE
        }
    }
}

fn startup_failed(name: &str, message: &str) -> ExitCode {
    eprintln!("berth-{name}: {message}");
    ExitCode::from(2)
}

async fn run_standalone(
    function: Function,
    config: &Config,
    queue: Option<crate::platform::queue::SharedQueue>,
) -> Result<(), lambda_runtime::Error> {
    let (listen, limits) = (config.listen, config.http_limits);
    let shutdown = shutdown_on_signal();
    if let Some(address) = config.metrics_listen {
        crate::platform::metrics::serve(address, limits, shutdown.clone())?;
    }
    let consumer = function
        .events
        .zip(queue)
        .map(|(handler, queue)| tokio::spawn(consume(queue, handler, ConsumerOptions::default(), shutdown.clone())));
    let listener = crate::platform::serve::listen(listen)?;
    tracing::info!(function = function.name, %listen, "serving");
    serve_http(finish(function.router, vec![function.name]), listener, shutdown, limits).await?;
    let winding_down = async {
        if let Some(consumer) = consumer {
            let _ = consumer.await;
        }
        if let Some(winding_down) = function.winding_down {
            winding_down.await;
        }
    };
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, winding_down).await;
    Ok(())
}

/// Lambda: one handler for every kind of event the function is wired to. SQS batches
/// (records from `aws:sqs`) go to the event handler; API Gateway WebSocket events to the
/// router as [`crate::platform::websocket`] says; anything else is an HTTP event (API Gateway
/// REST/HTTP, function URL, ALB) for the router.
async fn run_lambda(function: Function, metrics_emf: bool) -> Result<(), lambda_runtime::Error> {
    let router = finish(function.router, vec![function.name]);
    let (name, events) = (function.name, function.events);
    if metrics_emf {
        crate::platform::metrics::emf::install();
    }
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let router = router.clone();
        let events = events.clone();
        async move {
            let answer = invoke(router, events.as_deref(), event).await;
            crate::platform::metrics::emf::flush(name);
            answer
        }
    }))
    .await
}

fn is_sqs_batch(payload: &Value) -> bool {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|records| records.first())
        .and_then(|record| record.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

/// Handles one Lambda invocation (exposed for tests).
pub async fn invoke(
    router: Router,
    events: Option<&dyn EventHandler>,
    event: LambdaEvent<Value>,
) -> Result<Value, lambda_runtime::Error> {
    let LambdaEvent { payload, context } = event;
    if is_sqs_batch(&payload) {
        let handler = events.ok_or("this function consumes no events")?;
        let batch = serde_json::from_value(payload)?;
        return Ok(serde_json::to_value(handle_sqs_batch(handler, batch).await)?);
    }
    if crate::platform::websocket::is_websocket_event(&payload) {
        return crate::platform::websocket::handle(router, payload).await;
    }
    let request: lambda_http::request::LambdaRequest = serde_json::from_value(payload)?;
    let mut adapter = lambda_http::Adapter::from(router);
    let response = adapter.call(LambdaEvent::new(request, context)).await?;
    Ok(serde_json::to_value(response)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::config::HttpLimits;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    use std::time::Duration;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A server with short limits and room for two connections, on a free port.
    async fn limited() -> (std::net::SocketAddr, CancellationToken) {
        use crate::platform::http::request::LimitedBody;
        let router = Router::new()
            .route("/fine", get(|| async { "fine" }))
            .route(
                "/upload",
                axum::routing::post(|LimitedBody(body): LimitedBody<1024>| async move { body.len().to_string() }),
            )
            .route("/large", get(|| async { vec![b'x'; 64 << 20] }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let limits = HttpLimits {
            header_read_timeout: Duration::from_secs(5),
            body_idle_timeout: Duration::from_secs(1),
            anonymous_request_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(1),
            max_connections: 2,
            ..HttpLimits::default()
        };
        tokio::spawn(serve_http(router, listener, shutdown.clone(), limits));
        (address, shutdown)
    }

    /// Reads until the server closes (or resets) the connection; what came back, as text.
    async fn answer_of(stream: &mut tokio::net::TcpStream) -> String {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buffer = [0u8; 64 << 10];
            while let Ok(n @ 1..) = stream.read(&mut buffer).await {
                answer.extend_from_slice(&buffer[..n]);
            }
        })
        .await;
        assert!(read.is_ok(), "the server neither answered nor closed: {}", String::from_utf8_lossy(&answer));
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// Sends `head` and waits for the server to answer or close; returns what came back.
    async fn exchange(address: std::net::SocketAddr, head: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        answer_of(&mut stream).await
    }

    #[tokio::test]
    async fn slow_headers_and_bodies_are_cut_off_with_a_408_and_idle_connections_make_room() {
        let (address, shutdown) = limited().await;
        // Headers that never end: the connection is closed after the header timeout.
        let started = std::time::Instant::now();
        let answer = exchange(address, "GET /fine HTTP/1.1\r\nHost: x\r\n").await;
        assert!(!answer.contains("fine"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(8));
        // A body that stops: a 408 (not a 413) once the gap passes the body timeout.
        let answer = exchange(address, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab").await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"code\":\"request_timeout\""), "{answer}");
        // A body that trickles, never pausing long: a 408 once the whole-request deadline passes.
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n").await.unwrap();
        let started = std::time::Instant::now();
        let (mut reader, mut writer) = stream.into_split();
        let trickle = tokio::spawn(async move {
            while writer.write_all(b"a").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        });
        let mut answer = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), reader.read_to_string(&mut answer)).await;
        trickle.abort();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        // Two silent connections take both places; once they have sent nothing for a second, a
        // third is served at once, the oldest silent one closed to make room (well before the
        // header timeout would have cut it).
        let mut silent = tokio::net::TcpStream::connect(address).await.unwrap();
        let _other = tokio::net::TcpStream::connect(address).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let started = std::time::Instant::now();
        let answer = exchange(address, "GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("fine"), "{answer}");
        assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
        assert_eq!(answer_of(&mut silent).await, "", "the oldest idle connection was closed");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn an_answer_nobody_reads_is_dropped_with_its_connection() {
        let (address, shutdown) = limited().await;
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(b"GET /large HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        // Past the write timeout, reading finds what the socket buffers held, then the end.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let answer = answer_of(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{}", &answer[..answer.len().min(100)]);
        assert!(answer.len() < 64 << 20, "the whole answer arrived: the connection was not dropped");
        shutdown.cancel();
    }

    async fn boom() -> &'static str {
        panic!("request data: {}", "secret-value")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_a_problem_and_the_router_goes_on() {
        let router =
            finish(Router::new().route("/boom", get(boom)).route("/fine", get(|| async { "fine" })), vec!["test"]);
        for _ in 0..2 {
            let response = router.clone().oneshot(Request::get("/boom").body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(response.headers()["content-type"], "application/problem+json");
            assert!(response.headers().contains_key("x-request-id"));
            let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            let problem: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(problem["code"], "internal");
            assert!(!String::from_utf8_lossy(&body).contains("secret-value"), "the panic message is not echoed");
            let fine = router.clone().oneshot(Request::get("/fine").body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(fine.status(), StatusCode::OK);
        }
    }
}
