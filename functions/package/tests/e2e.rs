//! The package binary under the real lambda_runtime, against a local Runtime API: S3 on moto, Elastic
//! Beanstalk and the CodePipeline job API on local-aws.
//!
//! Not held to its role here: these tests cover how package handles S3's and Beanstalk's answers,
//! several of which its role from the template never lets it reach (a `bucket` of the user's choice,
//! another account's Beanstalk bucket); permissions.rs runs it as its role, each path the pipeline's run
//! cannot take shown refused without the action it needs.

// Test helpers may panic: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use local_aws::beanstalk::Options;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use test_support::clients;
use test_support::lambda::{Function, Invocation};
use test_support::moto::Moto;
use test_support::{job_event, LocalAws};
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

const ARTIFACTS: &str = "codepipeline-artifacts";
/// The fixture's artifact key and revision: the default label is `<revision>-<last key segment>`.
const KEY: &str = "shop-pipeline/BuildOutpu/abc123";
const LABEL: &str = "4f2a9c1e0b7d-abc123";
/// elasticbeanstalk-<the function's region>-<the fixture's accountId>
const BUNDLES: &str = "elasticbeanstalk-us-east-1-111111111111";

struct Env {
    local: LocalAws,
    _moto: Moto,
    s3: aws_sdk_s3::Client,
    eb: aws_sdk_elasticbeanstalk::Client,
    function: Function,
}

async fn env() -> Env {
    env_with(Options::default()).await
}

async fn env_with(options: Options) -> Env {
    let (local, moto) = test_support::bed::servers(options).await;
    let s3 = clients::s3(&moto.endpoint());
    let eb = clients::beanstalk(&local.endpoint());
    for bucket in [ARTIFACTS, BUNDLES] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let function = test_support::lambda::start(
        Path::new(env!("CARGO_BIN_EXE_package")),
        &[
            ("AWS_ENDPOINT_URL_CODEPIPELINE", local.endpoint()),
            ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", local.endpoint()),
            ("AWS_ENDPOINT_URL_S3", moto.endpoint()),
        ],
    )
    .await;
    Env {
        local,
        _moto: moto,
        s3,
        eb,
        function,
    }
}

impl Env {
    async fn put(&self, key: &str, bytes: Vec<u8>) {
        self.s3
            .put_object()
            .bucket(ARTIFACTS)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .unwrap();
    }

    /// Invokes the function and returns what it reported: (operation, request body).
    async fn run(&mut self, event: &Value) -> (String, Value) {
        assert_eq!(
            self.function.invoke(event.clone()).await.unwrap(),
            Invocation::Response(Value::Null)
        );
        let id = event["CodePipeline.job"]["id"].as_str().unwrap();
        let mut results: Vec<_> = self
            .local
            .job_results()
            .into_iter()
            .filter(|r| r.job_id == id)
            .collect();
        let r = results.pop().expect("a report");
        (r.operation, r.request)
    }

    async fn succeeds(&mut self, event: &Value) -> Value {
        let (operation, body) = self.run(event).await;
        assert_eq!(operation, "PutJobSuccessResult", "{body}");
        assert!(body.get("continuationToken").is_none(), "{body}");
        body
    }

    async fn fails(&mut self, event: &Value, kind: &str, parts: &[&str]) -> String {
        let (operation, body) = self.run(event).await;
        assert_eq!(operation, "PutJobFailureResult", "{body}");
        assert_eq!(body["failureDetails"]["type"], kind, "{body}");
        let message = body["failureDetails"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        for part in parts {
            assert!(message.contains(part), "expected {part:?} in {message:?}");
        }
        message
    }

    fn calls(&self, operation: &str) -> u64 {
        self.local
            .call_counts()
            .get(&format!("ElasticBeanstalk.{operation}"))
            .copied()
            .unwrap_or(0)
    }

    async fn bundle_objects(&self) -> Vec<(String, String)> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(BUNDLES)
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .map(|o| {
                (
                    o.key().unwrap().to_string(),
                    format!("{:?}", o.last_modified()),
                )
            })
            .collect()
    }

