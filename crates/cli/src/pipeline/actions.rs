//! The actions themselves: Source and Build (run here, as CodeBuild would), the manual approval, and
//! every Lambda action invoked under the local Runtime API with CodePipeline's job, continuation
//! tokens re-invoked until the job is done; with the artifacts they pass in (local) S3 and the
//! variables they set.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use local_aws::lambda::{Function, Invocation};
use serde_json::json;

use super::ui::{show_events, Seen};
use super::{decide, first_line, read_line, Approval, Runner, Wait, ARTIFACT_BUCKET};
use crate::build;
use crate::template::{self, ActionDef};

impl Runner<'_> {
    /// Where an output artifact goes in the artifact bucket: `<pipeline name, 20 characters>/<artifact>/<7
    /// random hex>`, the shape CodePipeline gives its artifacts' keys.
    fn artifact_key(&self, name: &str) -> String {
        let pipeline: String = self.options.pipeline.name.chars().take(20).collect();
        format!(
            "{pipeline}/{name}/{}",
            &uuid::Uuid::new_v4().simple().to_string()[..7]
        )
    }

    pub(super) async fn put_artifact(&mut self, name: &str, zip: Vec<u8>) -> Result<(), String> {
        let key = self.artifact_key(name);
        self.s3
            .put_object()
            .bucket(ARTIFACT_BUCKET)
            .key(&key)
            .body(zip.into())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "upload artifact {name}: {}",
                    beanswap_core::aws_error::describe(&e).1
                )
            })?;
        self.artifacts.insert(name.to_string(), key);
        Ok(())
    }

    pub(super) async fn get_artifact(&self, name: &str) -> Result<Vec<u8>, String> {
        let key = self.artifacts.get(name).ok_or_else(|| {
            format!("input artifact {name} was not produced by an earlier action")
        })?;
        let object = self
            .s3
            .get_object()
            .bucket(ARTIFACT_BUCKET)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "download artifact {name}: {}",
                    beanswap_core::aws_error::describe(&e).1
                )
            })?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| format!("download artifact {name}: {e}"))?;
        Ok(bytes.into_bytes().to_vec())
    }

    pub(super) fn set_variables(
        &mut self,
        namespace: Option<&str>,
        values: impl IntoIterator<Item = (String, String)>,
    ) {
        if let Some(ns) = namespace {
            for (k, v) in values {
                self.variables.insert(format!("{ns}.{k}"), v);
            }
        }
    }

    pub(super) async fn source(&mut self, action: &ActionDef) -> Result<String, String> {
        let source = build::source(&self.options.source).map_err(|e| e.to_string())?;
        self.revision = source.commit.clone();
        let name = action
            .output_artifacts
            .first()
            .cloned()
            .unwrap_or_else(|| "Source".into());
        let size = source.zip.len();
        self.put_artifact(&name, source.zip).await?;
        let repository = action
            .configuration
            .get("FullRepositoryId")
            .map(template::text)
            .unwrap_or_default();
        self.set_variables(
            action.namespace.as_deref(),
            [
                ("CommitId".to_string(), source.commit.clone()),
                ("BranchName".to_string(), source.branch.clone()),
                ("FullRepositoryId".to_string(), repository),
                ("CommitMessage".to_string(), "local run".to_string()),
                (
                    "AuthorDate".to_string(),
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                ),
                (
                    "ConnectionArn".to_string(),
                    "arn:aws:codeconnections:local".to_string(),
                ),
            ],
        );
        Ok(format!(
            "{} at {} ({} KiB)",
            self.options.source.display(),
            &source.commit[..12.min(source.commit.len())],
            size / 1024
        ))
    }

    pub(super) async fn build(
        &mut self,
        action: &ActionDef,
        spinner: &ProgressBar,
    ) -> Result<String, String> {
        let input = action
            .input_artifacts
            .first()
            .cloned()
            .unwrap_or_else(|| "Source".into());
        let zip = self.get_artifact(&input).await?;
        let dir = tempfile::Builder::new()
            .prefix("beanswap-build-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        build::unpack(&zip, dir.path()).map_err(|e| e.to_string())?;
        spinner.set_message("waiting for buildspec.yml's commands (the CodeBuild stand-in)");
        let env = vec![
            (
                "CODEBUILD_RESOLVED_SOURCE_VERSION".to_string(),
                self.revision.clone(),
            ),
            (
                "CODEBUILD_SOURCE_VERSION".to_string(),
                self.revision.clone(),
            ),
            (
                "CODEBUILD_BUILD_ID".to_string(),
                format!("local:{}", self.execution),
            ),
            (
                "CODEBUILD_SRC_DIR".to_string(),
                dir.path().display().to_string(),
            ),
            ("CODEBUILD_BUILD_SUCCEEDING".to_string(), "1".to_string()),
        ];
        let built = build::build(dir.path(), "buildspec.yml", &env)
            .await
            .map_err(|e| e.to_string())?;
        let name = action
            .output_artifacts
            .first()
            .cloned()
            .unwrap_or_else(|| "Build".into());
        self.put_artifact(&name, built.zip).await?;
        Ok(format!(
            "buildspec.yml ran; artifact {name} has {} files",
            built.files
        ))
    }

    pub(super) async fn approve(
        &mut self,
        action: &ActionDef,
        spinner: &ProgressBar,
    ) -> Result<String, String> {
        let note = action
            .configuration
            .get("CustomData")
            .map(|v| {
                template::substitute_variables(&template::text(v), &self.variables)
                    .unwrap_or_else(|_| template::text(v))
            })
            .unwrap_or_default();
        match self.options.approval {
            Approval::Auto => Ok(format!("approved (--approve). {note}")),
            Approval::Ask => {
                spinner.set_message("waiting for your answer (y and Enter to approve)");
                spinner.suspend(|| eprintln!("{note}\nApprove {}? [y/N] ", action.name));
                self.ui.event(
                    json!({"event": "approval-waiting", "action": action.name, "note": note}),
                );
                let answer = read_line(std::io::BufReader::new(std::io::stdin())).await?;
                decide(answer.as_deref())
            }
        }
    }

    pub(super) async fn lambda(
        &mut self,
        action: &ActionDef,
        spinner: &ProgressBar,
        lines: &mut Vec<(Duration, String)>,
    ) -> Result<(String, usize), String> {
        let binary_name = action
            .function
            .clone()
            .ok_or("the action has no FunctionName")?;
        let binary = self.options.bin_dir.join(&binary_name);
        if !binary.exists() {
            return Err(format!(
                "no function binary {}; build it: cargo build -p {binary_name}",
                binary.display()
            ));
        }
        if !self.functions.contains_key(&binary_name) {
            let mut env: Vec<(&str, String)> = self.cloud.env();
            // Environment CNAMEs (and a custom domain) reach local-aws's router, as DNS would send
            // them to the load balancer.
            let router = self.cloud.aws.router_addr();
            let mut rules = vec![format!("*.elasticbeanstalk.com={router}")];
            if let Some(domain) = &self.options.domain {
                rules.push(format!("{domain}={router}"));
            }
            env.push((
                beanswap_core::http_check::engine::RESOLVE_ENV,
                rules.join(","),
            ));
            // Each function calls AWS as its own role: an access key that names it. One the stack
            // gives no role gets a key that names none, and every call it makes is refused.
            if let Some(ids) = &self.options.identities {
                let key = ids
                    .function_keys
                    .get(&binary_name)
                    .cloned()
                    .unwrap_or_else(|| crate::template::NO_ROLE_KEY.to_string());
                env.push(("AWS_ACCESS_KEY_ID", key));
            }
            let log = self.options.log_dir.join(format!("{binary_name}.log"));
            let mut f = Function::start_logging_to(&binary, &env, Some(&log))
                .await
                .map_err(|e| e.to_string())?;
            if let Some(seconds) = action.function_timeout {
                f.timeout = Duration::from_secs(seconds);
            }
            self.functions.insert(binary_name.clone(), f);
        }
        let raw = action
            .configuration
            .get("UserParameters")
            .map(template::text)
            .unwrap_or_default();
        let user_parameters = template::substitute_variables(&raw, &self.variables)?;
        let location = |key: &str| json!({"type": "S3", "s3Location": {"bucketName": ARTIFACT_BUCKET, "objectKey": key}});
        let mut inputs = vec![];
        for name in &action.input_artifacts {
            let key = self.artifacts.get(name).ok_or_else(|| {
                format!("input artifact {name} was not produced by an earlier action")
            })?;
            inputs
                .push(json!({"name": name, "revision": self.revision, "location": location(key)}));
        }
        let mut outputs = vec![];
        for name in &action.output_artifacts {
            let key = self.artifact_key(name);
            outputs.push(json!({"name": name, "revision": null, "location": location(&key)}));
            self.artifacts.insert(name.clone(), key);
        }
        // CodePipeline's artifact credentials are its own role's.
        let artifact_key = self
            .options
            .identities
            .as_ref()
            .and_then(|i| i.artifact_key.clone())
            .unwrap_or_else(|| beanswap_iam::identity::ADMIN_KEY.to_string());
        let started = Instant::now();
        let mut token: Option<String> = None;
        let mut seen: BTreeSet<String> = BTreeSet::new();
        // Stage waits for a launch, and shows how far it is from the start: the local cloud's launch delay
        // says how long that should take. Other actions show a bar once their job reports a percentage.
        let mut waiting: Option<Wait> = (binary_name == "stage").then(|| Wait {
            percent: 0,
            elapsed: Duration::ZERO,
            expected: self.options.launch_delay,
            waiting_for: format!("{binary_name}'s first report"),
        });
        if let Some(wait) = &waiting {
            wait.show(spinner);
            self.ui.event(wait.event(&action.name));
        }
        for invocation in 1.. {
            self.invocations.set(invocation);
            match &mut waiting {
                Some(wait) => {
                    wait.elapsed = started.elapsed();
                    wait.show(spinner);
                }
                None => spinner.set_message(format!(
                    "waiting for {binary_name}'s answer (invocation {invocation})"
                )),
            }
            let job_id = uuid::Uuid::new_v4().to_string();
            let mut data = json!({
                "actionConfiguration": {"configuration": {"FunctionName": binary_name, "UserParameters": user_parameters}},
                "inputArtifacts": inputs,
                "outputArtifacts": outputs,
                "artifactCredentials": {"accessKeyId": artifact_key, "secretAccessKey": "local", "sessionToken": "local", "expirationTime": 4102444800000u64}
            });
            if let Some(t) = &token {
                data["continuationToken"] = json!(t);
            }
            let event = json!({"CodePipeline.job": {"id": job_id, "accountId": template::ACCOUNT, "data": data}});
            let answer = {
                let (cloud, ui) = (self.cloud, self.ui);
                let seen_events = Seen {
                    cursor: &self.event_cursor,
                    events: &self.events,
                    epoch: self.epoch,
                };
                let function = self
                    .functions
                    .get_mut(&binary_name)
                    .ok_or("function not started")?;
                let invoked = function.invoke(event);
                tokio::pin!(invoked);
                // While the function works, show Beanstalk's events as they happen.
                let answer = loop {
                    tokio::select! {
                        r = &mut invoked => break r,
                        _ = tokio::time::sleep(Duration::from_millis(250)) => {
                            let latest = show_events(cloud, ui, &seen_events, spinner).await;
                            if let Some(wait) = &mut waiting {
                                wait.elapsed = started.elapsed();
                                if let Some(latest) = latest {
                                    wait.waiting_for = latest;
                                }
                                wait.show(spinner);
                            }
                        }
                    }
                };
                show_events(cloud, ui, &seen_events, spinner).await;
                answer
            };
            match answer.map_err(|e| e.to_string())? {
                Invocation::Response(_) => {}
                Invocation::Error(e) => {
                    return Err(format!("the function's invocation failed: {e}"))
                }
            }
            let result = self
                .cloud
                .job_result(&job_id)
                .await?
                .ok_or_else(|| format!("{binary_name} reported nothing for job {job_id}"))?;
            let request = &result.request;
            if result.operation == "PutJobFailureResult" {
                // With its type, as the console shows it: a PermissionError is the stack's roles'.
                return Err(format!(
                    "{}: {}",
                    template::text(&request["failureDetails"]["type"]),
                    template::text(&request["failureDetails"]["message"])
                ));
            }
            let summary = template::text(&request["executionDetails"]["summary"]);
            let reported = self.epoch.elapsed();
            for line in summary.lines().skip(1) {
                if seen.insert(line.to_string()) {
                    spinner.suspend(|| self.ui.line(&format!("    {line}")));
                    self.ui
                        .event(json!({"event": "progress", "action": action.name, "line": line}));
                    lines.push((reported, line.to_string()));
                }
            }
            match request["continuationToken"].as_str() {
                Some(t) => {
                    // Each new state the job waits in (its first line) is a progress line too.
                    let first = first_line(&summary);
                    if lines.last().map(|(_, l)| l.as_str()) != Some(first) {
                        lines.push((reported, first.to_string()));
                    }
                    // CodePipeline shows percentComplete as the job's progress; so does the bar.
                    let wait = Wait {
                        percent: request["executionDetails"]["percentComplete"]
                            .as_u64()
                            .map_or(0, |p| p.min(100) as u8),
                        elapsed: started.elapsed(),
                        expected: waiting.as_ref().and_then(|w| w.expected),
                        waiting_for: first_line(&summary).to_string(),
                    };
                    wait.show(spinner);
                    self.ui.event(wait.event(&action.name));
                    waiting = Some(wait);
                    if started.elapsed() > self.options.action_timeout {
                        return Err(format!(
                            "still in progress after {}s (local action timeout); last: {summary}",
                            started.elapsed().as_secs()
                        ));
                    }
                    self.states.borrow_mut().push((reported, t.to_string()));
                    token = Some(t.to_string());
                    tokio::time::sleep(self.options.continuation_pause).await;
                }
                None => {
                    let vars: Vec<(String, String)> = request["outputVariables"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| (k.clone(), template::text(v)))
                                .collect()
                        })
                        .unwrap_or_default();
                    self.set_variables(action.namespace.as_deref(), vars);
                    return Ok((summary, invocation));
                }
            }
        }
        Err("unreachable".into())
    }
}
