//! Running checks over HTTP: one reqwest client (rustls, no proxy) per [`Checker`], rounds of checks with
//! bounded concurrency, and the judging in [`super::eval`].

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::redirect::Policy;
use reqwest::Method;
use url::Url;

use super::eval::{evaluate, CheckResult, Expect, Observed, Round, Transport, TransportKind};
use super::spec::{join, CheckSpec, Redirects, StatusSet, VersionCheck, MAX_REDIRECTS};
use super::HttpCheckError;

/// Most of a body that is read: enough for any health page, bounded for a check that hits a download.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How checks are sent.
#[derive(Debug, Clone)]
pub struct Options {
    /// For the whole exchange: connecting, headers and body.
    pub timeout: Duration,
    /// Requests in flight at once within a round.
    pub concurrency: usize,
    pub redirects: Redirects,
    /// `curl --resolve`: connect to this address for this host name, keeping the name in the Host header
    /// and TLS SNI. A port of 0 keeps the URL's port; a URL with an explicit port keeps that port.
    pub resolve: Vec<(String, SocketAddr)>,
    /// Statuses meaning "the environment does not answer yet" (see [`CheckResult::not_answering`]).
    pub not_ready: StatusSet,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(10),
            concurrency: 4,
            redirects: Redirects::default(),
            resolve: vec![],
            not_ready: StatusSet::gateway_errors(),
        }
    }
}

struct Prepared {
    name: String,
    method: Method,
    url: Url,
    headers: HeaderMap,
    expect: Expect,
}

/// A set of checks against one base URL, ready to run any number of rounds.
pub struct Checker {
    client: reqwest::Client,
    base: Url,
    checks: Vec<Prepared>,
    options: Options,
}

impl Checker {
    /// Validates and compiles `checks` (field paths `checks[i]`) and the optional version check (field
    /// `version`, run last in every round) against `base`.
    pub fn new(
        base: &Url,
        checks: &[CheckSpec],
        version: Option<&VersionCheck>,
        options: &Options,
    ) -> Result<Self, HttpCheckError> {
        let mut prepared = Vec::with_capacity(checks.len() + 1);
        for (i, spec) in checks.iter().enumerate() {
            let at = format!("checks[{i}]");
            let expect = Expect::from_check(spec, &at)?;
            let method = Method::from_bytes(spec.method().as_bytes())
                .map_err(|e| HttpCheckError::field(format!("{at}.method"), e.to_string()))?;
            let mut headers = HeaderMap::new();
            for (name, value) in &spec.headers {
                let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| {
                    HttpCheckError::field(format!("{at}.headers"), format!("`{name}`: {e}"))
                })?;
                let v = HeaderValue::from_str(value).map_err(|e| {
                    HttpCheckError::field(format!("{at}.headers.{name}"), e.to_string())
                })?;
                headers.insert(n, v);
            }
            prepared.push(Prepared {
                name: spec.display_name(),
                method,
                url: url_for(base, &spec.path, &format!("{at}.path"))?,
                headers,
                expect,
            });
        }
        if let Some(v) = version {
            prepared.push(Prepared {
                name: v.display_name(),
                method: Method::GET,
                url: url_for(base, &v.path, "version.path")?,
                headers: HeaderMap::new(),
                expect: Expect::from_version(v, "version")?,
            });
        }
        if prepared.is_empty() {
            return Err(HttpCheckError::field("checks", "there is nothing to check"));
        }
        Ok(Checker {
            client: client(options)?,
            base: base.clone(),
            checks: prepared,
            options: Options {
                concurrency: options.concurrency.max(1),
                ..options.clone()
            },
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Checks per round (the version check included).
    pub fn len(&self) -> usize {
        self.checks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    /// Runs every check once, at most `concurrency` at a time; results in check order.
    pub async fn round(&self, number: u32) -> Round {
        // Futures made up front (they are lazy): a closure inside the stream would make the future
        // of this method not provably Send.
        let pending: Vec<_> = self.checks.iter().map(|p| self.run_one(p)).collect();
        let results = futures_util::stream::iter(pending)
            .buffered(self.options.concurrency)
            .collect()
            .await;
        Round { number, results }
    }

    /// Rounds `first..=last` one after another, stopping after the first that fails.
    pub async fn rounds(&self, first: u32, last: u32) -> Vec<Round> {
        let mut out = vec![];
        for n in first..=last {
            let round = self.round(n).await;
            let passed = round.passed();
            out.push(round);
            if !passed {
                break;
            }
        }
        out
    }

    async fn run_one(&self, p: &Prepared) -> CheckResult {
        let start = Instant::now();
        let response = self.fetch(p).await;
        let latency = start.elapsed();
        let (problems, not_answering) = match &response {
            Ok(observed) => {
                let problems = evaluate(&p.expect, observed, latency);
                let gateway = !p.expect.status.matches(observed.status)
                    && self.options.not_ready.matches(observed.status);
                (problems, gateway)
            }
            Err(t) => (vec![t.short()], t.kind == TransportKind::Connect),
        };
        tracing::debug!(check = %p.name, url = %p.url, ?latency, ?problems, "check");
        CheckResult {
            name: p.name.clone(),
            method: p.method.to_string(),
            url: p.url.to_string(),
            latency,
            response,
            problems,
            not_answering,
        }
    }

    async fn fetch(&self, p: &Prepared) -> Result<Observed, Transport> {
        let classify = |e: reqwest::Error| transport(&e, self.options.timeout);
        let mut response = self
            .client
            .request(p.method.clone(), p.url.clone())
            .headers(p.headers.clone())
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        let final_url = response.url().clone();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let unfollowed_redirect = if matches!(status, 301 | 302 | 303 | 307 | 308) {
            response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|loc| {
                    final_url
                        .join(loc)
                        .map_or_else(|_| loc.to_string(), |u| u.to_string())
                })
        } else {
            None
        };
        let mut body = Vec::new();
        let mut body_truncated = false;
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            let room = MAX_BODY_BYTES - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                body_truncated = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Observed {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            body_truncated,
            final_url: final_url.to_string(),
            unfollowed_redirect,
        })
    }
}

fn url_for(base: &Url, path: &str, field: &str) -> Result<Url, HttpCheckError> {
    join(base, path)
        .map_err(|e| HttpCheckError::field(field, format!("`{path}` does not make a URL: {e}")))
}

fn client(options: &Options) -> Result<reqwest::Client, HttpCheckError> {
    let policy = match options.redirects {
        Redirects::None => Policy::none(),
        Redirects::Any => Policy::limited(MAX_REDIRECTS),
        Redirects::SameHost => Policy::custom(|attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            let origin = attempt.previous().first().and_then(Url::host_str);
            if origin.is_some() && origin == attempt.url().host_str() {
                attempt.follow()
            } else {
                // The redirect response itself is judged, naming where it pointed.
                attempt.stop()
            }
        }),
    };
    // reqwest is built without a crypto provider of its own (the functions link only aws-lc-rs, the
    // one the AWS SDK uses): make it the process default before the first client. Installing it a
    // second time is refused, harmlessly.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(policy)
        .timeout(options.timeout)
        .connect_timeout(options.timeout)
        // A smoke test talks to the environment itself, never through a proxy from the environment.
        .no_proxy()
        // A fresh connection per request, so a load balancer that pins connections still spreads the
        // rounds over its instances (and every latency includes connecting, as a new visitor's does).
        .pool_max_idle_per_host(0)
        .user_agent(concat!("beanswap-http-check/", env!("CARGO_PKG_VERSION")));
    for (host, addr) in &options.resolve {
        builder = builder.resolve(host, *addr);
    }
    if let Some(rules) = EnvResolver::from_env() {
        builder = builder.dns_resolver(std::sync::Arc::new(rules));
    }
    builder
        .build()
        .map_err(|e| HttpCheckError::Client(error_chain(&e)))
}

