//! The awsQuery wire protocol: form-encoded requests in, XML out, as botocore's `query` serializer and
//! parser expect (lists as `Name.member.N`, results wrapped in `<OpResult>`, errors in `<ErrorResponse>`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::SystemTime;

/// A request's form parameters.
#[derive(Debug, Default, Clone)]
pub struct Params(BTreeMap<String, String>);

/// An error in the service's own words: its code, HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl QueryError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        QueryError {
            status,
            code,
            message: message.into(),
        }
    }
    /// The error Elastic Beanstalk gives for almost every bad argument.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidParameterValue", message)
    }
}

impl Params {
    pub fn parse(body: &[u8]) -> Params {
        Params(form_urlencoded::parse(body).into_owned().collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A required member, with botocore's constraint message when absent.
    pub fn required(&self, name: &str) -> Result<&str, QueryError> {
        self.get(name).ok_or_else(|| {
            QueryError::new(
                400,
                "MissingParameter",
                format!("The request must contain the parameter {name}"),
            )
        })
    }

    /// A string member checked against the model's length bounds.
    pub fn string(&self, name: &str, min: usize, max: usize) -> Result<Option<&str>, QueryError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => {
                let len = v.chars().count();
                if len < min || len > max {
                    return Err(QueryError::new(
                        400,
                        "ValidationError",
                        format!("1 validation error detected: Value '{v}' at '{name}' failed to satisfy constraint: Member must have length between {min} and {max}"),
                    ));
                }
                Ok(Some(v))
            }
        }
    }

    pub fn required_string(&self, name: &str, min: usize, max: usize) -> Result<&str, QueryError> {
        self.required(name)?;
        Ok(self.string(name, min, max)?.unwrap_or_default())
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, QueryError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(QueryError::invalid(format!(
                "Value '{other}' for {name} is not a boolean"
            ))),
        }
    }

    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, QueryError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(QueryError::new(
                    400,
                    "ValidationError",
                    format!("1 validation error detected: Value '{v}' at '{name}' failed to satisfy constraint: Member must have value between {min} and {max}"),
                )),
            },
        }
    }

    /// Whether any member starts with `prefix` (`Tags.` for a list of tags).
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.0
            .range(prefix.to_string()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(prefix))
    }

    /// `Name.member.1`, `Name.member.2`, ... in order.
    pub fn list(&self, name: &str) -> Vec<&str> {
        (1..)
            .map_while(|i| self.get(&format!("{name}.member.{i}")))
            .collect()
    }

    /// A list of structures: `Name.member.N.Field`, returned as one map per member.
    pub fn structs(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        let mut out = vec![];
        for i in 1.. {
            let prefix = format!("{name}.member.{i}.");
            let member: BTreeMap<String, String> = self
                .0
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| (k[prefix.len()..].to_string(), v.clone()))
                .collect();
            if member.is_empty() {
                break;
            }
            out.push(member);
        }
        out
    }
}

/// A small XML writer: elements are written in order, text is escaped.
#[derive(Default)]
pub struct Xml(String);

impl Xml {
    pub fn new() -> Self {
        Xml::default()
    }

    pub fn text(&mut self, name: &str, value: &str) -> &mut Self {
        let _ = write!(self.0, "<{name}>{}</{name}>", escape(value));
        self
    }

    pub fn opt(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            self.text(name, v);
        }
        self
    }

    pub fn time(&mut self, name: &str, at: SystemTime) -> &mut Self {
        self.text(name, &timestamp(at))
    }

    /// `<name>` + whatever `inner` writes + `</name>`.
    pub fn elem(&mut self, name: &str, inner: impl FnOnce(&mut Xml)) -> &mut Self {
        let _ = write!(self.0, "<{name}>");
        inner(self);
        let _ = write!(self.0, "</{name}>");
        self
    }

    /// A list of strings as `<name><member>..</member>..</name>`.
    pub fn strings<'a>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = &'a str>,
    ) -> &mut Self {
        self.elem(name, |x| {
            for item in items {
                x.text("member", item);
            }
        })
    }

    pub fn finish(self) -> String {
        self.0
    }
}

/// ISO 8601 with milliseconds, as AWS writes timestamps in query responses.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The success envelope: `<OpResponse xmlns><OpResult>..</OpResult><ResponseMetadata>..` (no Result
/// element for operations whose model has no output).
pub fn response(
    namespace: &str,
    operation: &str,
    result: Option<String>,
    request_id: &str,
) -> String {
    let result = result
        .map(|r| format!("<{operation}Result>{r}</{operation}Result>"))
        .unwrap_or_default();
    format!(
        "<{operation}Response xmlns=\"{namespace}\">{result}<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{operation}Response>"
    )
}

/// The error envelope botocore's query parser reads.
pub fn error_body(namespace: &str, e: &QueryError, request_id: &str) -> String {
    let kind = if e.status >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    format!(
        "<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
        e.code,
        escape(&e.message),
        request_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_structs() {
        let p = Params::parse(b"Action=X&Names.member.1=a&Names.member.2=b%20c&Tags.member.1.Key=k&Tags.member.1.Value=v&Tags.member.2.Key=k2&Tags.member.2.Value=v2");
        assert_eq!(p.list("Names"), vec!["a", "b c"]);
        let tags = p.structs("Tags");
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[1].get("Key").map(String::as_str), Some("k2"));
    }

    #[test]
    fn escapes_text() {
        let mut x = Xml::new();
        x.text("M", "a<b & 'c'");
        assert_eq!(x.finish(), "<M>a&lt;b &amp; &apos;c&apos;</M>");
    }
}
