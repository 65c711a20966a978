//! A deployment test bed: moto (S3, Route 53) and local-aws (Elastic Beanstalk, CodePipeline jobs, the
//! environments' router) wired together, SDK clients pointed at them, and a driver that runs an action's
//! real binary through its continuation tokens as CodePipeline would.
//!
//! Permissions are enforced as in `beanswap run`: each function binary calls AWS as its own role from
//! pipeline-template.json ([`crate::identities`]), local-aws and the proxy in front of moto hold its
//! calls to that role's policies, and a refusal is AWS's. The bed's own setup and checks (its clients,
//! [`clients`]) sign as the administrator. [`Bed::start_unenforced`] is the exception, with a reason.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_elasticbeanstalk::types::{EnvironmentDescription, S3Location};
use local_aws::beanstalk::Options;
use local_aws::lambda::{Function, Invocation};
use local_aws::proxy::CountingProxy;
use local_aws::{JobResult, LocalAws};
use serde_json::{json, Value};

use crate::clients;
use crate::identities::{self, BedIdentities, IdentitiesSpec};
use crate::moto::Moto;

/// The bucket test bundles live in.
pub const BUNDLES: &str = "beanswap-bundles";

pub struct Bed {
    pub local: LocalAws,
    pub moto: Moto,
    /// moto behind the proxy that holds S3 and Route 53 calls to the caller's policies: what the
    /// functions and the bed's own clients are pointed at.
    pub proxy: CountingProxy,
    /// The roles the functions run as (`None`: not enforced, see [`Bed::start_unenforced`]).
    pub identities: Option<BedIdentities>,
    /// The administrator's clients: the bed's own setup and checks.
    pub eb: aws_sdk_elasticbeanstalk::Client,
    pub s3: aws_sdk_s3::Client,
    pub route53: aws_sdk_route53::Client,
    /// How long "CodePipeline" waits before invoking a continuation (it does not re-invoke at once).
    pub continuation_pause: Duration,
}

/// How an action's job ended after all its invocations.
#[derive(Debug)]
pub struct Driven {
    /// Every result reported, in order (continuations first, the final one last).
    pub results: Vec<JobResult>,
    pub invocations: usize,
}

impl Driven {
    pub fn last(&self) -> &JobResult {
        self.results.last().expect("at least one result")
    }

    pub fn succeeded(&self) -> bool {
        self.last().operation == "PutJobSuccessResult"
    }

