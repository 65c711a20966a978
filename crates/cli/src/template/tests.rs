use super::*;
use serde_json::json;
use std::path::PathBuf;

#[test]
fn evaluates_parameters_conditions_and_functions() {
    let template = json!({
        "Parameters": {
            "App": {"Type": "String", "Default": "shop"},
            "Domain": {"Type": "String", "Default": ""},
            "Paths": {"Type": "CommaDelimitedList", "Default": "/,/health"}
        },
        "Conditions": {"HasDomain": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Domain"}, ""]}]}},
        "Resources": {
            "StageFunction": {"Type": "AWS::Lambda::Function"},
            "Pipeline": {"Type": "AWS::CodePipeline::Pipeline", "Properties": {"Stages": [
                {"Name": "Stage", "Actions": [{
                    "Name": "Stage", "Namespace": "Stage",
                    "ActionTypeId": {"Category": "Invoke", "Provider": "Lambda"},
                    "Configuration": {
                        "FunctionName": {"Ref": "StageFunction"},
                        "UserParameters": {"Fn::Sub": "{\"application\":\"${App}\",\"paths\":\"${P}\",\"d\":\"${D}\"}"
                            .replace("${P}", "${Paths}")},
                        "Extra": {"Fn::If": ["HasDomain", "yes", {"Ref": "AWS::NoValue"}]},
                        "Joined": {"Fn::Join": ["|", {"Ref": "Paths"}]}
                    }
                }]}
            ]}}
        }
    });
    let mut template = template;
    template["Resources"]["Pipeline"]["Properties"]["Stages"][0]["Actions"][0]["Configuration"]
        ["UserParameters"] = json!({"Fn::Sub": "{\"application\":\"${App}\"}"});
    let stack = Stack::new(template.clone(), &BTreeMap::new()).unwrap();
    let pipeline = stack.pipeline().unwrap();
    let action = &pipeline.stages[0].actions[0];
    assert_eq!(action.function.as_deref(), Some("stage"));
    assert_eq!(
        action.configuration["UserParameters"],
        json!("{\"application\":\"shop\"}")
    );
    assert!(action.configuration.get("Extra").is_none());
    assert_eq!(action.configuration["Joined"], json!("/|/health"));
    let with_domain = Stack::new(
        template,
        &[("Domain".to_string(), "example.com".to_string())].into(),
    )
    .unwrap();
    let action = &with_domain.pipeline().unwrap().stages[0].actions[0];
    assert_eq!(action.configuration["Extra"], json!("yes"));
}

#[test]
fn splits_a_string_parameter_into_a_list() {
    let template = json!({
        "Parameters": {"Paths": {"Type": "String", "Default": "/,/health,/api"}},
        "Resources": {}
    });
    let stack = Stack::new(template, &BTreeMap::new()).unwrap();
    let joined = stack
        .eval(&json!({"Fn::Join": ["|", {"Fn::Split": [",", {"Ref": "Paths"}]}]}))
        .unwrap();
    assert_eq!(joined, Some(json!("/|/health|/api")));
    assert_eq!(
        stack.eval(&json!({"Fn::Split": [",", "/"]})).unwrap(),
        Some(json!(["/"]))
    );
    assert!(stack.eval(&json!({"Fn::Split": ["", "a"]})).is_err());
}

#[test]
#[cfg(feature = "local")]
fn lambda_actions_carry_their_functions_timeout() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let stack = Stack::load(
        &root.join("pipeline-template.json"),
        &crate::run::local_parameters(),
    )
    .unwrap();
    let timeouts: BTreeMap<String, Option<u64>> = stack
        .pipeline()
        .unwrap()
        .stages
        .iter()
        .flat_map(|s| s.actions.iter())
        .filter_map(|a| Some((a.function.clone()?, a.function_timeout)))
        .collect();
    assert_eq!(timeouts["stage"], Some(300), "{timeouts:?}");
    assert_eq!(timeouts["package"], Some(600), "{timeouts:?}");
    assert!(timeouts.values().all(Option::is_some), "{timeouts:?}");
}

