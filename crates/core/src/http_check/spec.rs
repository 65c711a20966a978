//! Checks as users write them (UserParameters JSON), and their validation.
//!
//! Names are short on purpose: a pipeline's UserParameters hold at most 1000 characters.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use url::Url;

use super::HttpCheckError;

/// Methods a check may use.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// One request and what its response must look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Shown in the table and messages; `METHOD path` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// GET when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Appended to the base URL; starts with `/`, may carry a query.
    pub path: String,
    /// Request headers to send.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Accepted statuses: `200`, `"2xx"`, `"200-204"` or a list of these; any 2xx when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusSet>,
    /// Text the body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// A regular expression (Rust `regex` syntax) the body must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_regex: Option<String>,
    /// JSON pointer (RFC 6901) -> the value the body must have there, e.g. `{"/status": "ok"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub json: BTreeMap<String, serde_json::Value>,
    /// Slowest acceptable answer (headers and body), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency_ms: Option<u64>,
}

impl CheckSpec {
    /// A plain GET of `path` expecting `status`.
    pub fn get(path: impl Into<String>, status: StatusSet) -> Self {
        CheckSpec {
            name: None,
            method: None,
            path: path.into(),
            headers: BTreeMap::new(),
            status: Some(status),
            body_contains: None,
            body_regex: None,
            json: BTreeMap::new(),
            max_latency_ms: None,
        }
    }

    /// What runs when a user gives no checks: `GET /` answering 2xx or 3xx.
    pub fn default_set() -> Vec<CheckSpec> {
        vec![CheckSpec::get(
            "/",
            StatusSet(vec![StatusPattern::Class(2), StatusPattern::Class(3)]),
        )]
    }

    pub fn method(&self) -> String {
        self.method.as_deref().unwrap_or("GET").to_ascii_uppercase()
    }

    /// The name shown to people: the given one, or `GET /health`.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!("{} {}", self.method(), self.path),
        }
    }

    /// Checks what serde cannot; `at` is the field path of this check, e.g. `checks[2]`.
    pub fn validate(&self, at: &str) -> Result<(), HttpCheckError> {
        let method = self.method();
        if !METHODS.contains(&method.as_str()) {
            return Err(HttpCheckError::field(
                format!("{at}.method"),
                format!("`{method}` is not one of {}", METHODS.join(", ")),
            ));
        }
        check_path(&self.path, &format!("{at}.path"))?;
        for (name, value) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(HttpCheckError::field(
                    format!("{at}.headers"),
                    format!("`{name}` is not a valid header name"),
                ));
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                return Err(HttpCheckError::field(
                    format!("{at}.headers.{name}"),
                    "is not a valid header value (printable ASCII only)",
                ));
            }
        }
        if let Some(re) = &self.body_regex {
            regex::Regex::new(re).map_err(|e| {
                HttpCheckError::field(
                    format!("{at}.body_regex"),
                    format!("not a valid regular expression: {e}"),
                )
            })?;
        }
        for pointer in self.json.keys() {
            check_pointer(pointer, &format!("{at}.json"))?;
        }
        if self.max_latency_ms == Some(0) {
            return Err(HttpCheckError::field(
                format!("{at}.max_latency_ms"),
                "must be above 0",
            ));
        }
        Ok(())
    }
}

/// Where the app reports its version, and what it must say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionCheck {
    /// `/version` when left out.
    #[serde(default = "default_version_path")]
    pub path: String,
    /// The version the environment must serve, e.g. the VersionLabel or `#{SourceVariables.CommitId}`.
    pub expected: String,
    /// Read the version from this JSON pointer of the body (e.g. `/version`) instead of the whole body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_pointer: Option<String>,
    /// Read the version from this response header (e.g. `X-App-Version`) instead of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

fn default_version_path() -> String {
    "/version".into()
}

impl VersionCheck {
    pub fn validate(&self, at: &str) -> Result<(), HttpCheckError> {
        check_path(&self.path, &format!("{at}.path"))?;
        if self.expected.trim().is_empty() {
            return Err(HttpCheckError::field(
                format!("{at}.expected"),
                "is empty; give the version the environment must serve",
            ));
        }
        if let Some(p) = &self.json_pointer {
            check_pointer(p, &format!("{at}.json_pointer"))?;
        }
        if self.json_pointer.is_some() && self.header.is_some() {
            return Err(HttpCheckError::field(
                at,
                "give either `json_pointer` or `header`, not both",
            ));
        }
        if let Some(h) = &self.header {
            if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(HttpCheckError::field(
                    format!("{at}.header"),
                    format!("`{h}` is not a valid header name"),
                ));
            }
        }
        Ok(())
    }

    pub fn display_name(&self) -> String {
        format!("version {}", self.path)
    }
}

