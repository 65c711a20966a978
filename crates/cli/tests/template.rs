//! pipeline-template.json and the functions cannot drift apart silently.
//!
//! For several realistic parameter sets (no domain; a domain with route53 or weighted swaps, HTTPS and a
//! version check; every function reused from another stack) this evaluates the template's Rules,
//! Conditions and intrinsic functions the way CloudFormation would, then walks the pipeline's actions in
//! order and checks, for every Lambda invoke action:
//! - its FunctionName is one of the beanswap functions (created here or reused by ARN);
//! - its UserParameters fit CodePipeline's 1000 characters and, with example values for `#{...}`, are
//!   accepted by that function's own UserParameters parser;
//! - every `#{Namespace.Var}` in any action's configuration names a variable that the action owning that
//!   namespace, in an earlier stage, really sets (for a beanswap function: its crate's `OUTPUT_VARIABLES`).
//!
//! It also checks that each crate's `OUTPUT_VARIABLES` are names its code passes to `with_variable`, and
//! that each function's IAM role allows exactly the IAM actions AWS checks for the AWS SDK operations its
//! code calls, as `crates/iam/operations.json` (each row with its source) maps them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use beanswap_cli::template::{Stack, ACCOUNT, REGION};
use beanswap_core::UserParameters;
use serde_json::Value;

type Parser = fn(&str) -> Result<(), String>;

fn parse_with<P: UserParameters>(raw: &str) -> Result<(), String> {
    beanswap_core::params::parse::<P>(Some(raw))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// One beanswap function: its directory under `functions/`, its parser and the variables it sets.
struct Function {
    name: &'static str,
    /// `None` only while the crate does not yet expose `Params`; [`crates_that_grew_params_are_wired_in`]
    /// fails as soon as it does.
    parse: Option<Parser>,
    outputs: &'static [&'static str],
}

/// Every function the template can deploy. Adding one is one line here plus a dev-dependency in
/// crates/cli/Cargo.toml.
const FUNCTIONS: &[Function] = &[
    Function {
        name: "check-config",
        parse: Some(parse_with::<check_config::Params>),
        outputs: check_config::OUTPUT_VARIABLES,
    },
    Function {
        name: "stage",
        parse: Some(parse_with::<stage::Params>),
        outputs: stage::OUTPUT_VARIABLES,
    },
    Function {
        name: "smoke-test",
        parse: Some(parse_with::<smoke_test::Params>),
        outputs: smoke_test::OUTPUT_VARIABLES,
    },
    Function {
        name: "retire",
        parse: Some(parse_with::<retire::Params>),
        outputs: retire::OUTPUT_VARIABLES,
    },
    Function {
        name: "package",
        parse: Some(parse_with::<package::Params>),
        outputs: package::OUTPUT_VARIABLES,
    },
    Function {
        name: "swap",
        parse: Some(parse_with::<swap::Params>),
        outputs: swap::OUTPUT_VARIABLES,
    },
    Function {
        name: "backup",
        parse: Some(parse_with::<backup::Params>),
        outputs: backup::OUTPUT_VARIABLES,
    },
];

/// Variables of CodePipeline's own actions that the template may read.
const SOURCE_VARIABLES: &[&str] = &[
    "AuthorDate",
    "BranchName",
    "CommitId",
    "CommitMessage",
    "ConnectionArn",
    "FullRepositoryId",
];
const PIPELINE_VARIABLES: &[&str] = &["PipelineExecutionId"];

/// "smoke-test" -> "SmokeTest": how the template names a function's resources and parameters.
fn camel(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn function(name: &str) -> &'static Function {
    FUNCTIONS
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} is not in FUNCTIONS"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn template() -> Value {
    let path = root().join("pipeline-template.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Example values for the parameters that have no default.
fn required_examples() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("ApplicationName", "shop"),
        (
            "ConnectionArn",
            "arn:aws:codeconnections:eu-west-1:123456789012:connection/0c5c1a7e-8d6f-4b5e-9a3c-1f2e3d4c5b6a",
        ),
        ("RepositoryId", "acme/shop"),
        ("ProductionCnamePrefix", "shop-production"),
        ("FunctionsBucket", "acme-beanswap-releases"),
    ])
}

fn reused_arn(name: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:shared-beanswap-{name}")
}

/// The smallest parameter set of a real deployment: the required values, a platform and every function
/// created here.
fn base_parameters() -> BTreeMap<String, String> {
    let mut base: BTreeMap<String, String> = required_examples()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    base.insert(
        "SolutionStackName".into(),
        "64bit Amazon Linux 2023 v4.5.0 running Python 3.12".into(),
    );
    for f in FUNCTIONS {
        base.insert(format!("{}FunctionSha256", camel(f.name)), "ab".repeat(32));
    }
    base
}

/// The parameter sets the pipeline is checked under: each is a real deployment (the template's Rules
/// must accept it).
fn scenarios() -> Vec<(&'static str, BTreeMap<String, String>)> {
    let base = base_parameters();
    let with = |pairs: &[(&str, &str)]| {
        let mut p = base.clone();
        for (k, v) in pairs {
            p.insert(k.to_string(), v.to_string());
        }
        p
    };
    let domain = [
        ("HostedZoneId", "Z0123456789ABCDEFGHIJ"),
        ("DomainName", "www.example.com"),
    ];
    let mut reuse = with(&[]);
    for f in FUNCTIONS {
        reuse.insert(
            format!("Existing{}FunctionArn", camel(f.name)),
            reused_arn(f.name),
        );
        reuse.remove(&format!("{}FunctionSha256", camel(f.name)));
    }
    vec![
        ("no domain: Beanstalk CNAME swap", with(&[])),
        (
            "domain, route53 swap",
            with(&[domain[0], domain[1], ("SwapMode", "route53")]),
        ),
        (
            "domain, weighted swap, HTTPS, version check, approval email, kept environment scaled down, a bake with latency and alarms, every Swap stage condition",
            with(&[
                ("BakeMinutes", "7.5"),
                ("BakeMaxP99Millis", "1500"),
                ("BakeAlarmNames", "shop-5xx,shop-latency"),
                ("SwapOnFailure", "ROLLBACK"),
                ("SwapAlarmName", "shop-5xx"),
                ("SwapWindowCron", "* * 9-16 ? * MON-FRI"),
                ("SwapOutsideWindow", "SKIP"),
                domain[0],
                domain[1],
                ("SwapMode", "weighted"),
                (
                    "CertificateArn",
                    "arn:aws:acm:eu-west-1:123456789012:certificate/5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
                ),
                ("VersionPath", "/version"),
                ("ApprovalEmail", "ops@example.com"),
                ("SmokeTestPaths", "/,/health,/api/info"),
                ("WeightedSteps", "5,25,100"),
                ("KeptEnvironmentInstances", "1"),
            ]),
        ),
        ("every function reused from another stack", reuse),
        ("every value that reaches UserParameters at its longest", longest(&base)),
    ]
}

/// A SmokeTestPaths value of `n` paths, as long as its declaration could allow: each path at most 100
/// characters (what its pattern admits), all of them within its MaxLength when it has one.
fn smoke_test_paths(template: &Value, n: usize) -> String {
    let budget = template["Parameters"]["SmokeTestPaths"]["MaxLength"]
        .as_u64()
        .map_or(usize::MAX, |m| m as usize);
    let mut left = (100 * n).min(budget.saturating_sub(n - 1));
    let mut paths = Vec::new();
    for i in 0..n {
        let len = (left / (n - i)).clamp(1, 100);
        left = left.saturating_sub(len);
        paths.push(format!("/{}", "p".repeat(len - 1)));
    }
    paths.join(",")
}

/// Whether CloudFormation accepts `value` for SmokeTestPaths (its declaration alone, checked by the
/// evaluator the other tests use).
fn accepts_smoke_test_paths(template: &Value, value: &str) -> bool {
    let declaration = serde_json::json!({"Parameters": {
        "SmokeTestPaths": template["Parameters"]["SmokeTestPaths"].clone()
    }});
    let given = BTreeMap::from([("SmokeTestPaths".to_string(), value.to_string())]);
    Stack::new(declaration, &given).is_ok()
}

/// The most smoke-test paths CloudFormation accepts at their longest (up to 50).
fn most_smoke_test_paths(template: &Value) -> usize {
    (1..=50)
        .rev()
        .find(|n| accepts_smoke_test_paths(template, &smoke_test_paths(template, *n)))
        .expect("SmokeTestPaths accepts no value of the longest kind")
}

