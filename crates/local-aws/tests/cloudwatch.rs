//! CloudWatch alarms, checked with the AWS CLI. botocore reads the same service model as the Rust SDK
//! but prefers AWS JSON 1.0 among its `protocols`, so the CLI checks the members and errors over JSON;
//! the SDK's Smithy RPC v2 CBOR is exercised by swap's bake tests (`functions/swap/tests/bake.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use local_aws::LocalAws;
use serde_json::Value;

async fn cli(local: &LocalAws, args: &[&str]) -> Result<Value, String> {
    test_support::aws_cli_json(&local.endpoint(), "cloudwatch", args).await
}

#[tokio::test]
async fn the_aws_cli_puts_sets_and_describes_alarms_as_cloudwatch_answers() {
    let local = LocalAws::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    cli(
        &local,
        &[
            "put-metric-alarm",
            "--alarm-name",
            "shop-5xx",
            "--namespace",
            "AWS/ElasticBeanstalk",
            "--metric-name",
            "ApplicationRequests5xx",
            "--statistic",
            "Sum",
            "--period",
            "60",
            "--evaluation-periods",
            "1",
            "--threshold",
            "5",
            "--comparison-operator",
            "GreaterThanThreshold",
        ],
    )
    .await
    .unwrap();
    let described = cli(
        &local,
        &["describe-alarms", "--alarm-names", "shop-5xx", "missing"],
    )
    .await
    .unwrap();
    let alarms = described["MetricAlarms"].as_array().unwrap();
    assert_eq!(alarms.len(), 1, "a missing name is left out: {described}");
    let alarm = &alarms[0];
    assert_eq!(alarm["AlarmName"], "shop-5xx");
    assert_eq!(
        alarm["AlarmArn"],
        "arn:aws:cloudwatch:us-east-1:123456789012:alarm:shop-5xx"
    );
    assert_eq!(alarm["StateValue"], "INSUFFICIENT_DATA");
    assert_eq!(alarm["Threshold"], 5.0);
    assert_eq!(alarm["Period"], 60);
    assert!(
        alarm["StateUpdatedTimestamp"].is_number(),
        "epoch seconds: {alarm}"
    );

    cli(
        &local,
        &[
            "set-alarm-state",
            "--alarm-name",
            "shop-5xx",
            "--state-value",
            "ALARM",
            "--state-reason",
            "Threshold Crossed",
        ],
    )
    .await
    .unwrap();
    let described = cli(&local, &["describe-alarms", "--alarm-names", "shop-5xx"])
        .await
        .unwrap();
    assert_eq!(described["MetricAlarms"][0]["StateValue"], "ALARM");
    assert_eq!(
        described["MetricAlarms"][0]["StateReason"],
        "Threshold Crossed"
    );

    let err = cli(
        &local,
        &[
            "set-alarm-state",
            "--alarm-name",
            "nope",
            "--state-value",
            "OK",
            "--state-reason",
            "x",
        ],
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("ResourceNotFound") && err.contains("Alarm nope not found"),
        "{err}"
    );
    assert_eq!(local.call_counts()["CloudWatch.DescribeAlarms"], 2);
}
