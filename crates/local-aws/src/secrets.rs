//! Secrets Manager as the stand-in's instances reach it: GetSecretValue (and CreateSecret, for the local
//! run that plays CloudFormation) on moto, over Secrets Manager's JSON protocol
//! (`X-Amz-Target: secretsmanager.<Operation>`, `application/x-amz-json-1.1`). moto does not check
//! signatures; the Authorization header only names the service, which is how moto's one port tells
//! Secrets Manager from the others.

use serde_json::{json, Value};

/// Where Secrets Manager is: `$AWS_ENDPOINT_URL_SECRETS_MANAGER`, else moto's one port (`fallback`).
pub fn endpoint(fallback: Option<&str>) -> Option<String> {
    std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER")
        .ok()
        .or_else(|| fallback.map(str::to_string))
}

async fn call(
    http: &reqwest::Client,
    endpoint: &str,
    operation: &str,
    body: Value,
) -> Result<Value, String> {
    let response = http
        .post(endpoint)
        .header("X-Amz-Target", format!("secretsmanager.{operation}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=local/20250101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("Secrets Manager {operation}: {e}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("Secrets Manager {operation}: {e}"))?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        Ok(value)
    } else {
        Err(format!(
            "Secrets Manager {operation} failed ({status}): {} {}",
            value["__type"].as_str().unwrap_or_default(),
            value["message"]
                .as_str()
                .or(value["Message"].as_str())
                .unwrap_or(&text)
        ))
    }
}

/// GetSecretValue: the SecretString of `secret_id` (an ARN or a name).
pub async fn get_secret_value(
    http: &reqwest::Client,
    endpoint: &str,
    secret_id: &str,
) -> Result<String, String> {
    let value = call(
        http,
        endpoint,
        "GetSecretValue",
        json!({"SecretId": secret_id}),
    )
    .await?;
    value["SecretString"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("Secrets Manager GetSecretValue: {secret_id} has no SecretString"))
}

/// CreateSecret: the new secret's ARN.
pub async fn create_secret(
    http: &reqwest::Client,
    endpoint: &str,
    name: &str,
    secret_string: &str,
) -> Result<String, String> {
    let value = call(
        http,
        endpoint,
        "CreateSecret",
        json!({"Name": name, "SecretString": secret_string}),
    )
    .await?;
    value["ARN"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("Secrets Manager CreateSecret: no ARN in {value}"))
}