/// Each parameter that reaches a UserParameters string at the longest its declaration allows (and as
/// many smoke-test paths as CloudFormation accepts), with every optional part switched on: no deployment
/// the template accepts can then be refused by CodePipeline's 1000-character limit.
fn longest(base: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let template = template();
    let max = |name: &str| {
        template["Parameters"][name]["MaxLength"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} reaches UserParameters: give it a MaxLength"))
            as usize
    };
    // Labels of 63 characters, dot-separated, ending in a TLD: a domain name of exactly MaxLength.
    let mut domain = String::new();
    while domain.len() + 64 + 4 <= max("DomainName") {
        domain.push_str(&"d".repeat(63));
        domain.push('.');
    }
    let tld_room = max("DomainName") - domain.len();
    domain.push_str(&"d".repeat(tld_room.saturating_sub(4)));
    domain.push_str(".com");
    let path = |len: usize| format!("/{}", "p".repeat(len - 1));
    let mut p = base.clone();
    for (k, v) in [
        ("ApplicationName", "a".repeat(max("ApplicationName"))),
        (
            "ProductionCnamePrefix",
            "c".repeat(max("ProductionCnamePrefix")),
        ),
        ("HostedZoneId", format!("Z{}", "9".repeat(31))),
        ("DomainName", domain),
        ("SwapMode", "weighted".into()),
        // Swap takes up to 10 ascending steps ending with 100: this is the longest such list.
        ("WeightedSteps", "10,20,30,40,50,60,70,80,90,100".into()),
        ("VersionPath", path(max("VersionPath"))),
        ("KeptEnvironmentInstances", "10".into()),
    ] {
        p.insert(k.to_string(), v);
    }
    let paths = smoke_test_paths(&template, most_smoke_test_paths(&template));
    p.insert("SmokeTestPaths".into(), paths);
    p
}

/// The template with one parameter set, evaluated as CloudFormation would by the same evaluator the
/// local pipeline run uses; a parameter value CloudFormation would refuse fails the test here.
fn stack(template: &Value, parameters: &BTreeMap<String, String>) -> Stack {
    Stack::new(template.clone(), parameters).unwrap_or_else(|e| panic!("{e}"))
}

/// `#{Namespace.Variable}` references in a string.
fn variable_refs(s: &str) -> Vec<(String, String)> {
    let mut refs = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("#{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let inner = &after[..end];
        match inner.split_once('.') {
            Some((ns, var)) => refs.push((ns.to_string(), var.to_string())),
            None => panic!("#{{{inner}}} has no namespace"),
        }
        rest = &after[end + 1..];
    }
    refs
}

fn strings_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|i| strings_in(i, out)),
        Value::Object(m) => m.values().for_each(|i| strings_in(i, out)),
        _ => {}
    }
}

/// An example value for a variable, as CodePipeline would substitute it (JSON-safe, like the real ones).
fn example_value(var: &str) -> String {
    match var {
        "Url" => "http://shop-v42-a1b2c3.eu-west-1.elasticbeanstalk.com".into(),
        "Cname" => "shop-v42-a1b2c3.eu-west-1.elasticbeanstalk.com".into(),
        "EnvironmentName" | "LiveEnvironmentName" | "PreviousEnvironmentName" => {
            "shop-v42-a1b2c3".into()
        }
        "EnvironmentId" => "e-abcdef1234".into(),
        "VersionLabel" => "v42-0123456789ab".into(),
        "CommitId" => "0123456789abcdef0123456789abcdef01234567".into(),
        "PipelineExecutionId" => "7b1f3c2a-4d5e-4f60-8a9b-0c1d2e3f4a5b".into(),
        "BundleSha256" => "cd".repeat(32),
        other => format!("example-{other}"),
    }
}

fn substitute_variables(s: &str) -> String {
    let mut out = s.to_string();
    for (ns, var) in variable_refs(s) {
        out = out.replace(&format!("#{{{ns}.{var}}}"), &example_value(&var));
    }
    out
}

/// Who sets the variables of a namespace, and where.
struct Producer {
    stage: usize,
    run_order: u64,
    action: String,
    variables: Vec<String>,
}

fn check_pipeline(scenario: &str, stack: &Stack) -> Vec<String> {
    let mut problems = Vec::new();
    let resources = stack.resources();
    let pipelines: Vec<&String> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CodePipeline::Pipeline")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(pipelines.len(), 1, "one pipeline per template");
    let stages = stack
        .eval(&resources[pipelines[0]]["Properties"]["Stages"])
        .unwrap()
        .expect("Stages");

    // Which beanswap function a FunctionName denotes: a created one by its physical id, a reused one by
    // the ARN given for it.
    let mut by_name: BTreeMap<String, &'static Function> = BTreeMap::new();
    for f in FUNCTIONS {
        let resource = format!("{}Function", camel(f.name));
        if stack
            .condition(&format!("Create{}Function", camel(f.name)))
            .unwrap()
        {
            by_name.insert(stack.physical_id(&resource), f);
        } else {
            let arn = stack
                .parameter(&format!("Existing{}FunctionArn", camel(f.name)))
                .unwrap();
            by_name.insert(arn.as_str().unwrap().to_string(), f);
        }
    }

    let mut namespaces: BTreeMap<String, Producer> = BTreeMap::new();
    namespaces.insert(
        "codepipeline".into(),
        Producer {
            stage: 0,
            run_order: 0,
            action: "CodePipeline".into(),
            variables: PIPELINE_VARIABLES.iter().map(|s| s.to_string()).collect(),
        },
    );
    let mut invoked = BTreeSet::new();
    for (stage_index, stage) in stages.as_array().expect("Stages").iter().enumerate() {
        let stage_index = stage_index + 1;
        for action in stage["Actions"].as_array().expect("Actions") {
            let name = action["Name"].as_str().unwrap_or("?").to_string();
            let at = format!("[{scenario}] stage {} action {name}", stage["Name"]);
            let run_order = action["RunOrder"].as_u64().unwrap_or(1);
            let config = &action["Configuration"];

            // Every #{...} must come from an earlier action that sets it.
            let mut strings = Vec::new();
            strings_in(config, &mut strings);
            for s in &strings {
                for (ns, var) in variable_refs(s) {
                    match namespaces.get(&ns) {
                        None => problems.push(format!(
                            "{at}: #{{{ns}.{var}}}: no earlier action has namespace {ns}"
                        )),
                        Some(p) if p.stage == stage_index && p.run_order >= run_order => problems
                            .push(format!(
                                "{at}: #{{{ns}.{var}}}: {} runs at the same time or later",
                                p.action
                            )),
                        Some(p) if !p.variables.contains(&var) => problems.push(format!(
                            "{at}: #{{{ns}.{var}}}: {} sets only {:?}",
                            p.action, p.variables
                        )),
                        Some(_) => {}
                    }
                }
            }

            let type_id = &action["ActionTypeId"];
            let provider = type_id["Provider"].as_str().unwrap_or_default();
            let variables: Vec<String> = match (type_id["Category"].as_str(), provider) {
                (Some("Invoke"), "Lambda") => {
                    let function_name = config["FunctionName"].as_str().unwrap_or_default();
                    let Some(f) = by_name.get(function_name) else {
                        problems.push(format!(
                            "{at}: FunctionName {function_name:?} is none of the beanswap functions"
                        ));
                        continue;
                    };
                    invoked.insert(f.name);
                    let raw = config["UserParameters"].as_str().unwrap_or_default();
                    if raw.chars().count() > 1000 {
                        problems.push(format!(
                            "{at}: UserParameters are {} characters; CodePipeline allows 1000",
                            raw.chars().count()
                        ));
                    }
                    let filled = substitute_variables(raw);
                    match f.parse {
                        Some(parse) => {
                            if let Err(e) = parse(&filled) {
                                problems.push(format!(
                                    "{at}: {}'s parser refuses {filled}: {e}",
                                    f.name
                                ));
                            }
                        }
                        None => match serde_json::from_str::<Value>(&filled) {
                            Ok(Value::Object(_)) => {}
                            other => problems.push(format!(
                                "{at}: UserParameters {filled} are not a JSON object: {other:?}"
                            )),
                        },
                    }
                    f.outputs.iter().map(|s| s.to_string()).collect()
                }
                (Some("Source"), "CodeStarSourceConnection") => {
                    SOURCE_VARIABLES.iter().map(|s| s.to_string()).collect()
                }
                // A CodeBuild action's variables are whatever the app's buildspec exports: unknown here,
                // so the template must not read them.
                _ => Vec::new(),
            };
            if let Some(ns) = action["Namespace"].as_str() {
                let previous = namespaces.insert(
                    ns.to_string(),
                    Producer {
                        stage: stage_index,
                        run_order,
                        action: name.clone(),
                        variables,
                    },
                );
                if previous.is_some() {
                    problems.push(format!("{at}: namespace {ns} is used twice"));
                }
            }
        }
    }
    for f in FUNCTIONS {
        if !invoked.contains(f.name) {
            problems.push(format!("[{scenario}] no action invokes {}", f.name));
        }
    }
    problems
}