    /// SHA-256 and metadata checksum of a stored bundle, read as a stream.
    async fn stored(&self, key: &str) -> (String, Option<String>, Vec<String>) {
        let mut object = self
            .s3
            .get_object()
            .bucket(BUNDLES)
            .key(key)
            .send()
            .await
            .unwrap();
        let meta = object
            .metadata()
            .and_then(|m| m.get("beanswap-sha256").cloned());
        let file = tempfile::tempfile().unwrap();
        let mut writer = std::io::BufWriter::new(file);
        let mut hasher = Sha256::new();
        while let Some(chunk) = object.body.try_next().await.unwrap() {
            hasher.update(&chunk);
            writer.write_all(&chunk).unwrap();
        }
        let file = writer.into_inner().unwrap();
        let archive = zip::ZipArchive::new(file).unwrap();
        let names = archive.file_names().map(str::to_string).collect();
        (hex::encode(hasher.finalize()), meta, names)
    }

    async fn version(
        &self,
        label: &str,
    ) -> Option<aws_sdk_elasticbeanstalk::types::ApplicationVersionDescription> {
        self.eb
            .describe_application_versions()
            .application_name("shop")
            .version_labels(label)
            .send()
            .await
            .unwrap()
            .application_versions()
            .first()
            .cloned()
    }
}

