//! The job event and the app bundle the benchmarks use, built from this checkout (not through
//! test-support's helpers, which find the repository through the path they were compiled at).

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

/// A CodePipeline job event with a fresh job id and these UserParameters (the shape of
/// tests/fixtures/codepipeline-job.json).
pub fn job_event(user_parameters: &str) -> Value {
    json!({
        "CodePipeline.job": {
            "id": uuid::Uuid::new_v4().to_string(),
            "accountId": "111111111111",
            "data": {
                "actionConfiguration": {"configuration": {
                    "FunctionName": "beanswap-bench",
                    "UserParameters": user_parameters,
                }},
                "inputArtifacts": [{
                    "location": {"s3Location": {"bucketName": "codepipeline-artifacts", "objectKey": "shop-pipeline/BuildOutpu/abc123"}, "type": "S3"},
                    "revision": "4f2a9c1e0b7d",
                    "name": "BuildOutput",
                }],
                "outputArtifacts": [{
                    "location": {"s3Location": {"bucketName": "codepipeline-artifacts", "objectKey": "shop-pipeline/AppBundle/def456"}, "type": "S3"},
                    "revision": null,
                    "name": "AppBundle",
                }],
                "artifactCredentials": {
                    "secretAccessKey": "testing",
                    "sessionToken": "testing",
                    "accessKeyId": "testing",
                    "expirationTime": 4102444800000u64,
                },
            },
        }
    })
}

/// examples/app as a source bundle stamped with `version`.
pub fn app_bundle(root: &Path, version: &str) -> Result<Vec<u8>, String> {
    let app = root.join("examples/app");
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for name in ["Procfile", "app.py"] {
        let bytes =
            std::fs::read(app.join(name)).map_err(|e| format!("examples/app/{name}: {e}"))?;
        zip.start_file(name, options).map_err(|e| e.to_string())?;
        zip.write_all(&bytes).map_err(|e| e.to_string())?;
    }
    zip.start_file("VERSION", options)
        .map_err(|e| e.to_string())?;
    zip.write_all(format!("{version}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(zip.finish().map_err(|e| e.to_string())?.into_inner())
}