#[test]
fn every_lambda_action_is_accepted_by_its_function_and_reads_only_variables_that_are_set() {
    let template = template();
    let mut problems = Vec::new();
    for (scenario, parameters) in scenarios() {
        let stack = stack(&template, &parameters);
        let broken = stack.broken_rules().unwrap();
        assert!(
            broken.is_empty(),
            "scenario {scenario:?} is not a valid deployment: {broken:#?}"
        );
        problems.extend(check_pipeline(scenario, &stack));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// SmokeTestPaths is copied into smoke-test's UserParameters, so the parameter itself must be bounded:
/// whatever number of paths CloudFormation accepts, each at its longest, the action still fits
/// CodePipeline's 1000 characters (and smoke-test's parser). Without a bound, seven paths of 100
/// characters broke the pipeline at deployment.
#[test]
fn every_smoke_test_paths_value_cloudformation_accepts_fits_the_action() {
    let template = template();
    let worst = longest(&base_parameters());
    let mut accepted = Vec::new();
    let mut problems = Vec::new();
    for n in 1..=50 {
        let paths = smoke_test_paths(&template, n);
        if !accepts_smoke_test_paths(&template, &paths) {
            continue;
        }
        accepted.push(n);
        let mut parameters = worst.clone();
        parameters.insert("SmokeTestPaths".into(), paths);
        let stack = stack(&template, &parameters);
        problems.extend(check_pipeline(&format!("{n} smoke-test paths"), &stack));
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        accepted.len() >= 5,
        "SmokeTestPaths should take several paths: {accepted:?}"
    );
}

/// CloudFormation's Rules compare only strings (Fn::Equals, Fn::Contains, Fn::EachMemberIn and the like;
/// no rule function compares numbers: "Rule functions", CloudFormation Template Reference,
/// https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/intrinsic-function-reference-rules.html), so the
/// order of MinInstances and MaxInstances, and of the scale-down and scale-up CPU thresholds, is checked by
/// check-config, the pipeline's first action, which the stack's creation already starts: the template
/// passes the values and check-config refuses them in the wrong order, before any environment exists.
#[test]
fn scaling_settings_in_the_wrong_order_stop_the_pipeline_at_check_config() {
    let template = template();
    let check_config_with = |pairs: &[(&str, &str)]| -> Result<(), String> {
        let mut parameters = base_parameters();
        for (k, v) in pairs {
            parameters.insert(k.to_string(), v.to_string());
        }
        let stack = stack(&template, &parameters);
        assert_eq!(stack.broken_rules().unwrap(), Vec::<String>::new());
        let pipeline = stack.pipeline().unwrap();
        let action = pipeline
            .stages
            .iter()
            .flat_map(|s| &s.actions)
            .find(|a| a.function.as_deref() == Some("check-config"))
            .expect("a check-config action");
        let raw = action.configuration["UserParameters"].as_str().unwrap();
        parse_with::<check_config::Params>(&substitute_variables(raw))
    };
    for pairs in [
        vec![],
        vec![("MinInstances", "3"), ("MaxInstances", "3")],
        vec![("ScaleDownCpuPercent", "0"), ("ScaleUpCpuPercent", "1")],
    ] {
        assert_eq!(check_config_with(&pairs), Ok(()), "{pairs:?}");
    }
    for (pairs, field) in [
        (
            [("MinInstances", "4"), ("MaxInstances", "2")],
            "scaling.max_instances",
        ),
        (
            [("ScaleDownCpuPercent", "70"), ("ScaleUpCpuPercent", "70")],
            "scaling.scale_down_cpu_percent",
        ),
    ] {
        let err = check_config_with(&pairs).expect_err(&format!("{pairs:?} is accepted"));
        assert!(err.contains(field), "{pairs:?}: {err}");
    }
}

#[test]
fn the_template_deploys_exactly_the_functions_in_the_table() {
    let template = template();
    let resources = template["Resources"].as_object().unwrap();
    let deployed: BTreeSet<String> = resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Lambda::Function")
        .map(|(k, _)| k.clone())
        .collect();
    let table: BTreeSet<String> = FUNCTIONS
        .iter()
        .map(|f| format!("{}Function", camel(f.name)))
        .collect();
    assert_eq!(deployed, table);
    for f in FUNCTIONS {
        let r = &resources[&format!("{}Function", camel(f.name))];
        let props = &r["Properties"];
        assert_eq!(props["Runtime"], "provided.al2023", "{}", f.name);
        assert_eq!(
            props["Architectures"],
            serde_json::json!(["arm64"]),
            "{}",
            f.name
        );
        assert_eq!(props["Handler"], "bootstrap", "{}", f.name);
        assert_eq!(
            r["Condition"],
            format!("Create{}Function", camel(f.name)),
            "{}: created only when no existing ARN is given",
            f.name
        );
        // The key scripts/release-functions uploads: <prefix>/<function>-<sha256>.zip.
        assert_eq!(
            props["Code"]["S3Key"]["Fn::Sub"],
            format!(
                "${{FunctionsPrefix}}/{}-${{{}FunctionSha256}}.zip",
                f.name,
                camel(f.name)
            ),
            "{}",
            f.name
        );
        assert!(
            root()
                .join("functions")
                .join(f.name)
                .join("Cargo.toml")
                .exists(),
            "functions/{} does not exist",
            f.name
        );
    }
}

#[test]
fn a_domain_with_a_cname_swap_is_refused_by_the_template_rules() {
    let template = template();
    let (_, mut parameters) = scenarios().remove(0);
    parameters.insert("HostedZoneId".into(), "Z0123456789ABCDEFGHIJ".into());
    parameters.insert("DomainName".into(), "www.example.com".into());
    let broken = stack(&template, &parameters).broken_rules().unwrap();
    assert!(
        broken
            .iter()
            .any(|b| b.starts_with("DomainMeansRoute53Swap")),
        "{broken:?}"
    );
    let (_, mut parameters) = scenarios().remove(0);
    parameters.remove("StageFunctionSha256");
    let broken = stack(&template, &parameters).broken_rules().unwrap();
    assert!(
        broken.iter().any(|b| b.starts_with("StageFunctionCode")),
        "{broken:?}"
    );
}

/// A crate that starts exposing `OUTPUT_VARIABLES` must have its parser and list wired into FUNCTIONS, so
/// no function that exists is checked against the contract's copy instead of its own code.
#[test]
fn crates_that_grew_params_are_wired_in() {
    for f in FUNCTIONS.iter().filter(|f| f.parse.is_none()) {
        let src = root().join("functions").join(f.name).join("src");
        let mut exposes = false;
        for entry in std::fs::read_dir(&src).unwrap_or_else(|e| panic!("{src:?}: {e}")) {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                exposes |= text.contains("pub const OUTPUT_VARIABLES");
            }
        }
        assert!(
            !exposes,
            "functions/{name} now declares OUTPUT_VARIABLES: add `{krate} = {{ path = \"../../functions/{name}\" }}` to \
             crates/cli/Cargo.toml [dev-dependencies] and set its FUNCTIONS entry in crates/cli/tests/template.rs to \
             `parse: Some(parse_with::<{krate}::Params>), outputs: {krate}::OUTPUT_VARIABLES`",
            name = f.name,
            krate = f.name.replace('-', "_"),
        );
    }
    // The table and the lookup agree.
    assert_eq!(
        function("check-config").outputs,
        check_config::OUTPUT_VARIABLES
    );
}

/// scripts/release-functions and the template agree on the zip keys and parameter names: run the script
/// (without a build, on stand-in zips) and feed its parameter-overrides to the template.
#[test]
fn the_release_script_writes_exactly_the_parameters_the_template_takes() {
    let template = template();
    let declared = template["Parameters"].as_object().unwrap();
    let target = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    for f in FUNCTIONS {
        let dir = target.path().join("lambda").join(f.name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("bootstrap.zip"),
            format!("stand-in for {}", f.name),
        )
        .unwrap();
    }
    let status = std::process::Command::new("bash")
        .arg(root().join("scripts/release-functions"))
        .args(["--no-build", "--prefix", "tools/beanswap", "--out"])
        .arg(out.path())
        .env("CARGO_TARGET_DIR", target.path())
        .env_remove("FUNCTIONS_BUCKET")
        .status()
        .unwrap();
    assert!(status.success(), "release-functions failed");
    let overrides: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("parameter-overrides.json")).unwrap(),
    )
    .unwrap();
    let lines = std::fs::read_to_string(out.path().join("parameter-overrides.txt")).unwrap();
    assert_eq!(lines.lines().collect::<Vec<_>>(), overrides);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("manifest.json")).unwrap())
            .unwrap();
    let mut given = BTreeMap::new();
    for kv in &overrides {
        let (k, v) = kv.split_once('=').unwrap();
        assert!(declared.contains_key(k), "{k} is not a template parameter");
        given.insert(k.to_string(), v.to_string());
    }
    assert_eq!(given["FunctionsPrefix"], "tools/beanswap");
    for f in FUNCTIONS {
        let sha = &given[&format!("{}FunctionSha256", camel(f.name))];
        // The key the template builds is the key the script uploads to.
        let key = format!("tools/beanswap/{}-{sha}.zip", f.name);
        assert_eq!(manifest["functions"][f.name]["key"], key.as_str());
        assert!(out.path().join(format!("{}-{sha}.zip", f.name)).exists());
    }
}