/// A job for the artifact at `key` with these UserParameters.
fn event(params: &str, key: &str) -> Value {
    let mut event = job_event(params);
    event["CodePipeline.job"]["data"]["inputArtifacts"][0]["location"]["s3Location"]["objectKey"] =
        json!(key);
    event
}

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, body) in entries {
        w.start_file(*name, SimpleFileOptions::default()).unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// `bytes` with the name `from` (in its local header and its central directory record) replaced by `to`,
/// of the same length: how a test gets a zip with two entries of one name, which `ZipWriter` refuses to
/// write.
fn renamed(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at: Vec<usize> = bytes
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(at.len(), 2, "a local header and a central directory record");
    for i in at {
        bytes[i..i + from.len()].copy_from_slice(to);
    }
    bytes
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn variables(body: &Value) -> Value {
    body["outputVariables"].clone()
}

fn summary(body: &Value) -> String {
    body["executionDetails"]["summary"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_normal_app_is_copied_server_side_and_a_rerun_creates_nothing() {
    let mut env = env().await;
    let bundle = test_support::app_bundle("v1", &[]);
    env.put(KEY, bundle.clone()).await;

    let first = event(r#"{"application":"shop","create_application":true}"#, KEY);
    let body = env.succeeds(&first).await;
    let key = format!("shop/{LABEL}.zip");
    assert_eq!(
        variables(&body),
        json!({"VersionLabel": LABEL, "BundleBucket": BUNDLES, "BundleKey": key,
               "BundleSha256": sha256(&bundle)})
    );
    // What the crate declares (and the pipeline template test relies on) is what a run really sets.
    let mut set: Vec<String> = variables(&body)
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut declared: Vec<String> = package::OUTPUT_VARIABLES
        .iter()
        .map(|v| v.to_string())
        .collect();
    set.sort();
    declared.sort();
    assert_eq!(set, declared);
    let text = summary(&body);
    assert!(
        text.contains(&format!("created version `{LABEL}` of `shop`")),
        "{text}"
    );
    assert!(text.contains("copied server-side"), "{text}");
    assert!(!text.contains("warning"), "the app has a Procfile: {text}");
    // The stored bundle is the artifact itself, its checksum recorded as metadata.
    let (stored_sha, meta, _) = env.stored(&key).await;
    assert_eq!(stored_sha, sha256(&bundle));
    assert_eq!(meta.as_deref(), Some(sha256(&bundle).as_str()));
    let version = env.version(LABEL).await.unwrap();
    let source = version.source_bundle().unwrap();
    assert_eq!(
        (source.s3_bucket(), source.s3_key()),
        (Some(BUNDLES), Some(key.as_str()))
    );
    assert_eq!(env.calls("CreateApplicationVersion"), 1);

    // The same build again (a retried action: a new job id, the same artifact): nothing is created.
    let objects = env.bundle_objects().await;
    let again = event(r#"{"application":"shop","create_application":true}"#, KEY);
    let body = env.succeeds(&again).await;
    assert_eq!(variables(&body)["VersionLabel"], LABEL);
    assert_eq!(variables(&body)["BundleSha256"], sha256(&bundle));
    let text = summary(&body);
    assert!(text.contains("already exists with this bundle"), "{text}");
    assert!(text.contains("nothing created"), "{text}");
    assert_eq!(
        env.calls("CreateApplicationVersion"),
        1,
        "no second version"
    );
    assert_eq!(env.bundle_objects().await, objects, "no object written");

    // Another bundle under the same label: refused, naming both checksums and the existing bundle.
    let other = test_support::app_bundle("v2", &[]);
    env.put(KEY, other.clone()).await;
    let conflict = event(r#"{"application":"shop"}"#, KEY);
    env.fails(
        &conflict,
        "ConfigurationError",
        &[
            &format!("version label `{LABEL}` already exists in application `shop`"),
            &format!("s3://{BUNDLES}/{key} has sha256 {}", sha256(&bundle)),
            &format!("this job's bundle has sha256 {}", sha256(&other)),
        ],
    )
    .await;
    assert_eq!(env.calls("CreateApplicationVersion"), 1);
    assert_eq!(env.bundle_objects().await, objects);
}

#[tokio::test]
async fn a_nested_top_level_folder_is_flattened_and_uploaded() {
    let mut env = env().await;
    let bundle = zip_of(&[
        ("shop-1.0/", b""),
        ("shop-1.0/main.py", b"print('hi')\n"),
        ("shop-1.0/lib/util.py", b"X = 1\n"),
        ("__MACOSX/shop-1.0/._main.py", b"junk"),
        ("shop-1.0/.DS_Store", b"junk"),
    ]);
    env.put(KEY, bundle.clone()).await;
    let body = env
        .succeeds(&event(
            r#"{"application":"shop","create_application":true,"key_prefix":"bundles","version_label":"{application}-{sha256_short}"}"#,
            KEY,
        ))
        .await;
    let vars = variables(&body);
    let label = vars["VersionLabel"].as_str().unwrap();
    let key = vars["BundleKey"].as_str().unwrap();
    assert_eq!(key, format!("bundles/shop/{label}.zip"));
    let text = summary(&body);
    assert!(
        text.contains("flattened: every file sat under the top-level folder `shop-1.0/`"),
        "{text}"
    );
    assert!(
        text.contains("moved everything up out of `shop-1.0/` to the root"),
        "{text}"
    );
    assert!(text.contains("dropped 2 macOS metadata entries"), "{text}");
    assert!(
        text.contains("warning: no Procfile or known entry point"),
        "{text}"
    );
    assert!(text.contains("uploaded"), "{text}");
    let (stored_sha, meta, names) = env.stored(key).await;
    assert_eq!(vars["BundleSha256"], stored_sha.as_str());
    assert_eq!(meta.as_deref(), Some(stored_sha.as_str()));
    assert_ne!(stored_sha, sha256(&bundle), "the bundle was rewritten");
    assert_eq!(label, format!("shop-{}", &stored_sha[..12]));
    assert_eq!(names, ["main.py", "lib/util.py"]);
    assert!(env.version(label).await.is_some());
}

#[tokio::test]
async fn unsafe_or_broken_bundles_fail_naming_the_cause_and_create_nothing() {
    let mut env = env().await;
    let mut bomb = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    bomb.start_file("Procfile", SimpleFileOptions::default())
        .unwrap();
    bomb.write_all(b"web: ./app\n").unwrap();
    let deflated = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .large_file(false);
    bomb.start_file("data/zeros.bin", deflated).unwrap();
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..64 {
        bomb.write_all(&zeros).unwrap();
    }
    let bomb = bomb.finish().unwrap().into_inner();
    assert!(
        bomb.len() < 200_000,
        "64 MB of zeros deflate to {} bytes",
        bomb.len()
    );
    let mut symlink = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    symlink
        .start_file("Procfile", SimpleFileOptions::default())
        .unwrap();
    symlink
        .add_symlink("keys", "../../../root/.ssh", SimpleFileOptions::default())
        .unwrap();
    let symlink = symlink.finish().unwrap().into_inner();

    let cases: Vec<(&str, Vec<u8>, &str, Vec<&str>)> = vec![
        ("p/Build/slip", zip_of(&[("Procfile", b"web: x"), ("../../etc/cron.d/evil", b"* * * * * root sh")]),
         r#"{"application":"shop","create_application":true}"#,
         vec!["artifact `BuildOutput` (s3://codepipeline-artifacts/p/Build/slip)", "entry `../../etc/cron.d/evil` climbs out of the bundle root", "zip slip"]),
        ("p/Build/abs", zip_of(&[("/etc/passwd", b"root")]),
         r#"{"application":"shop","create_application":true}"#,
         vec!["entry `/etc/passwd` is an absolute path"]),
        ("p/Build/link", symlink,
         r#"{"application":"shop","create_application":true}"#,
         vec!["symlink `keys` points to `../../../root/.ssh`, outside the bundle"]),
        ("p/Build/bomb", bomb.clone(),
         r#"{"application":"shop","create_application":true}"#,
         vec!["entry `data/zeros.bin` expands", "max_compression_ratio", "zip bomb"]),
        ("p/Build/bomb", bomb,
         r#"{"application":"shop","create_application":true,"max_compression_ratio":100000,"max_uncompressed_mb":32}"#,
         vec!["the bundle expands to more than 33554432 bytes (passed at entry `data/zeros.bin`", "max_uncompressed_mb"]),
        ("p/Build/text", b"this is a build log, not a zip".to_vec(),
         r#"{"application":"shop","create_application":true}"#,
         vec!["artifact `BuildOutput` (s3://codepipeline-artifacts/p/Build/text): the bundle is not a zip file"]),
        ("p/Build/main", zip_of(&[("main.py", b"")]),
         r#"{"application":"shop","create_application":true,"require_entry_point":true}"#,
         vec!["no Procfile or known entry point", "require_entry_point"]),
    ];
    for (key, bytes, params, parts) in cases {
        env.put(key, bytes).await;
        env.fails(&event(params, key), "ConfigurationError", &parts)
            .await;
    }

    // Configuration mistakes name the field or the missing piece.
    env.put(KEY, test_support::app_bundle("v1", &[])).await;
    // Beanstalk's own bucket does not exist yet: package asks Beanstalk to make it (CreateStorageLocation),
    // which answers with its account's bucket; this job claims another account, so the failure says both.
    env.s3.delete_bucket().bucket(BUNDLES).send().await.unwrap();
    env.fails(
        &event(r#"{"application":"shop","create_application":true}"#, KEY),
        "ConfigurationError",
        &[
            &format!("S3 CopyObject on s3://{BUNDLES}/shop/{LABEL}.zip failed: NoSuchBucket"),
            // local-aws made the storage bucket of its own account (123456789012), not the job's.
            "Elastic Beanstalk's storage bucket is elasticbeanstalk-us-east-1-123456789012, not",
            "set UserParameters field `bucket`",
        ],
    )
    .await;
    assert_eq!(env.calls("CreateStorageLocation"), 1);
    env.s3.create_bucket().bucket(BUNDLES).send().await.unwrap();
    let mut no_account = event(r#"{"application":"shop"}"#, KEY);
    no_account["CodePipeline.job"]
        .as_object_mut()
        .unwrap()
        .remove("accountId");
    env.fails(
        &no_account,
        "ConfigurationError",
        &["UserParameters field `bucket` is required", "accountId"],
    )
    .await;
    env.fails(
        &event(r#"{"application":"shop","artifact":"Source"}"#, KEY),
        "ConfigurationError",
        &["UserParameters field `artifact`: `Source` is not an input artifact"],
    )
    .await;
    env.fails(
        &event(r#"{"application":"shop","bucket":"no-such-bucket"}"#, KEY),
        "ConfigurationError",
        &["S3 CopyObject on s3://no-such-bucket/shop/", "NoSuchBucket"],
    )
    .await;
    env.fails(
        &event(r#"{"application":"nobody"}"#, KEY),
        "ConfigurationError",
        &["No Application named 'nobody' found", "create_application"],
    )
    .await;
    env.fails(
        &event(r#"{"application":"shop"}"#, "p/Build/missing"),
        "JobFailed",
        &["S3 GetObject on s3://codepipeline-artifacts/p/Build/missing failed: NoSuchKey"],
    )
    .await;
    assert_eq!(
        env.calls("CreateApplicationVersion"),
        1,
        "only the missing application was tried"
    );
    assert!(env
        .bundle_objects()
        .await
        .iter()
        .all(|(k, _)| k.starts_with("nobody/")));
}

#[tokio::test]
async fn a_repeated_entry_name_is_refused_naming_both_entries() {
    let mut env = env().await;
    // A ratio bomb, then a small entry of the same name: a zip reader that files entries by name sees only
    // the small one, and unzip on an instance may unpack the bomb.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("Procfile", SimpleFileOptions::default())
        .unwrap();
    w.write_all(b"web: ./app\n").unwrap();
    let deflated = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    w.start_file("data/zeros.bin", deflated).unwrap();
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..64 {
        w.write_all(&zeros).unwrap();
    }
    w.start_file("data/zeros.biN", SimpleFileOptions::default())
        .unwrap();
    w.write_all(b"small").unwrap();
    let bundle = renamed(
        w.finish().unwrap().into_inner(),
        b"data/zeros.biN",
        b"data/zeros.bin",
    );
    env.put(KEY, bundle).await;
    env.fails(
        &event(r#"{"application":"shop","create_application":true}"#, KEY),
        "ConfigurationError",
        &[
            &format!("artifact `BuildOutput` (s3://{ARTIFACTS}/{KEY})"),
            "entries `data/zeros.bin` (number 2 in the zip) and `data/zeros.bin` (number 3) have the same name",
        ],
    )
    .await;
    assert_eq!(env.calls("CreateApplicationVersion"), 0);
    assert!(env.bundle_objects().await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn at_the_version_limit_it_says_to_prune_or_prunes_when_asked() {
    let mut env = env_with(Options {
        max_application_versions: 2,
        ..Options::default()
    })
    .await;
    for (i, key) in ["p/B/one", "p/B/two"].iter().enumerate() {
        env.put(key, test_support::app_bundle(&format!("v{i}"), &[]))
            .await;
        env.succeeds(&event(
            r#"{"application":"shop","create_application":true}"#,
            key,
        ))
        .await;
    }
    env.put("p/B/three", test_support::app_bundle("v3", &[]))
        .await;
    let message = env
        .fails(
            &event(r#"{"application":"shop"}"#, "p/B/three"),
            "JobFailed",
            &[
                "refused to create version `4f2a9c1e0b7d-three` of `shop`",
                "version limit",
                "TooManyApplicationVersionsException",
                "retire",
                "prune_keep",
            ],
        )
        .await;
    assert!(!message.contains("pruned"), "{message}");

    let body = env
        .succeeds(&event(
            r#"{"application":"shop","prune_keep":1}"#,
            "p/B/three",
        ))
        .await;
    let text = summary(&body);
    assert!(
        text.contains("pruned 1 old unused versions of `shop` (4f2a9c1e0b7d-one)"),
        "{text}"
    );
    assert!(env.version("4f2a9c1e0b7d-one").await.is_none());
    assert!(env.version("4f2a9c1e0b7d-two").await.is_some());
    assert!(env.version("4f2a9c1e0b7d-three").await.is_some());
}

#[tokio::test]
async fn process_waits_through_continuation_tokens_until_processed_or_failed() {
    let mut env = env_with(Options {
        // Processing takes update_delay / 2: long enough to break the bundle meanwhile.
        update_delay: Duration::from_secs(4),
        ..Options::default()
    })
    .await;
    env.put(KEY, test_support::app_bundle("v1", &[])).await;
    let first = event(
        r#"{"application":"shop","create_application":true,"process":true}"#,
        KEY,
    );
    let (operation, body) = env.run(&first).await;
    assert_eq!(operation, "PutJobSuccessResult", "{body}");
    let token = body["continuationToken"]
        .as_str()
        .expect("a continuation token")
        .to_string();
    assert!(
        body.get("outputVariables").is_none(),
        "variables only on the final result: {body}"
    );
    assert!(summary(&body).contains("is Processing"), "{body}");

    let mut next = first.clone();
    next["CodePipeline.job"]["id"] = json!(uuid_like(1));
    next["CodePipeline.job"]["data"]["continuationToken"] = json!(token);
    let body = env.succeeds(&next).await;
    assert_eq!(variables(&body)["VersionLabel"], LABEL);
    let text = summary(&body);
    assert!(text.contains("processed by Elastic Beanstalk"), "{text}");
    assert_eq!(
        env.version(LABEL).await.unwrap().status().unwrap().as_str(),
        "Processed"
    );

    // A bundle that Beanstalk cannot process: the failure carries the status and the events.
    env.put("p/B/broken", test_support::app_bundle("v2", &[]))
        .await;
    let first = event(r#"{"application":"shop","process":true}"#, "p/B/broken");
    let (_, body) = env.run(&first).await;
    let token = body["continuationToken"]
        .as_str()
        .expect("a continuation token")
        .to_string();
    let key = "shop/4f2a9c1e0b7d-broken.zip";
    env.s3
        .put_object()
        .bucket(BUNDLES)
        .key(key)
        .body(ByteStream::from_static(b"not a zip any more"))
        .send()
        .await
        .unwrap();
    let mut next = first.clone();
    next["CodePipeline.job"]["id"] = json!(uuid_like(2));
    next["CodePipeline.job"]["data"]["continuationToken"] = json!(token);
    env.fails(
        &next,
        "JobFailed",
        &[
            "could not process version `4f2a9c1e0b7d-broken` of `shop`: status Failed",
            "ERROR Failed to process application version 4f2a9c1e0b7d-broken",
        ],
    )
    .await;
}

fn uuid_like(n: u32) -> String {
    format!("{n:08x}-abcd-4bcd-8bcd-{:012x}", u64::from(n) * 7919)
}

/// Incompressible bytes, fast: xorshift.
fn noise(seed: u64, out: &mut [u8]) {
    let mut state = seed | 1;
    for chunk in out.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

#[tokio::test]
async fn a_bundle_over_200_mb_streams_through_with_bounded_memory() {
    let mut env = env().await;
    env.function.timeout = Duration::from_secs(600);
    // 21 entries of 10 MiB, Stored (random data does not deflate, and deflating it is slow), under one
    // top-level folder: the bundle must be rewritten and goes up as a multipart upload.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.zip");
    {
        let file = std::fs::File::create(&path).unwrap();
        let mut w = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        w.start_file("release/Procfile", stored).unwrap();
        w.write_all(b"web: ./server\n").unwrap();
        let mut block = vec![0u8; 10 * 1024 * 1024];
        for i in 0..21 {
            noise(i + 1, &mut block);
            w.start_file(format!("release/assets/blob-{i:02}.bin"), stored)
                .unwrap();
            w.write_all(&block).unwrap();
        }
        w.finish().unwrap();
    }
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 200 * 1024 * 1024, "{size}");
    env.s3
        .put_object()
        .bucket(ARTIFACTS)
        .key(KEY)
        .body(ByteStream::from_path(&path).await.unwrap())
        .send()
        .await
        .unwrap();
    drop(dir);

    let body = env
        .succeeds(&event(
            r#"{"application":"shop","create_application":true}"#,
            KEY,
        ))
        .await;
    let vars = variables(&body);
    let text = summary(&body);
    assert!(text.contains("flattened"), "{text}");
    assert!(text.contains("bundle of 22 files"), "{text}");
    let (stored_sha, meta, names) = env.stored(vars["BundleKey"].as_str().unwrap()).await;
    assert_eq!(vars["BundleSha256"], stored_sha.as_str());
    assert_eq!(meta.as_deref(), Some(stored_sha.as_str()));
    assert_eq!(names.len(), 22);
    assert_eq!(names[0], "Procfile");
    assert_eq!(names[21], "assets/blob-20.bin");
}

#[tokio::test]
async fn a_version_made_outside_beanswap_is_compared_by_reading_its_bundle() {
    let mut env = env().await;
    let bundle = test_support::app_bundle("v1", &[]);
    // Uploaded and registered by hand: no checksum metadata, no tag.
    env.s3
        .put_object()
        .bucket(BUNDLES)
        .key("manual/shop.zip")
        .body(ByteStream::from(bundle.clone()))
        .send()
        .await
        .unwrap();
    env.eb
        .create_application()
        .application_name("shop")
        .send()
        .await
        .unwrap();
    env.eb
        .create_application_version()
        .application_name("shop")
        .version_label("manual-1")
        .source_bundle(
            aws_sdk_elasticbeanstalk::types::S3Location::builder()
                .s3_bucket(BUNDLES)
                .s3_key("manual/shop.zip")
                .build(),
        )
        .send()
        .await
        .unwrap();

    env.put(KEY, bundle.clone()).await;
    let body = env
        .succeeds(&event(
            r#"{"application":"shop","version_label":"manual-1"}"#,
            KEY,
        ))
        .await;
    assert_eq!(
        variables(&body),
        json!({"VersionLabel": "manual-1", "BundleBucket": BUNDLES, "BundleKey": "manual/shop.zip",
               "BundleSha256": sha256(&bundle)})
    );
    assert!(summary(&body).contains("nothing created"), "{body}");

    let other = test_support::app_bundle("v2", &[]);
    env.put(KEY, other.clone()).await;
    env.fails(
        &event(r#"{"application":"shop","version_label":"manual-1"}"#, KEY),
        "ConfigurationError",
        &[
            &format!(
                "s3://{BUNDLES}/manual/shop.zip has sha256 {}",
                sha256(&bundle)
            ),
            &format!("this job's bundle has sha256 {}", sha256(&other)),
        ],
    )
    .await;
    assert_eq!(
        env.calls("CreateApplicationVersion"),
        1,
        "only the manual one"
    );
}