fn check_path(path: &str, field: &str) -> Result<(), HttpCheckError> {
    if !path.starts_with('/') {
        return Err(HttpCheckError::field(
            field,
            format!("`{path}` must start with `/`"),
        ));
    }
    if path.contains('#') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(HttpCheckError::field(
            field,
            format!("`{path}` may not contain spaces, control characters or `#`"),
        ));
    }
    Ok(())
}

fn check_pointer(pointer: &str, field: &str) -> Result<(), HttpCheckError> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(HttpCheckError::field(
            field,
            format!("`{pointer}` is not a JSON pointer; pointers start with `/`, e.g. `/status`"),
        ));
    }
    Ok(())
}

/// One accepted status or range of statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPattern {
    Exact(u16),
    /// `2xx`: the digit is the hundreds.
    Class(u8),
    Range(u16, u16),
}

impl StatusPattern {
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusPattern::Exact(s) => s == status,
            StatusPattern::Class(c) => status / 100 == u16::from(c),
            StatusPattern::Range(a, b) => (a..=b).contains(&status),
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase();
        let bad = || {
            format!(
                "`{text}` is not a status; use e.g. 200, \"2xx\", \"200-204\" or a list of these"
            )
        };
        let code = |s: &str| -> Result<u16, String> {
            match s.parse::<u16>() {
                Ok(n) if (100..=599).contains(&n) => Ok(n),
                _ => Err(bad()),
            }
        };
        if let Some(digit) = t.strip_suffix("xx") {
            return match digit.parse::<u8>() {
                Ok(d) if (1..=5).contains(&d) => Ok(StatusPattern::Class(d)),
                _ => Err(bad()),
            };
        }
        if let Some((a, b)) = t.split_once('-') {
            let (a, b) = (code(a)?, code(b)?);
            if a > b {
                return Err(bad());
            }
            return Ok(StatusPattern::Range(a, b));
        }
        code(&t).map(StatusPattern::Exact)
    }
}

impl fmt::Display for StatusPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusPattern::Exact(s) => write!(f, "{s}"),
            StatusPattern::Class(c) => write!(f, "{c}xx"),
            StatusPattern::Range(a, b) => write!(f, "{a}-{b}"),
        }
    }
}

/// Accepted statuses: any of the patterns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "serde_json::Value")]
pub struct StatusSet(pub Vec<StatusPattern>);

impl StatusSet {
    pub fn any_2xx() -> Self {
        StatusSet(vec![StatusPattern::Class(2)])
    }

    /// What a load balancer answers while no instance is ready yet: 502, 503, 504.
    pub fn gateway_errors() -> Self {
        StatusSet(vec![StatusPattern::Range(502, 504)])
    }

    pub fn matches(&self, status: u16) -> bool {
        self.0.iter().any(|p| p.matches(status))
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join(" or "))
    }
}

impl TryFrom<serde_json::Value> for StatusSet {
    type Error = String;
    fn try_from(value: serde_json::Value) -> Result<Self, String> {
        let one = |v: &serde_json::Value| match v {
            serde_json::Value::Number(n) => StatusPattern::parse(&n.to_string()),
            serde_json::Value::String(s) => StatusPattern::parse(s),
            other => Err(format!(
                "`{other}` is not a status; use e.g. 200, \"2xx\", \"200-204\" or a list of these"
            )),
        };
        let patterns = match &value {
            serde_json::Value::Array(items) => {
                items.iter().map(one).collect::<Result<Vec<_>, _>>()?
            }
            v => vec![one(v)?],
        };
        if patterns.is_empty() {
            return Err("the list of statuses is empty".into());
        }
        Ok(StatusSet(patterns))
    }
}

impl From<StatusSet> for serde_json::Value {
    fn from(s: StatusSet) -> Self {
        let items: Vec<serde_json::Value> =
            s.0.iter()
                .map(|p| match p {
                    StatusPattern::Exact(n) => serde_json::Value::from(*n),
                    other => serde_json::Value::from(other.to_string()),
                })
                .collect();
        match <[serde_json::Value; 1]>::try_from(items) {
            Ok([one]) => one,
            Err(items) => serde_json::Value::Array(items),
        }
    }
}

