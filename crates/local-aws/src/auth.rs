//! Each call checked against the policies of the identity that signed it (the access key in its
//! Authorization header), once the local run has registered identities; nothing is refused before.

use axum::http::HeaderMap;

use crate::state;
use crate::{beanstalk, cloudwatch, iam};

/// CloudWatch's permission check: each alarm the request names is a resource of the row's checks.
pub(super) fn authorize_cloudwatch(
    shared: &state::Shared,
    headers: &HeaderMap,
    operation: &str,
    names: &[String],
) -> Result<(), cloudwatch::CborError> {
    authorize(
        shared,
        headers,
        beanswap_iam::Service::CloudWatch,
        operation,
        |row| {
            let arns: Vec<Option<String>> = if names.is_empty() {
                vec![None]
            } else {
                names
                    .iter()
                    .map(|n| {
                        Some(format!(
                            "arn:aws:cloudwatch:{}:{}:alarm:{n}",
                            beanstalk::REGION,
                            beanstalk::ACCOUNT
                        ))
                    })
                    .collect()
            };
            arns.into_iter()
                .flat_map(|arn| iam::checks(row, |_| false, |_| arn.clone()))
                .collect()
        },
    )
    // CloudWatch's AccessDenied (query-compatible code AccessDenied, HTTP 403).
    .map_err(|message| cloudwatch::CborError {
        status: 403,
        code: "AccessDenied",
        message,
    })
}

/// The access key id a request was signed with.
pub(super) fn access_key(headers: &HeaderMap) -> Option<String> {
    beanswap_iam::identity::access_key(
        headers.get("authorization").and_then(|v| v.to_str().ok()),
        "",
    )
}

/// `Err(message)` when the registered identities refuse the request (nothing is refused before the
/// local run registers them).
pub(super) fn authorize(
    shared: &state::Shared,
    headers: &HeaderMap,
    service: beanswap_iam::Service,
    operation: &str,
    checks_of: impl FnOnce(&beanswap_iam::table::Operation) -> Vec<beanswap_iam::Check>,
) -> Result<(), String> {
    let identities = shared.lock().identities.clone();
    authorize_with(
        identities.as_deref(),
        headers,
        service,
        operation,
        checks_of,
    )
}

pub(super) fn authorize_with(
    identities: Option<&beanswap_iam::Identities>,
    headers: &HeaderMap,
    service: beanswap_iam::Service,
    operation: &str,
    checks_of: impl FnOnce(&beanswap_iam::table::Operation) -> Vec<beanswap_iam::Check>,
) -> Result<(), String> {
    let Some(identities) = identities else {
        return Ok(());
    };
    let key = access_key(headers);
    iam::authorize(identities, key.as_deref(), service, operation, checks_of).map_err(|r| {
        tracing::info!(%operation, refused = %r.message(), "refused by the caller's policies");
        r.message()
    })
}