#[test]
fn parameter_values_cloudformation_would_refuse_are_refused_naming_the_parameter() {
    let template = json!({
        "Parameters": {
            "Domain": {"Type": "String", "Default": "", "MaxLength": 12,
                       "AllowedPattern": "^$|^[a-z.]+$", "ConstraintDescription": "lower-case letters and dots"},
            "Paths": {"Type": "CommaDelimitedList", "Default": "/", "AllowedPattern": "^/[a-z]*$"},
            "Mode": {"Type": "String", "Default": "cname", "AllowedValues": ["cname", "route53"]},
            "Keep": {"Type": "Number", "Default": 1, "MinValue": 0, "MaxValue": 5},
            "Arn": {"Type": "String", "AllowedPattern": "^arn:.*$"}
        }
    });
    let with = |name: &str, value: &str| {
        Stack::new(
            template.clone(),
            &[(name.to_string(), value.to_string())].into(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    assert_eq!(with("Domain", "example.com"), Ok(()));
    assert_eq!(with("Paths", "/,/health, /api"), Ok(()));
    assert_eq!(with("Keep", "5"), Ok(()));
    let refused = [
        ("Domain", "Example.com", "does not match"),
        ("Domain", "a.b.c.d.e.f.g.h", "longer than 12 characters"),
        ("Paths", "/,health", "\"health\" does not match"),
        ("Mode", "weighted", "not one of"),
        ("Keep", "6", "more than 5"),
        ("Keep", "-1", "less than 0"),
        ("Keep", "two", "not a number"),
    ];
    for (name, value, why) in refused {
        let err = with(name, value).unwrap_err();
        assert!(
            err.starts_with(&format!("parameter {name}=")) && err.contains(why),
            "{name}={value}: {err}"
        );
    }
    assert!(with("Domain", "UPPER")
        .unwrap_err()
        .ends_with(". Expected: lower-case letters and dots"));
    // A required parameter nobody gave gets an unchecked placeholder: the local run has no account.
    let stack = Stack::new(template.clone(), &BTreeMap::new()).unwrap();
    assert_eq!(stack.parameter("Arn"), Some(&json!("local-arn")));
}

#[test]
#[cfg(feature = "local")]
fn references_to_resources_left_out_of_the_run_are_no_value() {
    let template = json!({
        "Resources": {
            "Database": {"Type": "AWS::RDS::DBInstance"},
            "Secret": {"Type": "AWS::SecretsManager::Secret"},
            "Bucket": {"Type": "AWS::S3::Bucket"},
            "Settings": {"Type": "AWS::ElasticBeanstalk::ConfigurationTemplate", "Properties": {
                "OptionSettings": [
                    {"OptionName": "DATABASE_HOST", "Value": {"Fn::GetAtt": ["Database", "Endpoint.Address"]}},
                    {"OptionName": "DATABASE_SECRET_ARN", "Value": {"Ref": "Secret"}},
                    {"OptionName": "STORAGE_BUCKET", "Value": {"Ref": "Bucket"}}
                ]
            }}
        }
    });
    let options = |stack: &Stack| {
        stack
            .resources_of("AWS::ElasticBeanstalk::ConfigurationTemplate")
            .unwrap()[0]
            .1["OptionSettings"]
            .clone()
    };
    let full = Stack::new(template.clone(), &BTreeMap::new()).unwrap();
    assert_eq!(
        options(&full)[0]["Value"],
        json!("beanswap-local-Database-LOCAL.Endpoint.Address")
    );
    let local = full.without(crate::run::NOT_CREATED_LOCALLY);
    let options = options(&local);
    assert_eq!(options[0].get("Value"), None, "{options}");
    assert_eq!(options[1].get("Value"), None, "{options}");
    assert_eq!(options[2]["Value"], json!("beanswap-local-Bucket-LOCAL"));
}

#[test]
fn variables_substitute_or_name_what_is_missing() {
    let vars: BTreeMap<String, String> =
        [("Stage.Url".to_string(), "http://a\"b/".to_string())].into();
    assert_eq!(
        substitute_variables("{\"url\":\"#{Stage.Url}\"}", &vars).unwrap(),
        "{\"url\":\"http://a\\\"b/\"}"
    );
    let err = substitute_variables("#{Package.VersionLabel}", &vars).unwrap_err();
    assert!(err.contains("Package.VersionLabel"), "{err}");
    assert_eq!(kebab("SmokeTest"), "smoke-test");
    assert_eq!(kebab("check-config"), "check-config");
}
