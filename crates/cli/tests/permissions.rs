//! The local cloud enforces the template's policies, and that is real (issue 18.4):
//! - for every function, each action its role grants is taken out of the template (one at a time, in
//!   memory) and the pipeline run that needs it fails at that function with a PermissionError naming it;
//! - `beanswap demo --approve` with a domain and weighted swaps passes under enforcement;
//! - `beanswap demo --template FILE` whose swap role lacks elasticbeanstalk:AddTags fails at Swap,
//!   naming elasticbeanstalk:AddTags.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use beanswap_cli::local::Endpoints;
use beanswap_cli::pipeline::{Approval, PipelineError, Ui};
use beanswap_cli::run::{self, Settings, FUNCTIONS};
use futures_util::StreamExt;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn template() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("pipeline-template.json")).unwrap())
        .unwrap()
}

fn settings(
    template: PathBuf,
    sources: Vec<PathBuf>,
    extra: &[(&str, &str)],
    report: &Path,
) -> Settings {
    let mut parameters = run::local_parameters();
    for (k, v) in extra {
        parameters.insert(k.to_string(), v.to_string());
    }
    Settings {
        root: root(),
        template,
        sources,
        parameters,
        approval: Approval::Auto,
        json: true,
        bin_dir: bin_dir(),
        launch_delay: Duration::from_millis(300),
        probe_rate: 10,
        report_dir: report.to_path_buf(),
        continuation_pause: Duration::from_millis(100),
        endpoints: Endpoints::default(),
        domain: None,
        title: "permissions test".into(),
        now: None,
    }
}

/// The statements of a policy document, both branches of an `Fn::If` statement included.
fn statements_mut(document: &mut Value) -> Vec<&mut Value> {
    let mut out = vec![];
    for s in document["Statement"].as_array_mut().unwrap() {
        if s.get("Fn::If").is_some() {
            for branch in s["Fn::If"].as_array_mut().unwrap()[1..].iter_mut() {
                if branch.get("Action").is_some() {
                    out.push(branch);
                }
            }
        } else {
            out.push(s);
        }
    }
    out
}

fn actions_of(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
        _ => vec![],
    }
}

/// The policy documents that grant `role`'s function its rights: its inline policies and the template's
/// managed policies it attaches.
fn documents_mut<'a>(template: &'a mut Value, role: &str) -> Vec<&'a mut Value> {
    let managed: Vec<String> = template["Resources"][role]["Properties"]["ManagedPolicyArns"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a["Ref"].as_str().map(str::to_string))
        .collect();
    let mut out = vec![];
    for (name, resource) in template["Resources"].as_object_mut().unwrap() {
        if name == role {
            for p in resource["Properties"]["Policies"].as_array_mut().unwrap() {
                out.push(&mut p["PolicyDocument"]);
            }
        } else if managed.contains(name) {
            out.push(&mut resource["Properties"]["PolicyDocument"]);
        }
    }
    out
}

/// The template with `action` taken out of every statement that grants it to `role` (a statement left
/// with no action is dropped).
fn without(template: &Value, role: &str, action: &str) -> Value {
    let mut t = template.clone();
    for doc in documents_mut(&mut t, role) {
        for s in statements_mut(doc) {
            let kept: Vec<Value> = actions_of(s)
                .into_iter()
                .filter(|a| a != action)
                .map(Value::String)
                .collect();
            s["Action"] = Value::Array(kept);
        }
        if let Some(list) = doc["Statement"].as_array_mut() {
            list.retain(|s| s.get("Fn::If").is_some() || !actions_of(s).is_empty());
        }
    }
    t
}