    /// The failure message (panics, failing the test, if the job succeeded).
    pub fn failure(&self) -> String {
        assert_eq!(
            self.last().operation,
            "PutJobFailureResult",
            "expected a failure, got {:?}",
            self.last().request
        );
        self.last().request["failureDetails"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn failure_type(&self) -> String {
        self.last().request["failureDetails"]["type"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// An output variable of the final success.
    pub fn variable(&self, name: &str) -> String {
        assert!(
            self.succeeded(),
            "expected success, got {:?}",
            self.last().request
        );
        self.last().request["outputVariables"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no output variable {name}: {:?}", self.last().request))
            .to_string()
    }

    pub fn summary(&self) -> String {
        self.last().request["executionDetails"]["summary"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// moto, and local-aws taking bundles from moto's S3 and custom domains from moto's Route 53: the servers
/// under every test bed, for a test that builds its own bed around them.
pub async fn servers(options: Options) -> (LocalAws, Moto) {
    let moto = Moto::start().await;
    let local = LocalAws::start_with(
        "127.0.0.1:0".parse().expect("addr"),
        Options {
            s3_endpoint: Some(moto.endpoint()),
            route53_endpoint: Some(moto.endpoint()),
            ..options
        },
    )
    .await
    .expect("start local-aws");
    (local, moto)
}

/// Holds local-aws (Elastic Beanstalk, CodePipeline jobs, RDS, CloudWatch) and `proxy` (S3, Route 53 in
/// moto) to `spec` from now on, for a test that builds its own bed around [`servers`]: its functions
/// then sign with their role's key ([`BedIdentities::key_of`]), its own clients as the administrator.
pub fn enforce(local: &LocalAws, proxy: &CountingProxy, spec: &IdentitiesSpec) {
    local.set_identities(Some(identities::parse(spec)));
    proxy.set_identities(Some(identities::parse(spec)));
}

/// Uploads `bundle` to `bucket` as `shop/<label>.zip` and registers it as version `label` of `shop`.
pub async fn upload_version(
    s3: &aws_sdk_s3::Client,
    eb: &aws_sdk_elasticbeanstalk::Client,
    bucket: &str,
    label: &str,
    bundle: Vec<u8>,
) {
    let key = format!("shop/{label}.zip");
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .body(bundle.into())
        .send()
        .await
        .expect("upload bundle");
    eb.create_application_version()
        .application_name("shop")
        .version_label(label)
        .source_bundle(S3Location::builder().s3_bucket(bucket).s3_key(key).build())
        .send()
        .await
        .expect("create version");
}

/// Polls an environment (by id) until `done` holds, at most `timeout`; a timeout fails the test with the
/// environment's last description and its events, which usually say why.
pub async fn wait_for_environment(
    eb: &aws_sdk_elasticbeanstalk::Client,
    id: &str,
    timeout: Duration,
    done: impl Fn(&EnvironmentDescription) -> bool,
) -> EnvironmentDescription {
    let started = Instant::now();
    loop {
        let out = eb
            .describe_environments()
            .environment_ids(id)
            .send()
            .await
            .expect("describe environments");
        let env = out.environments().first().cloned().unwrap_or_else(|| {
            panic!("no environment {id}");
        });
        if done(&env) {
            return env;
        }
        if started.elapsed() > timeout {
            let events = eb
                .describe_events()
                .environment_id(id)
                .send()
                .await
                .map(|out| {
                    out.events()
                        .iter()
                        .map(|e| {
                            let severity = e.severity().map(|s| s.as_str()).unwrap_or_default();
                            format!("{severity} {}", e.message().unwrap_or_default())
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            panic!("environment {id} never got there in {timeout:?}: {env:?}\nevents: {events:#?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

impl Bed {
    /// moto + local-aws (see [`servers`]), with the bundle bucket and application `shop` created by the
    /// administrator; from then on every function runs as its role from pipeline-template.json.
    pub async fn start(options: Options) -> Bed {
        let bed = Self::setup(options).await;
        let ids = BedIdentities::load();
        bed.enforce(&ids.spec);
        Bed {
            identities: Some(ids),
            ..bed
        }
    }

    /// [`Bed::start`] without permissions enforced: every signed call is accepted, functions included.
    /// Only for a test that needs what no role of the template grants, and `why` says what that is.
    pub async fn start_unenforced(options: Options, why: &str) -> Bed {
        assert!(
            !why.trim().is_empty(),
            "a bed without enforcement needs its reason"
        );
        Self::setup(options).await
    }

    async fn setup(options: Options) -> Bed {
        let (local, moto) = servers(options).await;
        let proxy = CountingProxy::start(&moto.endpoint())
            .await
            .expect("start the proxy in front of moto");
        // The administrator: the bed's own setup and checks.
        let eb = clients::beanstalk(&local.endpoint());
        let s3 = clients::s3(&proxy.endpoint());
        let route53 = clients::route53(&proxy.endpoint());
        s3.create_bucket()
            .bucket(BUNDLES)
            .send()
            .await
            .expect("create bucket");
        eb.create_application()
            .application_name("shop")
            .send()
            .await
            .expect("create application");
        Bed {
            local,
            moto,
            proxy,
            identities: None,
            eb,
            s3,
            route53,
            continuation_pause: Duration::from_millis(250),
        }
    }

    /// Holds every function's calls to `spec` from now on: local-aws (Elastic Beanstalk, CodePipeline
    /// jobs, RDS, CloudWatch) and the proxy (S3, Route 53). A test that shows a refusal passes the
    /// bed's roles with an action taken out ([`BedIdentities::without`]).
    pub fn enforce(&self, spec: &IdentitiesSpec) {
        enforce(&self.local, &self.proxy, spec);
    }

    /// Uploads `bundle` and registers it as version `label` of `shop` (the administrator: a fixture).
    pub async fn version(&self, label: &str, bundle: Vec<u8>) {
        upload_version(&self.s3, &self.eb, BUNDLES, label, bundle).await;
    }

    /// An action's binary under a local Lambda Runtime API, its AWS calls landing on this bed as its
    /// role's.
    pub async fn function(&self, binary: &Path) -> Function {
        self.function_with_env(binary, &[]).await
    }

    /// [`Bed::function`] with more environment variables, or others in place of the bed's (e.g.
    /// `AWS_MAX_ATTEMPTS=1`, so every throttled call reaches the action instead of the SDK's retries).
    pub async fn function_with_env(&self, binary: &Path, extra: &[(&str, String)]) -> Function {
        let mut env: Vec<(&str, String)> = vec![
            ("AWS_ENDPOINT_URL_CODEPIPELINE", self.local.endpoint()),
            ("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", self.local.endpoint()),
            ("AWS_ENDPOINT_URL_S3", self.proxy.endpoint()),
            ("AWS_ENDPOINT_URL_ROUTE_53", self.proxy.endpoint()),
            ("AWS_ENDPOINT_URL_RDS", self.local.endpoint()),
            ("AWS_MAX_ATTEMPTS", "4".to_string()),
        ];
        // The function's own role: an access key that names it, as `beanswap run` gives each process.
        if let Some(ids) = &self.identities {
            let name = binary
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            env.push(("AWS_ACCESS_KEY_ID", ids.key_of(&name)));
        }
        env.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        env.extend(extra.iter().cloned());
        crate::lambda::start(binary, &env).await
    }

    /// Runs one job to its end: invokes, and while the action answers with a continuation token,
    /// invokes again (a new job id carrying the token), as CodePipeline does. At most `max` invocations.
    pub async fn drive(
        &self,
        function: &mut Function,
        user_parameters: &str,
        max: usize,
    ) -> Driven {
        let mut results = vec![];
        let mut token: Option<String> = None;
        for invocations in 1..=max {
            let mut event = crate::job_event(user_parameters);
            // The account the local cloud's ARNs (and the roles' resources) are in, and artifact
            // credentials of CodePipeline's role, as the pipeline would hand them over.
            event["CodePipeline.job"]["accountId"] = json!(local_aws::beanstalk::ACCOUNT);
            if let Some(key) = self
                .identities
                .as_ref()
                .and_then(|i| i.artifact_key.clone())
            {
                event["CodePipeline.job"]["data"]["artifactCredentials"]["accessKeyId"] =
                    json!(key);
            }
            if let Some(t) = &token {
                tokio::time::sleep(self.continuation_pause).await;
                event["CodePipeline.job"]["data"]["continuationToken"] = json!(t);
            }
            let id = event["CodePipeline.job"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            match function.invoke(event).await {
                Ok(Invocation::Response(_)) => {}
                Ok(Invocation::Error(e)) => panic!("invocation {invocations} errored: {e}"),
                Err(e) => panic!("invocation {invocations}: {e}"),
            }
            let result = self
                .local
                .job_results()
                .into_iter()
                .find(|r| r.job_id == id)
                .unwrap_or_else(|| panic!("job {id} reported nothing"));
            token = result.request["continuationToken"]
                .as_str()
                .map(str::to_string);
            results.push(result);
            if token.is_none() {
                return Driven {
                    results,
                    invocations,
                };
            }
        }
        panic!("the job still wanted to continue after {max} invocations: {results:?}");
    }

    /// Polls an environment (by name) until `check` holds, at most `timeout`.
    pub async fn wait_env(
        &self,
        name: &str,
        timeout: Duration,
        check: impl Fn(&aws_sdk_elasticbeanstalk::types::EnvironmentDescription) -> bool,
    ) -> aws_sdk_elasticbeanstalk::types::EnvironmentDescription {
        let started = Instant::now();
        loop {
            let out = self
                .eb
                .describe_environments()
                .environment_names(name)
                .include_deleted(true)
                .send()
                .await
                .expect("describe environments");
            if let Some(env) = out.environments().iter().find(|e| check(e)) {
                return env.clone();
            }
            assert!(
                started.elapsed() < timeout,
                "environment {name} never got there: {:?}",
                out.environments()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// A GET through the environments' router with the given Host.
    pub async fn get(&self, host: &str, path: &str) -> (u16, String) {
        let addr = self.local.router_addr();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("router");
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .expect("write");
        let mut response = vec![];
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response)
            .await
            .expect("read");
        let text = String::from_utf8_lossy(&response).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        (status, body.to_string())
    }

    /// Call counts per `Service.Operation` from local-aws, as JSON.
    pub fn calls(&self) -> Value {
        json!(self.local.call_counts())
    }
}
