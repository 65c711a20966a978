//! A pass-through in front of moto that counts S3 and Route 53 calls by operation, so an API-call budget
//! covers every service a deployment touches (local-aws counts Beanstalk and CodePipeline itself), and
//! holds S3 and Route 53 requests to the caller's policies once identities are registered
//! ([`CountingProxy::set_identities`]): moto checks nothing, so this is where AWS's refusals happen.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use beanswap_iam::{Identities, ResourceKind, Service};

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
    identities: Arc<RwLock<Option<Arc<Identities>>>>,
}

/// A running counting proxy; stops when dropped.
pub struct CountingProxy {
    addr: SocketAddr,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    identities: Arc<RwLock<Option<Arc<Identities>>>>,
    _stop: oneshot::Sender<()>,
}

impl CountingProxy {
    /// Listens on a free loopback port and forwards everything to `upstream` (e.g. moto's endpoint).
    pub async fn start(upstream: &str) -> std::io::Result<CountingProxy> {
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let identities = Arc::new(RwLock::new(None));
        let proxy = Proxy {
            identities: identities.clone(),
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
            identities,
            _stop: stop,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Holds S3 and Route 53 requests to these identities' policies from now on (`None`: checks nothing).
    pub fn set_identities(&self, identities: Option<Identities>) {
        if let Ok(mut slot) = self.identities.write() {
            *slot = identities.map(Arc::new);
        }
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

/// The SigV4 credential scope's service (`s3`, `route53`, `secretsmanager`): which API a request is for.
fn signed_service(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let scope = auth.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    scope.split('/').nth(3).map(str::to_string)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or("zz"), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The ARN of the S3 or Route 53 resource of kind `kind` that a (path-style) request names.
fn resource_arn(path: &str, headers: &HeaderMap, kind: ResourceKind) -> Option<String> {
    let trimmed = path.trim_start_matches('/');
    match kind {
        ResourceKind::Bucket => {
            let bucket = trimmed.split('/').next().filter(|b| !b.is_empty())?;
            Some(format!("arn:aws:s3:::{bucket}"))
        }
        ResourceKind::Object => {
            let (bucket, key) = trimmed.split_once('/')?;
            Some(format!("arn:aws:s3:::{bucket}/{}", percent_decode(key)))
        }
        ResourceKind::CopySource => {
            let source = headers.get("x-amz-copy-source")?.to_str().ok()?;
            let source = percent_decode(source.split('?').next().unwrap_or(source));
            Some(format!("arn:aws:s3:::{}", source.trim_start_matches('/')))
        }
        ResourceKind::HostedZone => {
            let id = trimmed
                .strip_prefix("2013-04-01/hostedzone/")?
                .split('/')
                .next()?;
            Some(format!("arn:aws:route53:::hostedzone/{id}"))
        }
        ResourceKind::Change => {
            let id = trimmed
                .strip_prefix("2013-04-01/change/")?
                .split('/')
                .next()?;
            Some(format!("arn:aws:route53:::change/{id}"))
        }
        _ => None,
    }
}

/// AWS's refusal, in each service's shape: S3's `<Error>` with AccessDenied (no body for HEAD), Route
/// 53's `<ErrorResponse>` with AccessDenied; both HTTP 403.
fn access_denied(service: Service, method: &Method, message: &str) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let message = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = match service {
        Service::Route53 => format!(
            "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>{message}</Message></Error><RequestId>{id}</RequestId></ErrorResponse>"
        ),
        _ => format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>{message}</Message><RequestId>{id}</RequestId><HostId>{id}</HostId></Error>"
        ),
    };
    let body = if method == Method::HEAD {
        String::new()
    } else {
        body
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/xml"),
    );
    response
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let op = operation(&parts.method, &path, &query, &parts.headers);
    if let Ok(mut counts) = proxy.counts.lock() {
        *counts.entry(op.clone()).or_default() += 1;
    }
    // Permissions: S3 and Route 53 only (other services moto serves here are not checked).
    let identities = proxy.identities.read().ok().and_then(|i| i.clone());
    let service = match signed_service(&parts.headers).as_deref() {
        Some("s3") => Some(Service::S3),
        Some("route53") => Some(Service::Route53),
        _ => None,
    };
    let mut not_found_check = None;
    let mut not_found_refusal: Option<String> = None;
    if let (Some(ids), Some(service)) = (&identities, service) {
        let key = beanswap_iam::identity::access_key(
            parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            &query,
        );
        let name = op.split_once('.').map_or(op.as_str(), |(_, n)| n);
        let headers = &parts.headers;
        let refused = crate::iam::authorize(ids, key.as_deref(), service, name, |row| {
            not_found_check = row
                .checks
                .iter()
                .find(|c| c.when == beanswap_iam::When::NotFound)
                .and_then(|c| {
                    Some(beanswap_iam::Check::new(
                        c.action.clone(),
                        resource_arn(&path, headers, c.resource)?,
                    ))
                });
            crate::iam::checks(
                row,
                |m| query.split('&').any(|p| p.split('=').next() == Some(m)),
                |kind| resource_arn(&path, headers, kind),
            )
        });
        if let Err(refused) = refused {
            tracing::info!(operation = %op, refused = %refused.message(), "refused by the caller's policies");
            return access_denied(service, &parts.method, &refused.message());
        }
        // Decided now, used if moto answers 404: without the action (s3:ListBucket), AWS answers 403.
        let admin = matches!(
            key.as_deref().and_then(|k| ids.principal(k)),
            Some(beanswap_iam::Principal::Admin)
        );
        if let Some(check) = not_found_check.as_ref().filter(|_| !admin) {
            not_found_refusal = ids
                .authorize(key.as_deref(), std::slice::from_ref(check))
                .err()
                .map(|r| r.to_string());
        }
    }
    let method = parts.method.clone();
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
        Ok(r) if r.status() == StatusCode::NOT_FOUND && not_found_refusal.is_some() => {
            access_denied(Service::S3, &method, &not_found_refusal.unwrap_or_default())
        }
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