/// Actions a role grants that no local path can show missing, each with the reason.
const NOT_EXERCISED: &[(&str, &str, &str)] = &[
    (
        "*",
        "codepipeline:PutJobFailureResult",
        "only a failing job reports it, and with it refused the failure cannot be reported at all",
    ),
    (
        "*",
        "logs:CreateLogStream",
        "Lambda writes the function's logs with the role, not the function's code; local functions log to files",
    ),
    ("*", "logs:PutLogEvents", "as logs:CreateLogStream"),
    (
        "package",
        "s3:AbortMultipartUpload",
        "called only when a multipart upload fails part-way",
    ),
    (
        "package",
        "s3:CreateBucket",
        "Elastic Beanstalk's CreateStorageLocation creates the bucket with the caller's credentials: Beanstalk's own calls are not enforced locally (README, Permissions)",
    ),
    ("package", "s3:PutBucketPolicy", "as s3:CreateBucket"),
    (
        "stage",
        "elasticbeanstalk:TerminateEnvironment",
        "called only when a staged environment fails to launch (on_failure: terminate)",
    ),
    (
        "stage",
        "elasticbeanstalk:RequestEnvironmentInfo",
        "called only when a staged environment fails (its tail logs reach the failure message)",
    ),
    (
        "stage",
        "elasticbeanstalk:RetrieveEnvironmentInfo",
        "as elasticbeanstalk:RequestEnvironmentInfo",
    ),
    (
        "swap",
        "cloudwatch:DescribeAlarms",
        "granted only when BakeAlarmNames names alarms, which the scenario does not (functions/swap/tests/bake.rs reads one)",
    ),
    (
        "swap",
        "elasticbeanstalk:UpdateEnvironment",
        "called only when the live environment runs more instances than the staged one (match_capacity); the scenario's run one each",
    ),
];

/// Actions the pipeline's run cannot need, each shown refused by a focused test under enforcement where
/// its path lives (the function's role from the template, the action taken out), with the reason the
/// run never takes that path. The run is not repeated for these.
const SHOWN_ELSEWHERE: &[(&str, &str, &str)] = &[
    (
        "package",
        "elasticbeanstalk:DeleteApplicationVersion",
        "only with UserParameters `prune_keep` at the account's version limit, which the template never sets (retire prunes): functions/package/tests/permissions.rs, pruning_at_the_version_limit_needs_describe_environments_and_delete_application_version",
    ),
    (
        "package",
        "elasticbeanstalk:DescribeEnvironments",
        "as elasticbeanstalk:DeleteApplicationVersion (versions in use are never pruned)",
    ),
    (
        "package",
        "elasticbeanstalk:DescribeEvents",
        "only when Elastic Beanstalk fails to process the bundle, which the pipeline's bundles never do: functions/package/tests/permissions.rs, a_failed_processing_reads_its_events_with_describe_events",
    ),
    (
        "package",
        "s3:GetObject",
        "only a retried job whose version exists reads the stored bundle (HeadObject), and a run never retries; the server-side copy from the artifact bucket falls back to an upload when refused, as documented in crates/core/src/package/s3.rs (the job's own credentials read the artifact): functions/package/tests/permissions.rs, a_retried_job_reads_the_stored_bundle_with_get_object_and_list_bucket",
    ),
    (
        "package",
        "s3:ListBucket",
        "only decides a 403 or a 404 for a missing object, on a retried job whose stored bundle is gone: as s3:GetObject",
    ),
    (
        "stage",
        "elasticbeanstalk:ListTagsForResource",
        "only a retried invocation that finds its environment made reads its tags, and a run never retries: functions/stage/tests/e2e.rs, a_retry_adopting_the_environment_deletes_the_template_the_dead_invocation_made",
    ),
    (
        "swap",
        "elasticbeanstalk:DescribeEvents",
        "only when the staged environment is not healthy at swap time, which the run's never is (smoke-test just passed): functions/swap/tests/cname.rs, a_staged_environment_that_went_red_is_not_swapped",
    ),
];

/// Actions whose removal the scenario's run does not yet show (it passes without them) and no focused
/// test shows either. Kept exact: an entry whose removal starts failing the run as it should fails this
/// test until it is taken out, so the list only shrinks.
const NOT_YET_SHOWN: &[(&str, &str)] = &[];

fn role_of(function: &str) -> String {
    let camel: String = function
        .split('-')
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("{camel}FunctionRole")
}

/// Actions a function's code needs that its role gets from a managed policy of the template (the rest
/// of that policy is what Beanstalk does with the caller's credentials, not enforced locally).
const FROM_MANAGED: &[(&str, &str)] = &[("stage", "iam:PassRole")];