/// What one function's code calls with its own role, and why its role may hold anything more: one entry
/// of `crates/iam/functions.json` (the list `beanswap permissions` compares roles with), held here to the
/// sources.
struct Grants {
    function: String,
    /// Sources only this function runs: every AWS SDK operation called in them must be listed in `calls`
    /// or `job_calls`. (Shared helpers such as `beanstalk/` are not listed; the operations a function
    /// reaches through them are in `calls`, and each must be called somewhere in the code.)
    own: Vec<String>,
    /// (service, SDK operation) called with the function's role.
    calls: Vec<(String, String)>,
    /// SDK call -> the members functions.json says it sets (checked against the code).
    members: BTreeMap<String, Vec<String>>,
    /// SDK operations called with the job's artifact credentials, not the role.
    job_calls: Vec<String>,
    /// IAM actions the role needs that are not an operation of the code, each with the reason.
    extra: Vec<(String, String)>,
}

fn grants() -> Vec<Grants> {
    beanswap_iam::Functions::load()
        .unwrap()
        .functions
        .into_iter()
        .map(|f| Grants {
            function: f.function,
            own: f.own,
            members: f
                .calls
                .iter()
                .map(|c| (c.call.clone(), c.members.clone()))
                .collect(),
            calls: f
                .calls
                .into_iter()
                .map(|c| (c.service.prefix().to_string(), c.call))
                .collect(),
            job_calls: f.job_calls,
            extra: f.extra.into_iter().map(|e| (e.action, e.reason)).collect(),
        })
        .collect()
}

/// One row of `crates/iam/operations.json`: the IAM actions AWS checks for one API operation.
struct OperationRow {
    service: String,
    /// As in the service model: `UpdateTagsForResource`.
    operation: String,
    /// Checked on every call.
    actions: Vec<String>,
    /// Request parameter (as in the service model) -> actions checked only when a request carries it.
    with: BTreeMap<String, Vec<String>>,
    /// The public page the row is taken from.
    source: String,
}

/// `crates/iam/operations.json`: data, not code, so the local cloud enforces the same table (read
/// through beanswap-iam, as local-aws and `beanswap permissions` read it).
fn operation_table() -> Vec<OperationRow> {
    let table = beanswap_iam::Table::load().unwrap();
    table
        .operations
        .iter()
        .map(|row| {
            let mut actions: Vec<String> = vec![];
            let mut with: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for c in &row.checks {
                match &c.when {
                    beanswap_iam::When::Always => {
                        if !actions.contains(&c.action) {
                            actions.push(c.action.clone())
                        }
                    }
                    beanswap_iam::When::Member(m) => {
                        with.entry(m.clone()).or_default().push(c.action.clone())
                    }
                    // Checked only when the answer would be 404: a role that relies on that answer
                    // lists the action in GRANTS' `extra`, with the reason.
                    beanswap_iam::When::NotFound => {}
                }
            }
            OperationRow {
                service: row.service.prefix().to_string(),
                operation: row.operation.clone(),
                actions,
                with,
                source: row.source.clone(),
            }
        })
        .collect()
}

/// `UpdateTagsForResource` and `update_tags_for_resource` both -> `updatetagsforresource`.
fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// `TagsToAdd` -> `tags_to_add`: a model member as the SDK's builder method names it.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn operation_row<'a>(table: &'a [OperationRow], service: &str, op: &str) -> &'a OperationRow {
    table
        .iter()
        .find(|r| r.service == service && squash(&r.operation) == squash(op))
        .unwrap_or_else(|| {
            panic!(
                "{service} {op} has no row in crates/iam/operations.json: add the actions AWS \
                 checks for it, with the page that says so (never assume an action of the same name)"
            )
        })
}

/// The builder methods called on requests of SDK operation `op` in a source text: the chain that starts
/// at `.op()` up to its `;`, and when that chain is kept in a variable (`let mut request = client.op()`),
/// every `request.method(` after it in the same function.
fn request_methods(text: &str, op: &str) -> BTreeSet<String> {
    let method = regex::Regex::new(r"\.\s*([a-z_][a-z0-9_]*)\s*\(").unwrap();
    let binding = regex::Regex::new(r"let\s+(?:mut\s+)?([a-z_][a-z0-9_]*)\s*=").unwrap();
    let next_fn = regex::Regex::new(r"\n\s*(?:pub(?:\([a-z]+\))?\s+)?(?:async\s+)?fn\s").unwrap();
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices(&format!(".{op}()")) {
        let end = text[at..].find(';').map_or(text.len(), |e| at + e);
        out.extend(
            method
                .captures_iter(&text[at..end])
                .map(|c| c[1].to_string()),
        );
        let start = text[..at].rfind([';', '{', '}']).map_or(0, |s| s + 1);
        if let Some(name) = binding.captures(&text[start..at]).map(|c| c[1].to_string()) {
            let rest = &text[end..];
            let rest = &rest[..next_fn.find(rest).map_or(rest.len(), |m| m.start())];
            let uses =
                regex::Regex::new(&format!(r"\b{name}\s*\.\s*([a-z_][a-z0-9_]*)\s*\(")).unwrap();
            out.extend(uses.captures_iter(rest).map(|c| c[1].to_string()));
        }
    }
    out
}

/// The request parameters of `row` that change its authorisation and that the code sets.
fn parameters_set(row: &OperationRow, op: &str, texts: &[String]) -> BTreeSet<String> {
    let methods: BTreeSet<String> = texts.iter().flat_map(|t| request_methods(t, op)).collect();
    row.with
        .keys()
        .filter(|p| methods.contains(&snake(p)) || methods.contains(&format!("set_{}", snake(p))))
        .cloned()
        .collect()
}

/// The IAM actions AWS checks for `op` called with the parameters the code sets (`texts`: the sources
/// that may call it).
fn iam_actions(table: &[OperationRow], service: &str, op: &str, texts: &[String]) -> Vec<String> {
    let row = operation_row(table, service, op);
    let mut actions = row.actions.clone();
    for p in parameters_set(row, op, texts) {
        actions.extend(row.with[&p].iter().cloned());
    }
    actions
}

fn rust_sources(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_sources(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// SDK waiters and the operation each polls (the waiter's definition in the service model).
const WAITERS: &[(&str, &str)] = &[("wait_until_resource_record_sets_changed", "get_change")];

/// `.name()` calls in a source text; a waiter counts as the operation it polls.
fn empty_calls(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\.([a-z][a-z0-9_]*)\(\)").unwrap();
    re.captures_iter(text)
        .map(|c| c[1].to_string())
        .map(|call| {
            WAITERS
                .iter()
                .find(|(waiter, _)| *waiter == call)
                .map_or(call, |(_, op)| op.to_string())
        })
        .collect()
}

/// The triple rustc builds for by default: the platform whose dependencies the build downloaded.
fn host_triple() -> String {
    let out = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or_else(|| panic!("no `host:` line in `rustc -vV`: {text}"))
        .to_string()
}

/// Every operation of the AWS SDK crates the functions use, read from their sources (`src/client/<op>.rs`)
/// as `cargo metadata` locates them. Filtered to the host platform: offline, cargo has only the packages
/// the build downloaded, and a fresh machine lacks other platforms' (Windows-only crates, for one).
fn sdk_operations() -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let host = host_triple();
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .args(["--filter-platform", &host])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ops = BTreeSet::new();
    for p in meta["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        if ![
            "aws-sdk-s3",
            "aws-sdk-elasticbeanstalk",
            "aws-sdk-route53",
            "aws-sdk-codepipeline",
            "aws-sdk-rds",
            "aws-sdk-cloudwatch",
        ]
        .contains(&name)
        {
            continue;
        }
        let manifest = PathBuf::from(p["manifest_path"].as_str().unwrap());
        let dir = manifest.parent().unwrap().join("src/client");
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.extension().is_some_and(|e| e == "rs") && stem != "customize" {
                ops.insert(stem);
            }
        }
    }
    assert!(ops.contains("swap_environment_cnames") && ops.contains("put_object"));
    ops
}

/// Every IAM action a role's inline policies allow (both branches of a conditional statement), and the
/// statements themselves.
fn role_statements(template: &Value, role: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for policy in template["Resources"][role]["Properties"]["Policies"]
        .as_array()
        .unwrap_or_else(|| panic!("{role} has no inline policies"))
    {
        for s in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
            match s.get("Fn::If") {
                Some(branches) => out.extend(
                    branches.as_array().unwrap()[1..]
                        .iter()
                        .filter(|b| b.get("Action").is_some())
                        .cloned(),
                ),
                None => out.push(s.clone()),
            }
        }
    }
    out
}

