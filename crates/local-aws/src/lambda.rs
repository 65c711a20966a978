//! A local AWS Lambda Runtime API (the 2018-06-01 interface a function's lambda_runtime polls), and a
//! function binary running against it as a child process: the same code path as in AWS, minus AWS.
//! Used by the tests and by `beanswap invoke`.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// How one invocation ended, as the runtime posted it.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// `POST /runtime/invocation/{id}/response`
    Response(Value),
    /// `POST /runtime/invocation/{id}/error`: the handler returned Err.
    Error(Value),
}

struct Pending {
    id: String,
    event: Value,
    deadline_ms: u128,
}

#[derive(Clone)]
struct Api {
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>,
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<Invocation>>>>,
    init_error: Arc<Mutex<Option<Value>>>,
}

/// Why a local invocation produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("could not start {binary}: {reason}")]
    Start { binary: String, reason: String },
    #[error("the function exited before answering ({status}); init error: {init_error}")]
    Exited { status: String, init_error: String },
    #[error("the function did not answer within {0:?}")]
    Timeout(Duration),
}

/// A function binary running under the real lambda_runtime against a local Runtime API.
pub struct Function {
    send: mpsc::UnboundedSender<Pending>,
    api: Api,
    child: Child,
    stop: Option<oneshot::Sender<()>>,
    /// Lambda's timeout given to each invocation (the deadline the runtime sees).
    pub timeout: Duration,
}

impl Function {
    /// Starts the Runtime API on a free port and `binary` with the environment Lambda would give it, plus
    /// `env` (endpoints, credentials, region).
    pub async fn start(binary: &Path, env: &[(&str, String)]) -> Result<Function, InvokeError> {
        Self::start_logging_to(binary, env, None).await
    }

    /// Like [`Function::start`], with the function's output (its JSON logs) appended to `log` instead
    /// of this process's stdout/stderr: what a CLI showing its own progress wants.
    pub async fn start_logging_to(
        binary: &Path,
        env: &[(&str, String)],
        log: Option<&Path>,
    ) -> Result<Function, InvokeError> {
        let start_error = |reason: String| InvokeError::Start {
            binary: binary.display().to_string(),
            reason,
        };
        let (send, receive) = mpsc::unbounded_channel();
        let api = Api {
            queue: Arc::new(tokio::sync::Mutex::new(receive)),
            waiting: Arc::default(),
            init_error: Arc::default(),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| start_error(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| start_error(e.to_string()))?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        let name = binary
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("function")
            .to_string();
        let mut command = Command::new(binary);
        command
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_MAX_ATTEMPTS", "2")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| start_error(format!("log {}: {e}", path.display())))?;
                let err = file
                    .try_clone()
                    .map_err(|e| start_error(format!("log {}: {e}", path.display())))?;
                command.stdout(file).stderr(err);
            }
            None => {
                command.stdout(Stdio::inherit()).stderr(Stdio::inherit());
            }
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().map_err(|e| start_error(e.to_string()))?;
        Ok(Function {
            send,
            api,
            child,
            stop: Some(stop),
            timeout: Duration::from_secs(60),
        })
    }

    /// Invokes the function once and waits for it to answer, at most `self.timeout` plus a margin: a
    /// function that never answers is an error, never a hang.
    pub async fn invoke(&mut self, event: Value) -> Result<Invocation, InvokeError> {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        lock(&self.api.waiting).insert(id.clone(), tx);
        let deadline = SystemTime::now() + self.timeout;
        let deadline_ms = deadline
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let wait = self.timeout + Duration::from_secs(15);
        // The receiver lives in `self.api`, so this send cannot fail while `self` exists.
        let _ = self.send.send(Pending {
            id,
            event,
            deadline_ms,
        });
        tokio::select! {
            Ok(result) = rx => Ok(result),
            status = self.child.wait() => {
                let init_error = lock(&self.api.init_error)
                    .clone()
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "none".into());
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                Err(InvokeError::Exited { status, init_error })
            }
            _ = tokio::time::sleep(wait) => Err(InvokeError::Timeout(wait)),
        }
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn next(State(api): State<Api>) -> impl IntoResponse {
    let pending = api.queue.lock().await.recv().await;
    let Some(p) = pending else {
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    let mut headers = HeaderMap::new();
    let pairs = [
        ("lambda-runtime-aws-request-id", p.id.clone()),
        ("lambda-runtime-deadline-ms", p.deadline_ms.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:111111111111:function:local".to_string(),
        ),
        (
            "lambda-runtime-trace-id",
            format!("Root=1-00000000-{}", &p.id.replace('-', "")[..24]),
        ),
    ];
    for (k, v) in pairs {
        if let Ok(v) = v.parse() {
            headers.insert(k, v);
        }
    }
    (StatusCode::OK, headers, p.event.to_string())
}

fn finish(api: &Api, id: &str, result: Invocation) -> StatusCode {
    match lock(&api.waiting).remove(id) {
        Some(tx) => {
            let _ = tx.send(result);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

fn json_or_text(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(State(api): State<Api>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    finish(&api, &id, Invocation::Response(json_or_text(&body)))
}

async fn error(State(api): State<Api>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    finish(&api, &id, Invocation::Error(json_or_text(&body)))
}

async fn init_error(State(api): State<Api>, body: Bytes) -> StatusCode {
    *lock(&api.init_error) = Some(json_or_text(&body));
    StatusCode::ACCEPTED
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