/// Every (function, action) its role grants: its inline policies' Allow actions, and [`FROM_MANAGED`].
fn grants(template: &Value) -> Vec<(String, String)> {
    let mut out = vec![];
    for f in FUNCTIONS {
        let role = role_of(f);
        let mut actions: Vec<String> = vec![];
        for p in template["Resources"][&role]["Properties"]["Policies"]
            .as_array()
            .unwrap()
        {
            let mut doc = p["PolicyDocument"].clone();
            for s in statements_mut(&mut doc) {
                if s["Effect"] == "Allow" {
                    actions.extend(actions_of(s));
                }
            }
        }
        actions.extend(
            FROM_MANAGED
                .iter()
                .filter(|(g, _)| g == f)
                .map(|(_, a)| a.to_string()),
        );
        actions.sort();
        actions.dedup();
        out.extend(actions.into_iter().map(|a| (f.to_string(), a)));
    }
    out
}

fn exempt(function: &str, action: &str) -> Option<&'static str> {
    NOT_EXERCISED
        .iter()
        .chain(SHOWN_ELSEWHERE)
        .find(|(f, a, _)| (*f == "*" || *f == function) && *a == action)
        .map(|(_, _, why)| *why)
}

/// Three deployments with a custom domain (route53 swaps; CNAME swaps for SwapEnvironmentCNAMEs and
/// retire's pruning), KeepPreviousEnvironments 0, KeepVersions 2 and KeepBackups 1. Retire's scaling of kept environments
/// (DescribeConfigurationSettings, UpdateEnvironment) needs an environment kept: those cases run with
/// KeepPreviousEnvironments 1 and KeptEnvironmentInstances 1 instead.
fn scenario(template: PathBuf, tmp: &Path, function: &str, action: &str) -> Settings {
    let v1 = root().join("examples/app");
    let v2 = run::changed_copy(&v1, &tmp.join("v2"), "v2\n").unwrap();
    let v3 = run::changed_copy(&v1, &tmp.join("v3"), "v3\n").unwrap();
    let scales_kept = function == "retire"
        && [
            "elasticbeanstalk:DescribeConfigurationSettings",
            "elasticbeanstalk:UpdateEnvironment",
        ]
        .contains(&action);
    let (keep, kept_instances) = if scales_kept { ("1", "1") } else { ("0", "0") };
    let mut s = settings(
        template,
        vec![v1, v2, v3],
        &[
            ("KeepPreviousEnvironments", keep),
            ("KeptEnvironmentInstances", kept_instances),
            ("KeepVersions", "2"),
            ("KeepBackups", "1"),
        ],
        &tmp.join("report"),
    );
    // Retire's pruning needs CNAME swaps too: with a domain, the first environment keeps the production
    // CNAME (route53 swaps move the record, not the CNAMEs), so retire counts it as production forever
    // and its version stays in use; with CNAME swaps it is retired in the second run, and the third prunes
    // its version and bundle.
    let prunes = function == "retire"
        && [
            "elasticbeanstalk:DeleteApplicationVersion",
            "s3:DeleteObject",
        ]
        .contains(&action);
    if action != "elasticbeanstalk:SwapEnvironmentCNAMEs" && !prunes {
        s.domain = Some("www.shop.test".into());
    }
    s
}

