//! The step between extracting a bundle and starting its web process, as Beanstalk runs it on each
//! instance: `.ebextensions` container commands (alphabetical, `leader_only` on exactly one instance and
//! before the others there, in the staging directory, with the environment properties and the secrets
//! of `aws:elasticbeanstalk:application:environmentsecrets`) and `.platform/hooks/predeploy`; a command
//! that fails fails the deployment with Beanstalk's events, and RequestEnvironmentInfo /
//! RetrieveEnvironmentInfo hand out the instances' tail logs with the failing command's output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aws_sdk_elasticbeanstalk::types::{ConfigurationOptionSetting, EnvironmentInfoType};
use local_aws::beanstalk::Options;
use test_support::bed::{wait_for_environment, Bed};

fn setting(namespace: &str, name: &str, value: &str) -> ConfigurationOptionSetting {
    ConfigurationOptionSetting::builder()
        .namespace(namespace)
        .option_name(name)
        .value(value)
        .build()
}

async fn launch(
    bed: &Bed,
    name: &str,
    label: &str,
    settings: Vec<ConfigurationOptionSetting>,
) -> String {
    let created = bed
        .eb
        .create_environment()
        .application_name("shop")
        .environment_name(name)
        .version_label(label)
        .solution_stack_name(test_support::SOLUTION_STACK)
        .set_option_settings(Some(settings))
        .send()
        .await
        .unwrap();
    created.environment_id().unwrap().to_string()
}

async fn events(bed: &Bed, id: &str) -> Vec<String> {
    let out = bed
        .eb
        .describe_events()
        .environment_id(id)
        .send()
        .await
        .unwrap();
    let mut lines: Vec<String> = out
        .events()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e.severity().map(|s| s.as_str()).unwrap_or_default(),
                e.message().unwrap_or_default()
            )
        })
        .collect();
    lines.reverse();
    lines
}

const EXTENSIONS: &str = r#"
container_commands:
  02_every_instance:
    command: 'echo "every $GREETING $(test -f Procfile && echo in-staging)" >> "$RAN"'
  01_leader:
    command: 'echo "leader $GREETING" >> "$RAN"'
    leader_only: true
  03_with_env:
    command: ["sh", "-c", "echo \"env $EXTRA\" >> \"$RAN\""]
    env:
      EXTRA: from-the-command
"#;