/// The statements of the managed policies of this template that `role` attaches (`ManagedPolicyArns`
/// entries that `Ref` one).
fn managed_statements(template: &Value, role: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for arn in template["Resources"][role]["Properties"]["ManagedPolicyArns"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let Some(name) = arn["Ref"].as_str() else {
            continue;
        };
        if let Some(statements) =
            template["Resources"][name]["Properties"]["PolicyDocument"]["Statement"].as_array()
        {
            out.extend(statements.iter().cloned());
        }
    }
    out
}

fn actions_of(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(a) => a.iter().map(|a| a.as_str().unwrap().to_string()).collect(),
        other => panic!("Action {other}"),
    }
}

/// Least privilege that cannot drift: each function's role allows exactly the IAM actions of the AWS
/// operations its code calls (plus the listed reasons), and resource-scopable actions are scoped.
#[test]
fn every_function_role_allows_exactly_what_its_code_calls() {
    let template = template();
    let universe = sdk_operations();
    let table = operation_table();
    let mut problems = Vec::new();
    let mut shared: Vec<PathBuf> = Vec::new();
    for f in [
        "beanstalk",
        "route53.rs",
        "report.rs",
        "artifacts.rs",
        "s3.rs",
    ] {
        rust_sources(&root().join("crates/core/src").join(f), &mut shared);
    }
    for g in &grants() {
        assert!(FUNCTIONS.iter().any(|f| f.name == g.function));
        // What the code calls: the function's own sources, plus the shared helpers it goes through.
        let mut own_files = Vec::new();
        for p in &g.own {
            rust_sources(&root().join(p), &mut own_files);
        }
        assert!(!own_files.is_empty(), "{}: no sources", g.function);
        let read = |files: &[PathBuf]| -> BTreeSet<String> {
            files
                .iter()
                .flat_map(|f| empty_calls(&std::fs::read_to_string(f).unwrap()))
                .filter(|c| universe.contains(c))
                .collect()
        };
        let own_calls = read(&own_files);
        let reachable: BTreeSet<String> = own_calls.union(&read(&shared)).cloned().collect();
        let listed: BTreeSet<&str> = g
            .calls
            .iter()
            .map(|(_, op)| op.as_str())
            .chain(g.job_calls.iter().map(String::as_str))
            .collect();
        for op in &own_calls {
            if !listed.contains(op.as_str()) {
                problems.push(format!(
                    "{}: its code calls {op} but GRANTS does not list it (and its role may not allow it)",
                    g.function
                ));
            }
        }
        for op in &listed {
            if !reachable.contains(*op) {
                problems.push(format!(
                    "{}: GRANTS lists {op}, which its code no longer calls",
                    g.function
                ));
            }
        }

        let role = format!("{}FunctionRole", camel(&g.function));
        let statements = role_statements(&template, &role);
        let granted: BTreeSet<String> = statements
            .iter()
            .flat_map(actions_of)
            .filter(|a| !a.starts_with("logs:"))
            .collect();
        let texts: Vec<String> = own_files
            .iter()
            .chain(&shared)
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        let expected: BTreeSet<String> = g
            .calls
            .iter()
            .flat_map(|(svc, op)| iam_actions(&table, svc, op, &texts))
            .chain(g.extra.iter().map(|(a, _)| a.to_string()))
            .collect();
        // functions.json says which members each call sets (what `beanswap permissions` and the local
        // cloud go by): it must be what the code sets.
        for (svc, op) in &g.calls {
            let row = operation_row(&table, svc, op);
            let set: Vec<String> = parameters_set(row, op, &texts).into_iter().collect();
            let mut said = g.members.get(op).cloned().unwrap_or_default();
            said.sort();
            if set != said {
                problems.push(format!(
                    "{}: crates/iam/functions.json says {op} sets {said:?}, the code sets {set:?}",
                    g.function
                ));
            }
        }
        // And the role the function runs as is the one functions.json names.
        let named = beanswap_iam::Functions::load()
            .unwrap()
            .functions
            .into_iter()
            .find(|f| f.function == g.function)
            .unwrap()
            .role;
        if named != role {
            problems.push(format!(
                "crates/iam/functions.json names {named} for {}, the template {role}",
                g.function
            ));
        }
        for a in granted.difference(&expected) {
            problems.push(format!(
                "{role} allows {a}, which {}'s code does not need",
                g.function
            ));
        }
        // An action the code needs may come from a managed policy the role attaches (iam:PassRole for
        // CreateEnvironment is the operator policy's): that policy is held to what Beanstalk does by its
        // own test, so only the actions the code needs are looked up in it.
        let managed = managed_statements(&template, &role);
        for a in expected.difference(&granted) {
            if managed
                .iter()
                .any(|s| s["Effect"] == "Allow" && actions_of(s).contains(a))
            {
                continue;
            }
            problems.push(format!(
                "{role} lacks {a}, which {}'s code needs",
                g.function
            ));
        }
        // Scoped wherever the API allows: only actions without resource-level permissions get "*".
        let unscopable = [
            "codepipeline:PutJobSuccessResult",
            "codepipeline:PutJobFailureResult",
            "elasticbeanstalk:CheckDNSAvailability",
            "elasticbeanstalk:CreateStorageLocation",
        ];
        for s in &statements {
            let star = match &s["Resource"] {
                Value::String(r) => r == "*",
                Value::Array(rs) => rs.iter().any(|r| r == "*"),
                _ => false,
            };
            if star {
                for a in actions_of(s) {
                    if !unscopable.contains(&a.as_str()) {
                        problems.push(format!(
                            "{role}: {a} is allowed on every resource; scope it"
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The operation table is data another test bed will enforce too: every row names the page it comes
/// from, names a real operation of the SDK the functions use, and says only what AWS checks; every
/// operation a function calls has a row.
#[test]
fn the_operation_table_is_sourced_and_names_real_operations() {
    let table = operation_table();
    let universe: BTreeSet<String> = sdk_operations().iter().map(|o| squash(o)).collect();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for row in &table {
        let at = format!("{} {}", row.service, row.operation);
        if !seen.insert((row.service.clone(), squash(&row.operation))) {
            problems.push(format!("{at}: two rows"));
        }
        if !universe.contains(&squash(&row.operation)) {
            problems.push(format!(
                "{at}: not an operation of the SDK crates the functions use"
            ));
        }
        if !row.source.contains("https://docs.aws.amazon.com/") {
            problems.push(format!(
                "{at}: the source must name the AWS page it is taken from"
            ));
        }
        if row.actions.is_empty() && row.with.is_empty() {
            problems.push(format!("{at}: no action at all"));
        }
        for a in row.actions.iter().chain(row.with.values().flatten()) {
            let valid = a
                .split_once(':')
                .is_some_and(|(svc, name)| !svc.is_empty() && !name.is_empty() && !a.contains('*'));
            if !valid {
                problems.push(format!("{at}: {a:?} is not one IAM action"));
            }
        }
    }
    for g in grants() {
        for (svc, op) in &g.calls {
            if !table
                .iter()
                .any(|r| r.service == *svc && squash(&r.operation) == squash(op))
            {
                problems.push(format!("{}: {svc} {op} has no row", g.function));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    // The actions that are not named after their operation (what the same-name guess got wrong).
    let tags = operation_row(&table, "elasticbeanstalk", "update_tags_for_resource");
    assert!(
        tags.actions.is_empty(),
        "no elasticbeanstalk:UpdateTagsForResource action exists"
    );
    assert_eq!(tags.with["TagsToAdd"], ["elasticbeanstalk:AddTags"]);
    assert_eq!(tags.with["TagsToRemove"], ["elasticbeanstalk:RemoveTags"]);
    assert_eq!(
        operation_row(&table, "s3", "head_object").actions,
        ["s3:GetObject"]
    );
    assert_eq!(
        operation_row(&table, "s3", "upload_part").actions,
        ["s3:PutObject"]
    );
}

/// Which request parameters the code sets is read from its builder chains; these are the calls whose
/// authorisation depends on them.
#[test]
fn request_parameters_are_read_from_the_builders() {
    let table = operation_table();
    let source = |p: &str| vec![std::fs::read_to_string(root().join(p)).unwrap()];
    let set = |svc: &str, op: &str, texts: &[String]| {
        parameters_set(operation_row(&table, svc, op), op, texts)
    };
    let beanstalk = source("crates/core/src/beanstalk/api.rs");
    assert_eq!(
        set("elasticbeanstalk", "update_tags_for_resource", &beanstalk),
        BTreeSet::from(["TagsToAdd".to_string(), "TagsToRemove".to_string()])
    );
    // Stage's calls go through the BeanstalkApi trait; their builders are in its SDK implementation.
    let stage = beanstalk;
    assert_eq!(
        set("elasticbeanstalk", "create_environment", &stage),
        BTreeSet::from(["Tags".to_string()])
    );
    assert_eq!(
        set("elasticbeanstalk", "create_configuration_template", &stage),
        BTreeSet::new(),
        "the clone of the live configuration is made without tags"
    );
    // Package's application versions go through VersionsApi, implemented beside it.
    let package = source("crates/core/src/beanstalk/versions.rs");
    assert_eq!(
        set("elasticbeanstalk", "create_application_version", &package),
        BTreeSet::from(["Tags".to_string()])
    );
}

/// Which hosted zones the swap and retire roles may touch: none without a domain, the stack's own zone
/// with one, and any zone only when the stack says its functions serve other pipelines' domains.
#[test]
fn route53_access_is_the_stacks_zone_or_any_zone_only_when_asked() {
    let template = template();
    let (_, base) = scenarios().remove(0);
    let zones = |pairs: &[(&str, &str)], role: &str| -> Vec<String> {
        let mut parameters = base.clone();
        for (k, v) in pairs {
            parameters.insert(k.to_string(), v.to_string());
        }
        let stack = stack(&template, &parameters);
        assert_eq!(stack.broken_rules().unwrap(), Vec::<String>::new());
        let policies = stack
            .eval(&template["Resources"][role]["Properties"]["Policies"])
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        for policy in policies.as_array().unwrap() {
            for statement in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
                let actions = actions_of(statement);
                if actions.iter().any(|a| a.contains("ResourceRecordSets")) {
                    out.push(statement["Resource"].as_str().unwrap().to_string());
                }
            }
        }
        out
    };
    let domain = [
        ("HostedZoneId", "Z0123456789ABCDEFGHIJ"),
        ("DomainName", "www.example.com"),
        ("SwapMode", "route53"),
    ];
    for role in ["SwapFunctionRole", "RetireFunctionRole"] {
        assert_eq!(zones(&[], role), Vec::<String>::new(), "{role}");
        assert_eq!(
            zones(&domain, role),
            ["arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ"],
            "{role}"
        );
        assert_eq!(
            zones(&[("FunctionHostedZoneScope", "*")], role),
            ["arn:aws:route53:::hostedzone/*"],
            "{role}"
        );
    }
}

/// The write actions AWS's own Beanstalk policies grant, outside `elasticbeanstalk:*`, for the services the
/// operator policy uses (patterns as AWS writes them). AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy
/// (v7, https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy.html)
/// is what Beanstalk needs to replace an environment's instances; creating an environment also creates its
/// load balancer, target group and listeners, which AdministratorAccess-AWSElasticBeanstalk
/// (https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AdministratorAccess-AWSElasticBeanstalk.html)
/// grants on awseb-*/eb-* resources. The operator policy may not allow a write neither of them does.
const AWS_BEANSTALK_WRITES: &[&str] = &[
    // Both policies.
    "cloudformation:*",
    "ec2:AuthorizeSecurityGroup*",
    "ec2:RevokeSecurityGroup*",
    "ec2:CreateSecurityGroup",
    "ec2:DeleteSecurityGroup",
    "ec2:CreateLaunchTemplate*",
    "ec2:DeleteLaunchTemplate*",
    "ec2:CreateTags",
    "ec2:RunInstances",
    "ec2:TerminateInstances",
    "cloudwatch:PutMetricAlarm",
    "logs:CreateLogGroup",
    "logs:DeleteLogGroup",
    "logs:PutRetentionPolicy",
    "s3:DeleteObject",
    "s3:PutObject",
    "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl",
    "s3:PutBucketPolicy",
    "iam:PassRole",
    // AdministratorAccess-AWSElasticBeanstalk: autoscaling:* and elasticloadbalancing:* on awseb-*/eb-*
    // groups and load balancers, alarms removed with them, service-linked roles.
    "autoscaling:*",
    "elasticloadbalancing:*",
    "cloudwatch:DeleteAlarms",
    "iam:CreateServiceLinkedRole",
];

/// Writes that no statement can scope below `*` (with the reason README repeats): security groups and
/// launch templates are named by ids Beanstalk's stack has not created yet, and AWS's own policies grant
/// them on `*` too. The security groups beanswap's stacks own are kept out by a Deny.
const EC2_WRITES_ON_ANY_RESOURCE: &[&str] = &[
    "ec2:CreateSecurityGroup",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:AuthorizeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupEgress",
    "ec2:DeleteSecurityGroup",
    "ec2:CreateLaunchTemplate",
    "ec2:DeleteLaunchTemplate",
];

/// An IAM action pattern (`*` anywhere) matches an action.
fn action_matches(pattern: &str, action: &str) -> bool {
    let re = format!("^{}$", regex::escape(pattern).replace("\\*", ".*"));
    regex::Regex::new(&re).unwrap().is_match(action)
}

/// Reads change nothing: `Describe*`, `Get*` and `List*` actions.
fn is_read(action: &str) -> bool {
    let name = action.split_once(':').map_or(action, |(_, n)| n);
    ["Describe", "Get", "List"]
        .iter()
        .any(|verb| name.starts_with(verb))
}

fn resources_of(statement: &Value) -> Vec<String> {
    match &statement["Resource"] {
        Value::String(r) => vec![r.clone()],
        Value::Array(rs) => rs.iter().map(|r| r.as_str().unwrap().to_string()).collect(),
        other => panic!("Resource {other}"),
    }
}

/// The operator policy is the one grant not derived from the code: what Elastic Beanstalk does with the
/// caller's credentials when stage and retire create, update and terminate environments. It keeps the
/// shape of AWS's own AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy and grants no write that AWS's
/// Beanstalk policies do not: resources named awseb-*/eb-* wherever the service allows naming them,
/// RunInstances only from a launch template, TerminateInstances only for instances of awseb-*/eb-* stacks,
/// S3 object and bucket-policy actions on Beanstalk's bucket in this region only, never a whole service.
/// The few writes that cannot be scoped are listed, and a Deny keeps them off every security group a
/// beanswap stack made (the database's above all). Only stage and retire get it.
#[test]
fn the_beanstalk_operator_policy_is_only_what_beanstalk_does_for_its_caller() {
    let template = template();
    let resources = template["Resources"].as_object().unwrap();
    for (name, resource) in resources {
        let attached = resource["Properties"]["ManagedPolicyArns"]
            .as_array()
            .is_some_and(|arns| {
                arns.contains(&serde_json::json!({"Ref": "BeanstalkOperatorPolicy"}))
            });
        assert_eq!(
            attached,
            name == "StageFunctionRole" || name == "RetireFunctionRole",
            "{name}: only stage and retire create and terminate environments"
        );
    }
    // Evaluated: ARNs with this stack's partition, region and account.
    let stack = stack(&template, &base_parameters());
    let document = stack
        .eval(&template["Resources"]["BeanstalkOperatorPolicy"]["Properties"]["PolicyDocument"])
        .unwrap()
        .unwrap();
    let arn = |service: &str, rest: &str| format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{rest}");
    let bucket = format!("arn:aws:s3:::elasticbeanstalk-{REGION}-{ACCOUNT}");
    let beanstalk_stacks = [
        arn("cloudformation", "stack/awseb-e-*"),
        arn("cloudformation", "stack/eb-*"),
    ];
    let mut problems = Vec::new();
    let mut allowed = BTreeSet::new();
    let mut denied = Vec::new();
    for statement in document["Statement"].as_array().unwrap() {
        let sid = statement["Sid"].as_str().unwrap_or_default().to_string();
        let actions = actions_of(statement);
        let on = resources_of(statement);
        if statement["Effect"] == "Deny" {
            denied.push(statement.clone());
            continue;
        }
        assert_eq!(statement["Effect"], "Allow", "{sid}");
        let any_resource = on.iter().any(|r| r == "*");
        for action in &actions {
            allowed.insert(action.clone());
            let (service, name) = action.split_once(':').unwrap();
            let mut problem = |why: String| problems.push(format!("{sid}: {action}: {why}"));
            if name == "*" && service != "cloudformation" {
                problem("a whole service".into());
            }
            if name.contains('*') && name != "*" && !is_read(action) {
                problem("a wildcard that is not Describe*/Get*/List*".into());
            }
            if !is_read(action)
                && !AWS_BEANSTALK_WRITES
                    .iter()
                    .any(|p| action_matches(p, action))
            {
                problem("no AWS Beanstalk policy grants this write".into());
            }
            if is_read(action) && service != "iam" {
                continue; // Reads may be on "*"; IAM reads are scoped below like the rest of IAM.
            }
            let all_like = |patterns: &[&str]| {
                !any_resource
                    && on
                        .iter()
                        .all(|r| patterns.iter().any(|p| action_matches(p, r)))
            };
            match service {
                "cloudformation" => {
                    if !all_like(&[
                        &arn("cloudformation", "stack/awseb-*"),
                        &arn("cloudformation", "stack/eb-*"),
                    ]) {
                        problem(format!("on {on:?}: only Beanstalk's stacks"));
                    }
                }
                "autoscaling" => {
                    if !all_like(&[
                        &arn(
                            "autoscaling",
                            "autoScalingGroup:*:autoScalingGroupName/awseb-e-*",
                        ),
                        &arn(
                            "autoscaling",
                            "autoScalingGroup:*:autoScalingGroupName/eb-*",
                        ),
                    ]) {
                        problem(format!("on {on:?}: only awseb-e-*/eb-* groups"));
                    }
                }
                "elasticloadbalancing" => {
                    // Application load balancers and what hangs off them (`*/app/` covers
                    // loadbalancer/, listener/ and listener-rule/), and target groups, by Beanstalk's names.
                    let named = regex::Regex::new(&format!(
                        r"^arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:((\*|loadbalancer|listener|listener-rule)/app|targetgroup)/(awseb|eb)-"
                    ))
                    .unwrap();
                    if any_resource || !on.iter().all(|r| named.is_match(r)) {
                        problem(format!("on {on:?}: only awseb-*/eb-* load balancers"));
                    }
                }
                "cloudwatch" => {
                    if !all_like(&[
                        &arn("cloudwatch", "alarm:awseb-*"),
                        &arn("cloudwatch", "alarm:eb-*"),
                    ]) {
                        problem(format!("on {on:?}: only Beanstalk's alarms"));
                    }
                }
                "logs" => {
                    if !all_like(&[&arn("logs", "log-group:/aws/elasticbeanstalk/*")]) {
                        problem(format!("on {on:?}: only Beanstalk's log groups"));
                    }
                }
                "s3" => {
                    let object = name.contains("Object");
                    let wanted = if object {
                        format!("{bucket}/*")
                    } else {
                        bucket.clone()
                    };
                    if on != [wanted.clone()] {
                        problem(format!("on {on:?}: only {wanted}"));
                    }
                }
                // A List action with no resource-level permission (Service Authorization Reference,
                // IAM: ListInstanceProfiles, resource `*`): scoped to the roles it granted nothing, as
                // parliament pointed out (scripts/lint-policies).
                "iam" if action == "iam:ListInstanceProfiles" => {
                    if on != ["*".to_string()] {
                        problem(format!("on {on:?}: it has no resource-level permission: *"));
                    }
                }
                "iam" => {
                    let scope = [
                        format!("arn:aws:iam::{ACCOUNT}:role/beanswap/eb/*"),
                        format!("arn:aws:iam::{ACCOUNT}:instance-profile/beanswap/eb/*"),
                        format!("arn:aws:iam::{ACCOUNT}:role/aws-service-role/*"),
                    ];
                    if !all_like(&scope.iter().map(String::as_str).collect::<Vec<_>>()) {
                        problem(format!("on {on:?}: only the environments' roles"));
                    }
                    if action == "iam:PassRole"
                        && !statement["Condition"]["StringEquals"]["iam:PassedToService"].is_array()
                    {
                        problem("PassRole only to the listed services".into());
                    }
                    if action == "iam:CreateServiceLinkedRole"
                        && !statement["Condition"]["StringEquals"]["iam:AWSServiceName"].is_array()
                    {
                        problem("service-linked roles only for the listed services".into());
                    }
                }
                "ec2" => match action.as_str() {
                    "ec2:RunInstances" => {
                        let template_arn = &statement["Condition"]["ArnLike"]["ec2:LaunchTemplate"];
                        if template_arn != &Value::String(arn("ec2", "launch-template/*")) {
                            problem("only with a launch template (Condition ArnLike ec2:LaunchTemplate)".into());
                        }
                    }
                    "ec2:TerminateInstances" => {
                        let stacks = &statement["Condition"]["StringLike"]
                            ["ec2:ResourceTag/aws:cloudformation:stack-id"];
                        if on != [arn("ec2", "instance/*")]
                            || stacks != &serde_json::json!(beanstalk_stacks)
                        {
                            problem(format!(
                                "only instances of Beanstalk's stacks, got {on:?} {stacks}"
                            ));
                        }
                    }
                    "ec2:CreateTags" => {
                        let on_create =
                            statement["Condition"]["StringEquals"]["ec2:CreateAction"].is_array();
                        let what_beanstalk_creates = all_like(&[
                            &arn("ec2", "security-group/*"),
                            &arn("ec2", "launch-template/*"),
                        ]);
                        if !on_create && !what_beanstalk_creates {
                            problem(format!("on {on:?}: only what is being created"));
                        }
                    }
                    other if EC2_WRITES_ON_ANY_RESOURCE.contains(&other) => {}
                    _ => problem("not an EC2 write Beanstalk needs".into()),
                },
                other => problem(format!("the operator policy has no business with {other}")),
            }
        }
    }
    // Every security-group change the policy allows is denied on the groups beanswap's stacks own.
    let guarded: Vec<&Value> = denied
        .iter()
        .filter(|d| {
            resources_of(d) == [arn("ec2", "security-group/*")]
                && d["Condition"]["Null"]["ec2:ResourceTag/beanswap:stack"] == "false"
        })
        .collect();
    let guarded_actions: BTreeSet<String> = guarded.iter().flat_map(|d| actions_of(d)).collect();
    for action in &allowed {
        let changes_a_group = [
            "AuthorizeSecurityGroup",
            "RevokeSecurityGroup",
            "DeleteSecurityGroup",
        ]
        .iter()
        .any(|verb| action.starts_with(&format!("ec2:{verb}")));
        if changes_a_group && !guarded_actions.contains(action) {
            problems.push(format!(
                "{action} is not denied on security groups tagged beanswap:stack (the database's)"
            ));
        }
    }
    for group in ["DatabaseSecurityGroup", "InstanceSecurityGroup"] {
        let tags =
            serde_json::to_string(&template["Resources"][group]["Properties"]["Tags"]).unwrap();
        assert!(
            tags.contains("\"beanswap:stack\""),
            "{group} must carry beanswap:stack: {tags}"
        );
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The first environment's option settings under one parameter set: (namespace, option) -> value.
fn first_environment_options(stack: &Stack) -> BTreeMap<(String, String), String> {
    let templates = stack
        .resources_of("AWS::ElasticBeanstalk::ConfigurationTemplate")
        .unwrap();
    assert_eq!(templates.len(), 1, "one FirstEnvironmentTemplate");
    let mut out = BTreeMap::new();
    for o in templates[0].1["OptionSettings"].as_array().unwrap() {
        let key = (
            o["Namespace"].as_str().unwrap().to_string(),
            o["OptionName"].as_str().unwrap().to_string(),
        );
        let value = beanswap_cli::template::text(&o["Value"]);
        assert!(
            out.insert(key.clone(), value).is_none(),
            "{key:?} is set twice"
        );
    }
    out
}

/// Managed platform updates need a role to run as: Beanstalk's "General options for all environments"
/// (aws:elasticbeanstalk:managedactions,
/// https://docs.aws.amazon.com/elasticbeanstalk/latest/dg/command-options-general.html) take it in
/// ServiceRoleForManagedUpdates, either the environment's own service role or the managed-updates
/// service-linked role, and ManagedActionsEnabled=true needs a PreferredStartTime and an UpdateLevel. The
/// environment's service role is used, and it carries AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy
/// ("Managing Elastic Beanstalk service roles",
/// https://docs.aws.amazon.com/elasticbeanstalk/latest/dg/iam-servicerole.html).
#[test]
fn managed_platform_updates_run_as_the_environments_service_role() {
    let template = template();
    for (scenario, parameters) in scenarios() {
        let options = first_environment_options(&stack(&template, &parameters));
        let get = |ns: &str, name: &str| options.get(&(ns.to_string(), name.to_string()));
        if get(
            "aws:elasticbeanstalk:managedactions",
            "ManagedActionsEnabled",
        )
        .is_none_or(|v| v != "true")
        {
            continue;
        }
        let service_role = get("aws:elasticbeanstalk:environment", "ServiceRole");
        assert!(service_role.is_some(), "[{scenario}] no ServiceRole");
        assert_eq!(
            get("aws:elasticbeanstalk:managedactions", "ServiceRoleForManagedUpdates"),
            service_role,
            "[{scenario}] managed updates need ServiceRoleForManagedUpdates: the environment's service role"
        );
        assert!(
            get("aws:elasticbeanstalk:managedactions", "PreferredStartTime").is_some(),
            "[{scenario}] managed updates need a PreferredStartTime"
        );
        assert!(
            get(
                "aws:elasticbeanstalk:managedactions:platformupdate",
                "UpdateLevel"
            )
            .is_some(),
            "[{scenario}] managed updates need an UpdateLevel"
        );
    }
    let policies = serde_json::to_string(
        &template["Resources"]["ServiceRole"]["Properties"]["ManagedPolicyArns"],
    )
    .unwrap();
    assert!(
        policies.contains(":iam::aws:policy/AWSElasticBeanstalkManagedUpdatesCustomerRolePolicy"),
        "the role that runs managed updates carries AWS's policy for them: {policies}"
    );
}

/// With a certificate, port 80 must not keep serving the domain in plain HTTP. Beanstalk's option
/// settings cannot express a redirect (listener rules there only forward to a process), so the redirect is
/// the documented .ebextensions listener rule in examples/app, and the stack switches it on by setting the
/// custom option it reads to the domain. The environments' own names are never redirected: the pipeline's
/// smoke test and swap's checks request them, and no certificate covers them.
#[test]
fn with_a_certificate_port_80_redirects_the_domain_to_https() {
    let template = template();
    let option = (
        "aws:elasticbeanstalk:customoption".to_string(),
        "HttpsRedirectHost".to_string(),
    );
    let certificate =
        "arn:aws:acm:eu-west-1:123456789012:certificate/5e6f7a8b-1c2d-4e3f-8a9b-0c1d2e3f4a5b";
    let with = |pairs: &[(&str, &str)]| {
        let mut parameters = base_parameters();
        for (k, v) in pairs {
            parameters.insert(k.to_string(), v.to_string());
        }
        let stack = stack(&template, &parameters);
        assert_eq!(stack.broken_rules().unwrap(), Vec::<String>::new());
        first_environment_options(&stack)
    };
    let domain = [
        ("HostedZoneId", "Z0123456789ABCDEFGHIJ"),
        ("DomainName", "www.example.com"),
        ("SwapMode", "route53"),
    ];
    let https = with(&[
        domain[0],
        domain[1],
        domain[2],
        ("CertificateArn", certificate),
    ]);
    let get = |options: &BTreeMap<(String, String), String>, ns: &str, name: &str| {
        options.get(&(ns.to_string(), name.to_string())).cloned()
    };
    assert_eq!(
        get(&https, "aws:elbv2:listener:443", "Protocol").as_deref(),
        Some("HTTPS")
    );
    assert_eq!(
        get(&https, "aws:elbv2:listener:443", "SSLCertificateArns").as_deref(),
        Some(certificate)
    );
    assert_eq!(
        https.get(&option).map(String::as_str),
        Some("www.example.com"),
        "with a certificate, the domain is redirected to HTTPS"
    );
    assert_eq!(with(&domain).get(&option), None, "no HTTPS, no redirect");
    assert_eq!(with(&[]).get(&option), None);

    // The rule the option drives, in the bundle examples/app ships.
    let path = root().join("examples/app/.ebextensions/https-redirect.config");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let config: Value = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let rules: Vec<&Value> = config["Resources"]
        .as_object()
        .unwrap()
        .values()
        .filter(|r| r["Type"] == "AWS::ElasticLoadBalancingV2::ListenerRule")
        .collect();
    assert_eq!(rules.len(), 1, "{config}");
    let rule = &rules[0]["Properties"];
    assert_eq!(
        rule["ListenerArn"],
        serde_json::json!({"Ref": "AWSEBV2LoadBalancerListener"}),
        "the port 80 listener Beanstalk creates"
    );
    assert_eq!(
        rule["Actions"],
        serde_json::json!([{"Type": "redirect", "RedirectConfig": {
            "Protocol": "HTTPS", "Port": "443", "Host": "#{host}", "Path": "/#{path}",
            "Query": "#{query}", "StatusCode": "HTTP_301"
        }}])
    );
    let conditions = rule["Conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 1, "{conditions:?}");
    assert_eq!(conditions[0]["Field"], "host-header");
    let values = conditions[0]["HostHeaderConfig"]["Values"]
        .as_array()
        .unwrap();
    assert_eq!(values.len(), 1);
    let setting = &values[0]["Fn::GetOptionSetting"];
    assert_eq!(setting["Namespace"], option.0.as_str());
    assert_eq!(setting["OptionName"], option.1.as_str());
    // Until the stack sets the option, the rule matches a name that cannot arrive (RFC 2606's .invalid).
    assert!(
        setting["DefaultValue"]
            .as_str()
            .is_some_and(|d| d.ends_with(".invalid")),
        "{setting}"
    );
    // And the app's build ships it.
    let buildspec: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(root().join("examples/app/buildspec.yml")).unwrap(),
    )
    .unwrap();
    let mut globs = globset::GlobSetBuilder::new();
    for pattern in buildspec["artifacts"]["files"].as_array().unwrap() {
        globs.add(
            globset::GlobBuilder::new(pattern.as_str().unwrap())
                .literal_separator(true)
                .build()
                .unwrap(),
        );
    }
    assert!(
        globs
            .build()
            .unwrap()
            .is_match(".ebextensions/https-redirect.config"),
        "examples/app/buildspec.yml does not put the redirect into the bundle"
    );
}

/// IAM refuses a managed policy over 6,144 characters, whitespace not counted ("IAM and AWS STS quotas",
/// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html). The operator policy's size
/// depends on where it is deployed, so it is measured with the longest partition and region names.
#[test]
fn the_beanstalk_operator_policy_fits_iams_size_limit_in_any_region() {
    let template = template();
    let document =
        &template["Resources"]["BeanstalkOperatorPolicy"]["Properties"]["PolicyDocument"];
    let text = serde_json::to_string(document)
        .unwrap()
        .replace("${AWS::Partition}", "aws-us-gov")
        .replace("${AWS::Region}", "ap-southeast-2")
        .replace("${AWS::AccountId}", ACCOUNT);
    // `{"Fn::Sub":"arn..."}` becomes `"arn..."` once CloudFormation has evaluated it.
    let evaluated = regex::Regex::new(r#"\{"Fn::Sub":("[^"]*")\}"#)
        .unwrap()
        .replace_all(&text, "$1");
    assert!(!evaluated.contains("Fn::"), "{evaluated}");
    let size = evaluated.chars().filter(|c| !c.is_whitespace()).count();
    assert!(
        size <= 6144,
        "the operator policy is {size} characters; IAM allows 6144"
    );
}

/// The variables the pipeline reads are checked against each function's `OUTPUT_VARIABLES`; this makes
/// sure those lists are what the code really sets: every name is passed to `with_variable` in the
/// function's own sources (by literal, or as `OUTPUT_VARIABLES[i]`).
#[test]
fn output_variables_are_what_the_code_sets() {
    let mut problems = Vec::new();
    for g in grants() {
        let mut files = Vec::new();
        for p in &g.own {
            rust_sources(&root().join(p), &mut files);
        }
        let text: String = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let compact: String = text.split_whitespace().collect();
        for (i, name) in function(&g.function).outputs.iter().enumerate() {
            let literal = format!(".with_variable(\"{name}\",");
            let indexed = format!(".with_variable(OUTPUT_VARIABLES[{i}],");
            if !compact.contains(&literal) && !compact.contains(&indexed) {
                problems.push(format!(
                    "{}: OUTPUT_VARIABLES has {name}, but its code never sets it",
                    g.function
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The Swap stage's CodePipeline conditions are off by default and are exactly what the parameters ask
/// for: a deployment window on entry, CodePipeline's rollback on failure, an alarm after success.
#[test]
fn the_swap_stage_conditions_are_what_the_parameters_say() {
    use beanswap_cli::conditions::{ConditionResult, Rule, StageConditions};
    let template = template();
    let (_, mut parameters) = scenarios().remove(0);
    let swap_stage = |parameters: &BTreeMap<String, String>| {
        stack(&template, parameters)
            .pipeline()
            .unwrap()
            .stages
            .into_iter()
            .find(|s| s.name == "Swap")
            .expect("a Swap stage")
    };
    assert_eq!(
        swap_stage(&parameters).conditions,
        StageConditions::default()
    );
    for (k, v) in [
        ("SwapOnFailure", "ROLLBACK"),
        ("SwapAlarmName", "shop-5xx"),
        ("SwapWindowCron", "* * 9-16 ? * MON-FRI"),
        ("SwapOutsideWindow", "SKIP"),
    ] {
        parameters.insert(k.to_string(), v.to_string());
    }
    let conditions = swap_stage(&parameters).conditions;
    assert!(conditions.rollback_on_failure);
    assert_eq!(conditions.before_entry[0].result, ConditionResult::Skip);
    assert!(matches!(
        &conditions.before_entry[0].rules[0],
        Rule::DeploymentWindow { name, cron } if name == "SwapWindow" && cron.text() == "* * 9-16 ? * MON-FRI"
    ));
    assert_eq!(conditions.on_success[0].result, ConditionResult::Rollback);
    assert_eq!(
        conditions.on_success[0].rules[0],
        Rule::CloudWatchAlarm {
            name: "SwapAlarm".into(),
            alarm: "shop-5xx".into()
        }
    );
}