/// What a run's failure says, if it failed.
async fn failure_of(settings: &Settings) -> Option<String> {
    match run::run(settings, &Ui { json: true }).await {
        Err(e) => Some(e),
        Ok(outcome) => outcome.runs.iter().find_map(|r| match &r.failure {
            Some(PipelineError::Action {
                message,
                stage,
                action,
            }) => Some(format!("{stage} / {action}: {message}")),
            Some(e) => Some(e.to_string()),
            None => None,
        }),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_any_action_a_role_grants_fails_the_run_at_its_function_naming_it() {
    let template = template();
    let only = std::env::var("BEANSWAP_PERMISSION_CASES").ok();
    let mut cases = grants(&template);
    cases.retain(|(f, a)| exempt(f, a).is_none());
    if let Some(only) = &only {
        cases.retain(|(f, a)| only.split(',').any(|o| f == o || a == o));
    }
    assert!(cases.len() > 20 || only.is_some(), "{cases:?}");
    let tmp = tempfile::tempdir().unwrap();
    let problems: Vec<String> = futures_util::stream::iter(cases.into_iter().enumerate())
        .map(|(i, (function, action))| {
            let dir = tmp.path().join(format!("case-{i}"));
            let template = without(&template, &role_of(&function), &action);
            async move {
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join("template.json");
                std::fs::write(&path, serde_json::to_string_pretty(&template).unwrap()).unwrap();
                let settings = scenario(path, &dir, &function, &action);
                let failure = failure_of(&settings).await;
                let stage_of = |f: &str| match f {
                    "check-config" => "CheckConfig",
                    "smoke-test" => "SmokeTest",
                    "package" => "/ Package",
                    "backup" => "/ Backup",
                    "stage" => "/ Stage",
                    "swap" => "/ Swap",
                    _ => "/ Retire",
                };
                let known = NOT_YET_SHOWN.contains(&(function.as_str(), action.as_str()));
                match failure {
                    Some(f)
                        if f.contains(stage_of(&function))
                            && f.contains("PermissionError")
                            && f.contains(&action) =>
                    {
                        known.then(|| format!(
                            "without {action}, {function}'s run now fails as it should: take it out of NOT_YET_SHOWN"
                        ))
                    }
                    None if known => None,
                    Some(f) => Some(format!(
                        "without {action}, {function}'s run failed otherwise: {f}"
                    )),
                    None => Some(format!(
                        "without {action}, {function}'s run passed: the path does not need it, or enforcement missed it"
                    )),
                }
            }
        })
        .buffer_unordered(2)
        .filter_map(|p| async move { p })
        .collect()
        .await;
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn weighted_swaps_on_a_domain_pass_under_enforcement() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = root().join("examples/app");
    let v2 = run::changed_copy(&v1, tmp.path(), "v2\n").unwrap();
    let mut s = settings(
        root().join("pipeline-template.json"),
        vec![v1, v2],
        &[
            ("SwapMode", "weighted"),
            ("WeightedSteps", "50,100"),
            ("WeightedBakeSeconds", "1"),
        ],
        &tmp.path().join("report"),
    );
    s.domain = Some("www.shop.test".into());
    let outcome = run::run(&s, &Ui { json: true }).await.unwrap();
    for r in &outcome.runs {
        assert!(r.failure.is_none(), "{:?}\n{}", r.failure, outcome.report);
    }
    assert_eq!(outcome.runs[1].variables["Swap.Mode"], "weighted");
    assert_eq!(outcome.probe.failures, 0, "{}", outcome.report);
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_with_a_swap_role_without_add_tags_fails_at_swap_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("template.json");
    let t = without(&template(), "SwapFunctionRole", "elasticbeanstalk:AddTags");
    std::fs::write(&path, serde_json::to_string_pretty(&t).unwrap()).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_beanswap"))
        .current_dir(root())
        .args(["demo", "--approve", "--template"])
        .arg(&path)
        .args([
            "--launch-delay",
            "300ms",
            "--probe-rate",
            "10",
            "--report-dir",
        ])
        .arg(tmp.path().join("report"))
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    let stopped = text
        .lines()
        .find(|l| l.contains("stopped:"))
        .unwrap_or_else(|| panic!("no `stopped:` line:\n{text}"));
    assert!(
        stopped.contains("Swap / Swap failed: PermissionError")
            && stopped.contains("elasticbeanstalk:AddTags"),
        "{stopped}"
    );
}

/// `beanswap permissions`: the template's roles are exactly what their functions need (exit 0); a role
/// missing an action its code needs, or granting one it does not, is a difference (exit 1) named in the
/// report.
#[tokio::test]
async fn beanswap_permissions_names_every_difference_between_roles_and_code() {
    let run = |template: &Path, extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_beanswap"))
            .current_dir(root())
            .arg("permissions")
            .arg("--template")
            .arg(template)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = run(&root().join("pipeline-template.json"), &[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(text.matches("  same").count(), FUNCTIONS.len(), "{text}");
    let domain = [
        "--parameter",
        "DomainName=www.shop.test",
        "--parameter",
        "HostedZoneId=Z0123456789ABC",
        "--parameter",
        "SwapMode=route53",
    ];
    let (code, text) = run(&root().join("pipeline-template.json"), &domain);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("route53:ChangeResourceRecordSets"), "{text}");

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("template.json");
    let mut t = without(&template(), "SwapFunctionRole", "elasticbeanstalk:AddTags");
    t["Resources"]["SmokeTestFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::x/*"}));
    std::fs::write(&path, serde_json::to_string_pretty(&t).unwrap()).unwrap();
    let (code, text) = run(&path, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("MISSING elasticbeanstalk:AddTags")
            && text.contains("NOT NEEDED s3:GetObject"),
        "{text}"
    );
}

/// It cannot allow by accident: a condition key the evaluator does not understand stops the run before
/// any function runs, naming the key and the role.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_the_evaluator_does_not_understand_stops_the_run_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("template.json");
    let mut t = template();
    t["Resources"]["SwapFunctionRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        ["Statement"][0]["Condition"] = serde_json::json!({"StringEquals": {"aws:SourceVpce": "vpce-1"}, "DateLessThan": {"aws:CurrentTime": "2100-01-01T00:00:00Z"}});
    std::fs::write(&path, serde_json::to_string_pretty(&t).unwrap()).unwrap();
    let s = settings(
        path,
        vec![root().join("examples/app")],
        &[],
        &tmp.path().join("report"),
    );
    let error = match run::run(&s, &Ui { json: true }).await {
        Err(e) => e,
        Ok(outcome) => panic!("the run went ahead:\n{}", outcome.report),
    };
    assert!(
        error.contains("DateLessThan") && error.contains("SwapFunctionRole"),
        "{error}"
    );
}

/// The parameters the end-to-end test bed (`test_support::bed`) resolves the template's roles with:
/// the local run's, and, with the reason for each difference:
/// - `FunctionHostedZoneScope` `*`: each bed test creates its own hosted zone (moto picks its id), so no
///   single `HostedZoneId` can name it; `*` is the template's documented way to allow every zone;
/// - `BakeAlarmNames` `shop-errors`: the alarm functions/swap/tests/bake.rs reads (the role gets
///   cloudwatch:DescribeAlarms only when the stack names alarms);
/// - `KeptEnvironmentInstances` `1`: retire's scale-down of kept environments is tested on the bed.
const BED_PARAMETERS: &[(&str, &str)] = &[
    ("FunctionHostedZoneScope", "*"),
    ("BakeAlarmNames", "shop-errors"),
    ("KeptEnvironmentInstances", "1"),
];

/// The bed's database instance and artifact bucket (functions/backup/tests/e2e.rs, the job fixture).
const BED_DATABASE: &str = "shop-db";
const BED_ARTIFACT_BUCKET: &str = "codepipeline-artifacts";

/// Who calls AWS in the test bed, resolved from pipeline-template.json as `beanswap run` resolves it.
fn bed_identities() -> Value {
    use beanswap_cli::template::{Provided, Stack};
    let mut parameters = run::local_parameters();
    for (k, v) in BED_PARAMETERS {
        parameters.insert(k.to_string(), v.to_string());
    }
    let stack = Stack::load(&root().join("pipeline-template.json"), &parameters)
        .unwrap()
        .without(run::NOT_CREATED_LOCALLY)
        .provide(
            "Database",
            Provided {
                reference: BED_DATABASE.into(),
                attributes: Default::default(),
            },
        )
        .provide(
            "ArtifactBucket",
            Provided {
                reference: BED_ARTIFACT_BUCKET.into(),
                attributes: [(
                    "Arn".to_string(),
                    format!("arn:aws:s3:::{BED_ARTIFACT_BUCKET}"),
                )]
                .into(),
            },
        );
    let ids = stack.identities().unwrap();
    serde_json::json!({
        "about": "Generated from pipeline-template.json by crates/cli/tests/permissions.rs (the_test_beds_roles_are_the_templates; BEANSWAP_BLESS=1 rewrites it): each function binary's access key and the roles' policies as `beanswap run` resolves them, with the parameters below. test-support cannot resolve the template itself (beanswap-cli's tests depend on test-support), so it reads this file; the test keeps it equal to the template.",
        "parameters": parameters,
        "function_keys": ids.function_keys,
        "artifact_key": ids.artifact_key,
        "spec": ids.spec,
    })
}

/// The test bed runs each function as its role from the template: its copy of the roles
/// (tests/fixtures/bed-identities.json) is what the template resolves to now.
#[test]
fn the_test_beds_roles_are_the_templates() {
    let path = root().join("tests/fixtures/bed-identities.json");
    let fresh = serde_json::to_string_pretty(&bed_identities()).unwrap() + "\n";
    if std::env::var_os("BEANSWAP_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == fresh,
        "{} is not what pipeline-template.json resolves to: run `BEANSWAP_BLESS=1 scripts/test -E 'test(the_test_beds_roles_are_the_templates)'` and commit it",
        path.display()
    );
}
