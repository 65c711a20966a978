//! A pass-through in front of moto that counts S3 and Route 53 calls by operation, so an API-call budget
//! covers every service a deployment touches (local-aws counts Beanstalk and CodePipeline itself).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::oneshot;

/// Largest request body forwarded (bundles go through here).
const MAX_BODY: usize = 1024 * 1024 * 1024;

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

/// A running counting proxy; stops when dropped.
pub struct CountingProxy {
    addr: SocketAddr,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    _stop: oneshot::Sender<()>,
}

impl CountingProxy {
    /// Listens on a free loopback port and forwards everything to `upstream` (e.g. moto's endpoint).
    pub async fn start(upstream: &str) -> std::io::Result<CountingProxy> {
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let proxy = Proxy {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(std::io::Error::other)?,
            counts: counts.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let app = Router::new().fallback(forward).with_state(proxy);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(CountingProxy {
            addr,
            counts,
            _stop: stop,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls per `Service.Operation` so far.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// Names a request the way AWS's API reference does, from its method, path, query and headers.
pub fn operation(method: &Method, path: &str, query: &str, headers: &HeaderMap) -> String {
    let has = |q: &str| {
        query
            .split('&')
            .any(|p| p == q || p.starts_with(&format!("{q}=")))
    };
    if let Some(rest) = path.strip_prefix("/2013-04-01/") {
        let parts: Vec<&str> = rest.split('/').collect();
        let op = match (method.as_str(), parts.as_slice()) {
            ("POST", ["hostedzone"]) => "CreateHostedZone",
            ("GET", ["hostedzone"]) => "ListHostedZones",
            ("GET", ["hostedzonesbyname"]) => "ListHostedZonesByName",
            ("GET", ["hostedzone", _]) => "GetHostedZone",
            ("DELETE", ["hostedzone", _]) => "DeleteHostedZone",
            ("POST", ["hostedzone", _, "rrset"]) | ("POST", ["hostedzone", _, "rrset", ""]) => {
                "ChangeResourceRecordSets"
            }
            ("GET", ["hostedzone", _, "rrset"]) => "ListResourceRecordSets",
            ("GET", ["change", _]) => "GetChange",
            _ => "Other",
        };
        return format!("Route53.{op}");
    }
    let segments = path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .count();
    let object = segments >= 2;
    let op = match (method.as_str(), object) {
        ("GET", true) => "GetObject",
        ("HEAD", true) => "HeadObject",
        ("PUT", true) if headers.contains_key("x-amz-copy-source") => "CopyObject",
        ("PUT", true) if has("partNumber") => "UploadPart",
        ("PUT", true) => "PutObject",
        ("POST", true) if has("uploads") => "CreateMultipartUpload",
        ("POST", true) if has("uploadId") => "CompleteMultipartUpload",
        ("DELETE", true) if has("uploadId") => "AbortMultipartUpload",
        ("DELETE", true) => "DeleteObject",
        ("POST", false) if has("delete") => "DeleteObjects",
        ("GET", false) if has("list-type") => "ListObjectsV2",
        ("GET", false) if has("versioning") => "GetBucketVersioning",
        ("GET", false) if segments == 0 => "ListBuckets",
        ("GET", false) => "ListObjects",
        ("HEAD", false) => "HeadBucket",
        ("PUT", false) => "CreateBucket",
        ("DELETE", false) => "DeleteBucket",
        _ => "Other",
    };
    format!("S3.{op}")
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let op = operation(&parts.method, &path, &query, &parts.headers);
    if let Ok(mut counts) = proxy.counts.lock() {
        *counts.entry(op).or_default() += 1;
    }
    let body = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let url = match parts.uri.path_and_query() {
        Some(pq) => format!("{}{}", proxy.upstream, pq.as_str()),
        None => proxy.upstream.clone(),
    };
    let mut headers = parts.headers.clone();
    headers.remove(header::CONNECTION);
    headers.remove(header::TRANSFER_ENCODING);
    match proxy
        .http
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status();
            let mut headers = r.headers().clone();
            headers.remove(header::TRANSFER_ENCODING);
            headers.remove(header::CONNECTION);
            match r.bytes().await {
                Ok(bytes) => {
                    let mut response = Response::new(Body::from(bytes));
                    *response.status_mut() = status;
                    *response.headers_mut() = headers;
                    response
                }
                Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_operations() {
        let h = HeaderMap::new();
        let mut copy = HeaderMap::new();
        copy.insert(
            "x-amz-copy-source",
            "b/k"
                .parse()
                .unwrap_or(header::HeaderValue::from_static("x")),
        );
        for (method, path, query, headers, expected) in [
            (Method::GET, "/bucket/key.zip", "", &h, "S3.GetObject"),
            (Method::PUT, "/bucket/key.zip", "", &h, "S3.PutObject"),
            (Method::PUT, "/bucket/key.zip", "", &copy, "S3.CopyObject"),
            (Method::PUT, "/bucket", "", &h, "S3.CreateBucket"),
            (
                Method::POST,
                "/bucket/k",
                "uploads",
                &h,
                "S3.CreateMultipartUpload",
            ),
            (
                Method::GET,
                "/bucket",
                "list-type=2",
                &h,
                "S3.ListObjectsV2",
            ),
            (
                Method::POST,
                "/2013-04-01/hostedzone/Z1/rrset/",
                "",
                &h,
                "Route53.ChangeResourceRecordSets",
            ),
            (
                Method::GET,
                "/2013-04-01/change/C1",
                "",
                &h,
                "Route53.GetChange",
            ),
        ] {
            assert_eq!(
                operation(&method, path, query, headers),
                expected,
                "{method} {path}"
            );
        }
    }
}