/// Name resolution for a machine without the real DNS: `BEANSWAP_RESOLVE="*.elasticbeanstalk.com=127.0.0.1:8080,shop.example.com=127.0.0.1:8080"`
/// sends matching names (exactly, or by `*.` suffix) to one address, the rest to the system resolver.
/// It is environment plumbing like `AWS_ENDPOINT_URL_*`: `beanswap run` sets it so the functions reach
/// local-aws's router; nothing sets it in Lambda.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvResolver {
    rules: Vec<(String, SocketAddr)>,
}

pub const RESOLVE_ENV: &str = "BEANSWAP_RESOLVE";

impl EnvResolver {
    pub fn from_env() -> Option<EnvResolver> {
        Self::parse(&std::env::var(RESOLVE_ENV).ok()?)
    }

    pub fn parse(spec: &str) -> Option<EnvResolver> {
        let rules: Vec<(String, SocketAddr)> = spec
            .split(',')
            .filter_map(|rule| {
                let (pattern, addr) = rule.trim().split_once('=')?;
                Some((
                    pattern.trim().to_ascii_lowercase(),
                    addr.trim().parse().ok()?,
                ))
            })
            .collect();
        (!rules.is_empty()).then_some(EnvResolver { rules })
    }

    pub fn lookup(&self, host: &str) -> Option<SocketAddr> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.rules
            .iter()
            .find(|(pattern, _)| match pattern.strip_prefix("*.") {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => *pattern == host,
            })
            .map(|(_, addr)| *addr)
    }
}

impl reqwest::dns::Resolve for EnvResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let found = self.lookup(name.as_str());
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match found {
                Some(addr) => vec![addr],
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

fn transport(e: &reqwest::Error, timeout: Duration) -> Transport {
    let chain = error_chain(e);
    if e.is_timeout() && !e.is_connect() {
        return Transport {
            kind: TransportKind::Timeout,
            message: format!(
                "no complete answer within the request timeout of {} ms",
                timeout.as_millis()
            ),
        };
    }
    let kind = if e.is_connect() {
        if is_tls(e) {
            TransportKind::Tls
        } else {
            TransportKind::Connect
        }
    } else {
        TransportKind::Other
    };
    Transport {
        kind,
        message: chain,
    }
}

/// rustls reports handshake and certificate failures as `io::ErrorKind::InvalidData`, possibly wrapped
/// in another `io::Error` (whose `source()` skips the inner one, hence `get_ref`).
fn is_tls(e: &reqwest::Error) -> bool {
    fn invalid_data(err: &(dyn StdError + 'static)) -> bool {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::InvalidData {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                let inner: &(dyn StdError + 'static) = inner;
                if invalid_data(inner) {
                    return true;
                }
            }
        }
        err.source().is_some_and(invalid_data)
    }
    e.source().is_some_and(invalid_data)
}