const HOOK: &str = "#!/bin/sh\necho \"hook $DATABASE_CREDENTIALS\" >> \"$RAN\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn container_commands_and_hooks_run_on_every_instance_leader_only_on_one() {
    let bed = Bed::start(Options::default()).await;
    let secret = local_aws::secrets::create_secret(
        &reqwest::Client::new(),
        &bed.moto.endpoint(),
        "shop-db",
        r#"{"username":"beanswap","password":"s3cret"}"#,
    )
    .await
    .unwrap();
    bed.version(
        "v1",
        test_support::app_bundle(
            "v1",
            &[
                (".ebextensions/01-commands.config", EXTENSIONS),
                (".platform/hooks/predeploy/01_hook.sh", HOOK),
            ],
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran.log");
    let id = launch(
        &bed,
        "shop-ext",
        "v1",
        vec![
            setting("aws:autoscaling:asg", "MinSize", "3"),
            setting(
                "aws:elasticbeanstalk:application:environment",
                "GREETING",
                "hello",
            ),
            setting(
                "aws:elasticbeanstalk:application:environment",
                "RAN",
                ran.to_str().unwrap(),
            ),
            setting(
                "aws:elasticbeanstalk:application:environmentsecrets",
                "DATABASE_CREDENTIALS",
                &secret,
            ),
        ],
    )
    .await;
    let env = wait_for_environment(&bed.eb, &id, Duration::from_secs(30), |e| {
        e.status().map(|s| s.as_str()) == Some("Ready")
    })
    .await;
    assert_eq!(
        env.health().map(|h| h.as_str()),
        Some("Green"),
        "{:?}",
        events(&bed, &id).await
    );
    let lines: Vec<String> = std::fs::read_to_string(&ran)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(
        count("leader hello"),
        1,
        "{lines:#?} {:#?}",
        events(&bed, &id).await
    );
    assert_eq!(count("every hello in-staging"), 3, "{lines:#?}");
    assert_eq!(count("env from-the-command"), 3, "{lines:#?}");
    // The secret's whole SecretString is the variable, in hooks as in the app.
    assert_eq!(
        count(r#"hook {"username":"beanswap","password":"s3cret"}"#),
        3,
        "{lines:#?}"
    );
    // On the leader, the leader-only command runs before the other container commands, and the
    // predeploy hook after all of them.
    let leader_at = lines.iter().position(|l| l.starts_with("leader")).unwrap();
    assert!(lines[leader_at + 1].starts_with("every"), "{lines:#?}");
    assert!(lines[leader_at + 2].starts_with("env"), "{lines:#?}");
    assert!(lines[leader_at + 3].starts_with("hook"), "{lines:#?}");
}

const FAILING: &str = r#"
container_commands:
  01_migrate:
    command: 'echo "applying 0002_orders_note"; echo "ERROR:  relation \"orders\" does not exist" >&2; exit 3'
    leader_only: true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_command_fails_the_deployment_and_the_tail_logs_show_its_output() {
    let bed = Bed::start(Options::default()).await;
    bed.version(
        "v2",
        test_support::app_bundle("v2", &[(".ebextensions/migrate.config", FAILING)]),
    )
    .await;
    let id = launch(
        &bed,
        "shop-fail",
        "v2",
        vec![setting("aws:autoscaling:asg", "MinSize", "2")],
    )
    .await;
    let env = wait_for_environment(&bed.eb, &id, Duration::from_secs(30), |e| {
        e.health().map(|h| h.as_str()) == Some("Red")
    })
    .await;
    assert_eq!(env.status().map(|s| s.as_str()), Some("Ready"));
    let seen = events(&bed, &id).await;
    let text = seen.join("\n");
    assert!(
        text.contains("ERROR Instance deployment failed. For details, see 'eb-engine.log'."),
        "{text}"
    );
    assert!(text.contains("] Command failed on instance. Return code: 1 Output: Engine execution has encountered an error.."), "{text}");
    assert!(
        text.contains(
            "Command execution completed on all instances. Summary: [Successful: 1, Failed: 1]."
        ),
        "{text}"
    );
    assert!(
        text.contains("ERROR Create environment operation is complete, but with errors."),
        "{text}"
    );

    // Tail logs, through the AWS CLI (botocore's parser): nothing until requested and compiled.
    let endpoint = bed.local.endpoint();
    let tail = || async {
        test_support::aws_cli_json(
            &endpoint,
            "elasticbeanstalk",
            &[
                "retrieve-environment-info",
                "--environment-id",
                &id,
                "--info-type",
                "tail",
            ],
        )
        .await
        .unwrap()
    };
    assert_eq!(tail().await["EnvironmentInfo"], serde_json::json!([]));
    bed.eb
        .request_environment_info()
        .environment_id(&id)
        .info_type(EnvironmentInfoType::Tail)
        .send()
        .await
        .unwrap();
    let mut entries = vec![];
    for _ in 0..100 {
        let v = tail().await;
        entries = v["EnvironmentInfo"].as_array().cloned().unwrap_or_default();
        if !entries.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(entries.len(), 2, "one per instance: {entries:?}");
    let mut leader_log = String::new();
    for e in &entries {
        assert_eq!(e["InfoType"], "tail");
        assert!(e["Ec2InstanceId"].as_str().unwrap().starts_with("i-0"));
        let url = e["Message"].as_str().unwrap();
        assert!(
            url.contains(
                "/elasticbeanstalk-us-east-1-123456789012/resources/environments/logs/tail/"
            ),
            "{url}"
        );
        assert!(url.contains("X-Amz-Signature="), "presigned: {url}");
        let body = reqwest::get(url).await.unwrap().text().await.unwrap();
        if body.contains("01_migrate") {
            leader_log = body;
        }
    }
    for expected in [
        "/var/log/cfn-init.log\n----------------------------------------\n",
        "[ERROR] Command 01_migrate (echo \"applying 0002_orders_note\";",
        "[INFO] \tapplying 0002_orders_note",
        "[INFO] \tERROR:  relation \"orders\" does not exist",
        "[ERROR] Exited with error code 3",
        "Error: container commands build failed. Please refer to /var/log/cfn-init.log for more details.",
    ] {
        assert!(leader_log.contains(expected), "{expected:?} not in\n{leader_log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_that_cannot_be_fetched_fails_the_instances_deployment() {
    let bed = Bed::start(Options::default()).await;
    bed.version(
        "v1",
        test_support::app_bundle(
            "v1",
            &[
                (".ebextensions/01-commands.config", EXTENSIONS),
                (".platform/hooks/predeploy/01_hook.sh", HOOK),
            ],
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran.log");
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:shop-db-gone-AbCdEf";
    let id = launch(
        &bed,
        "shop-nosecret",
        "v1",
        vec![
            setting(
                "aws:elasticbeanstalk:application:environment",
                "RAN",
                ran.to_str().unwrap(),
            ),
            setting(
                "aws:elasticbeanstalk:application:environmentsecrets",
                "DATABASE_CREDENTIALS",
                missing,
            ),
        ],
    )
    .await;
    let env = wait_for_environment(&bed.eb, &id, Duration::from_secs(30), |e| {
        e.health().map(|h| h.as_str()) == Some("Red")
    })
    .await;
    assert_eq!(env.status().map(|s| s.as_str()), Some("Ready"));
    let seen = events(&bed, &id).await;
    let text = seen.join("\n");
    let failed = seen
        .iter()
        .position(|l| l.starts_with("ERROR Instance deployment failed."))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        seen[failed].contains(&format!(
            "Failed to fetch secret {missing} for environment variable DATABASE_CREDENTIALS"
        )),
        "{text}"
    );
    assert_eq!(
        seen[failed + 1],
        "ERROR Create environment operation is complete, but with errors. For more information, see troubleshooting documentation.",
        "{text}"
    );
    // The secrets are fetched before anything of the bundle runs: no container command, no hook.
    assert!(!ran.exists(), "{:?}", std::fs::read_to_string(&ran));
    let health = bed
        .eb
        .describe_instances_health()
        .environment_id(&id)
        .attribute_names(aws_sdk_elasticbeanstalk::types::InstancesHealthAttribute::Deployment)
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.instance_health_list()[0]
            .deployment()
            .and_then(|d| d.status()),
        Some("Failed")
    );
}