/// Which redirects a check follows. A redirect that is not followed is judged as the response itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Redirects {
    /// Never follow.
    None,
    /// Follow only to the same host name (the default; scheme and port may change, e.g. http -> https):
    /// a redirect to another host would make the check pass on a site that is not the environment under
    /// test.
    #[default]
    SameHost,
    /// Follow anywhere (at most [`MAX_REDIRECTS`] hops).
    Any,
}

pub const MAX_REDIRECTS: usize = 5;

impl Redirects {
    pub fn as_str(self) -> &'static str {
        match self {
            Redirects::None => "none",
            Redirects::SameHost => "same-host",
            Redirects::Any => "any",
        }
    }
}

/// The base URL every check path is appended to. A bare host name (a Beanstalk CNAME, as
/// `#{Stage.Cname}` gives it) means `http://` it.
pub fn parse_base_url(text: &str) -> Result<Url, HttpCheckError> {
    let field = "url";
    let text = text.trim();
    if text.is_empty() {
        return Err(HttpCheckError::field(field, "is empty"));
    }
    if text.contains("#{") {
        return Err(HttpCheckError::field(
            field,
            format!("`{text}` still holds an unresolved pipeline variable; check the namespace and variable name"),
        ));
    }
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| HttpCheckError::field(field, format!("`{text}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(HttpCheckError::field(
            field,
            format!("`{text}`: only http and https are supported"),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(HttpCheckError::field(
            field,
            format!("`{text}` has no host"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(HttpCheckError::field(
            field,
            format!("`{text}`: give a base URL without query, fragment or user; put queries in check paths"),
        ));
    }
    Ok(url)
}

/// `base` + `path`, keeping any path prefix of the base (`http://h/app` + `/health` = `http://h/app/health`).
pub fn join(base: &Url, path: &str) -> Result<Url, url::ParseError> {
    let prefix = base.as_str().trim_end_matches('/');
    Url::parse(&format!("{prefix}{path}"))
}

/// One `resolve` entry: `host` -> `ip[:port]`. Without a port, the URL's port is used.
pub fn parse_resolve(host: &str, addr: &str) -> Result<(String, SocketAddr), HttpCheckError> {
    let field = format!("resolve.{host}");
    if host.is_empty() || host.contains(['/', ':', ' ']) {
        return Err(HttpCheckError::field(
            "resolve",
            format!("`{host}` is not a host name"),
        ));
    }
    let addr = addr.trim();
    let parsed = addr
        .parse::<SocketAddr>()
        .or_else(|_| addr.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
        .map_err(|_| {
            HttpCheckError::field(
                field,
                format!("`{addr}` is not an IP address with an optional port, e.g. 10.0.1.7:8080"),
            )
        })?;
    Ok((host.to_ascii_lowercase(), parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_from_numbers_strings_and_lists() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("200", Ok("200")),
            ("\"2xx\"", Ok("2xx")),
            ("\"2XX\"", Ok("2xx")),
            ("\"200-204\"", Ok("200-204")),
            ("[200, \"3xx\"]", Ok("200 or 3xx")),
            ("\"6xx\"", Err("`6xx` is not a status")),
            ("99", Err("`99` is not a status")),
            ("\"204-200\"", Err("`204-200` is not a status")),
            ("\"ok\"", Err("`ok` is not a status")),
            ("true", Err("`true` is not a status")),
            ("[]", Err("empty")),
        ];
        for (json, expected) in cases {
            let got = serde_json::from_str::<StatusSet>(json).map(|s| s.to_string());
            match (got, expected) {
                (Ok(s), Ok(e)) => assert_eq!(&s, e, "{json}"),
                (Err(err), Err(e)) => assert!(err.to_string().contains(e), "{json}: {err}"),
                (got, expected) => panic!("{json}: got {got:?}, expected {expected:?}"),
            }
        }
        let set: StatusSet = serde_json::from_str("[\"2xx\", 304]").unwrap();
        assert!(set.matches(204) && set.matches(304) && !set.matches(301));
        assert_eq!(serde_json::to_string(&set).unwrap(), "[\"2xx\",304]");
        assert_eq!(
            serde_json::to_string(&StatusSet(vec![StatusPattern::Exact(200)])).unwrap(),
            "200"
        );
    }

    #[test]
    fn base_urls_accept_a_bare_cname_and_refuse_what_cannot_be_checked() {
        let ok = [
            (
                "shop-blue.us-east-1.elasticbeanstalk.com",
                "http://shop-blue.us-east-1.elasticbeanstalk.com/",
            ),
            ("https://shop.example.com/", "https://shop.example.com/"),
            ("http://127.0.0.1:8080/app", "http://127.0.0.1:8080/app"),
            ("  shop.example.com:8080  ", "http://shop.example.com:8080/"),
        ];
        for (text, expected) in ok {
            assert_eq!(parse_base_url(text).unwrap().as_str(), expected, "{text}");
        }
        let bad = [
            ("", "is empty"),
            ("#{Stage.Url}", "unresolved pipeline variable"),
            ("ftp://x.example", "only http and https"),
            ("http://", "is not a URL"),
            ("http://x.example/?a=1", "without query"),
        ];
        for (text, expected) in bad {
            let err = parse_base_url(text).unwrap_err().to_string();
            assert!(err.starts_with("`url`: "), "{err}");
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn paths_join_onto_the_base_keeping_its_prefix() {
        let cases = [
            ("http://h.example/", "/health", "http://h.example/health"),
            (
                "http://h.example/app/",
                "/health?x=1",
                "http://h.example/app/health?x=1",
            ),
            ("http://h.example/app", "/", "http://h.example/app/"),
        ];
        for (base, path, expected) in cases {
            let base = Url::parse(base).unwrap();
            assert_eq!(join(&base, path).unwrap().as_str(), expected);
        }
    }

    #[test]
    fn checks_are_validated_naming_the_field() {
        let parse = |json: &str| serde_json::from_str::<CheckSpec>(json).unwrap();
        let cases = [
            (
                r#"{"path":"health"}"#,
                "`checks[0].path`: `health` must start with `/`",
            ),
            (
                r#"{"path":"/","method":"FETCH"}"#,
                "`checks[0].method`: `FETCH` is not one of",
            ),
            (
                r#"{"path":"/","body_regex":"("}"#,
                "`checks[0].body_regex`: not a valid regular expression",
            ),
            (
                r#"{"path":"/","json":{"status":"ok"}}"#,
                "`checks[0].json`: `status` is not a JSON pointer",
            ),
            (
                r#"{"path":"/","headers":{"bad name":"x"}}"#,
                "`checks[0].headers`: `bad name` is not a valid header name",
            ),
            (
                r#"{"path":"/","max_latency_ms":0}"#,
                "`checks[0].max_latency_ms`: must be above 0",
            ),
        ];
        for (json, expected) in cases {
            let err = parse(json).validate("checks[0]").unwrap_err().to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
        let ok = parse(
            r#"{"path":"/api","method":"post","headers":{"X-Token":"a"},"status":[200,201],"body_regex":"^ok","json":{"/status":"ok"},"max_latency_ms":500}"#,
        );
        ok.validate("checks[0]").unwrap();
        assert_eq!(ok.display_name(), "POST /api");
        assert!(
            serde_json::from_str::<CheckSpec>(r#"{"path":"/","statuz":200}"#)
                .unwrap_err()
                .to_string()
                .contains("unknown field `statuz`")
        );
    }

    #[test]
    fn version_checks_and_resolve_entries_are_validated() {
        let v: VersionCheck = serde_json::from_str(r#"{"expected":"v42"}"#).unwrap();
        assert_eq!(v.path, "/version");
        v.validate("version").unwrap();
        let empty: VersionCheck = serde_json::from_str(r#"{"expected":" "}"#).unwrap();
        assert!(empty
            .validate("version")
            .unwrap_err()
            .to_string()
            .contains("`version.expected`: is empty"));
        let both: VersionCheck =
            serde_json::from_str(r#"{"expected":"1","json_pointer":"/v","header":"X-V"}"#).unwrap();
        assert!(both
            .validate("version")
            .unwrap_err()
            .to_string()
            .contains("not both"));

        assert_eq!(
            parse_resolve("Shop.Example.com", "127.0.0.1:8080").unwrap(),
            (
                "shop.example.com".to_string(),
                "127.0.0.1:8080".parse().unwrap()
            )
        );
        assert_eq!(parse_resolve("h", "10.0.0.1").unwrap().1.port(), 0);
        assert_eq!(parse_resolve("h", "[::1]:80").unwrap().1.port(), 80);
        let err = parse_resolve("h", "localhost:80").unwrap_err().to_string();
        assert!(
            err.contains("`resolve.h`: `localhost:80` is not an IP address"),
            "{err}"
        );
        assert!(parse_resolve("h:80", "10.0.0.1").is_err());
    }
}