/// The error and its causes in one line, without reqwest's generic "error sending request for url"
/// (the URL is shown on its own) and without repeats.
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = vec![];
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        let generic = text.starts_with("error sending request for url")
            || text.starts_with("error following redirect for url")
            || text.starts_with("error decoding response body")
            || text.starts_with("error reading a body from connection")
            || text.starts_with("client error (");
        let repeated = parts.iter().any(|p| p.contains(text.as_str()));
        let skip = repeated || (generic && err.source().is_some());
        if !skip {
            parts.push(text);
        }
        current = err.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn env_resolver_matches_exact_names_and_wildcard_suffixes() {
        let r = EnvResolver::parse(
            "*.elasticbeanstalk.com=127.0.0.1:8080, shop.example.com=10.0.0.1:80, bad",
        )
        .unwrap();
        let router: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            r.lookup("shop-prod.us-east-1.elasticbeanstalk.com"),
            Some(router)
        );
        assert_eq!(
            r.lookup("SHOP-PROD.us-east-1.elasticbeanstalk.com."),
            Some(router)
        );
        assert_eq!(r.lookup("elasticbeanstalk.com"), None);
        assert_eq!(
            r.lookup("shop.example.com"),
            Some("10.0.0.1:80".parse().unwrap())
        );
        assert_eq!(r.lookup("www.shop.example.com"), None);
        assert!(EnvResolver::parse("").is_none());
    }

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A raw TCP server answering every connection with `reply` after `delay`.
    async fn raw_server(reply: &'static [u8], delay: Duration) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let _ = socket.write_all(reply).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        addr
    }

    async fn one(url: &str, timeout_ms: u64) -> CheckResult {
        let options = Options {
            timeout: Duration::from_millis(timeout_ms),
            ..Options::default()
        };
        let checker = Checker::new(
            &Url::parse(url).unwrap(),
            &[CheckSpec::get("/", StatusSet::any_2xx())],
            None,
            &options,
        )
        .unwrap();
        checker.round(1).await.results.remove(0)
    }

    #[tokio::test]
    async fn transport_failures_are_classified() {
        const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
        let plain = raw_server(OK, Duration::ZERO).await;
        let slow = raw_server(OK, Duration::from_secs(5)).await;
        let free = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let r = one(&format!("http://{plain}"), 2000).await;
        assert!(r.passed(), "{r:?}");
        let r = one(&format!("http://{free}"), 2000).await;
        let t = r.response.clone().unwrap_err();
        assert_eq!(t.kind, TransportKind::Connect, "{t:?}");
        assert!(r.not_answering);
        assert!(t.message.contains("Connection refused"), "{t:?}");
        // A name that does not resolve (yet): like a refused connection, something a warm-up waits out.
        let r = one("http://nowhere.invalid", 2000).await;
        let t = r.response.clone().unwrap_err();
        assert_eq!(t.kind, TransportKind::Connect, "{t:?}");
        assert!(r.not_answering);
        assert!(t.message.contains("dns error"), "{t:?}");
        let r = one(&format!("https://{plain}"), 2000).await;
        let t = r.response.clone().unwrap_err();
        assert_eq!(t.kind, TransportKind::Tls, "{t:?}");
        assert!(!r.not_answering);
        let r = one(&format!("http://{slow}"), 100).await;
        let t = r.response.clone().unwrap_err();
        assert_eq!(t.kind, TransportKind::Timeout, "{t:?}");
        assert!(!r.not_answering);
        assert_eq!(
            r.problems,
            ["no complete answer within the request timeout of 100 ms"]
        );
    }

    #[tokio::test]
    async fn a_round_keeps_at_most_concurrency_requests_in_flight_and_reports_in_check_order() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (now, max) = (in_flight.clone(), most.clone());
        let server = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (now, max) = (now.clone(), max.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        let checks: Vec<CheckSpec> = (0..6)
            .map(|i| CheckSpec::get(format!("/{i}"), StatusSet::any_2xx()))
            .collect();
        let options = Options {
            concurrency: 2,
            ..Options::default()
        };
        let base = Url::parse(&format!("http://{addr}")).unwrap();
        let checker = Checker::new(&base, &checks, None, &options).unwrap();
        let round = checker.round(1).await;
        server.abort();
        assert!(round.passed(), "{round:?}");
        let names: Vec<&str> = round.results.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["GET /0", "GET /1", "GET /2", "GET /3", "GET /4", "GET /5"]
        );
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
