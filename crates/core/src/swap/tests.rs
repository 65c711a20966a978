use super::*;

fn env(name: &str, cname: &str) -> Environment {
    Environment {
        id: format!("e-{name}"),
        name: name.into(),
        application: "shop".into(),
        version_label: Some("v1".into()),
        cname: cname.into(),
        status: "Ready".into(),
        health: "Green".into(),
        health_status: Some("Ok".into()),
        arn: String::new(),
        created: None,
    }
}

#[test]
fn preconditions_name_what_is_wrong() {
    let live = env("shop-a", "shop-prod.us-east-1.elasticbeanstalk.com");
    let staged = env("shop-b", "shop-b.us-east-1.elasticbeanstalk.com");
    assert!(check_preconditions(&staged, &live, "shop", HealthGate::Green).is_ok());

    let mut red = staged.clone();
    red.health = "Red".into();
    red.health_status = Some("Severe".into());
    let mut yellow = staged.clone();
    yellow.health = "Yellow".into();
    let mut updating = live.clone();
    updating.status = "Updating".into();
    let mut other_app = staged.clone();
    other_app.application = "blog".into();
    let cases: Vec<(&Environment, &Environment, HealthGate, &str)> = vec![
        (&red, &live, HealthGate::Green, "`shop-b` is not healthy now: health Red (Severe) (at least Green required); nothing was swapped"),
        (&yellow, &live, HealthGate::Green, "health Yellow (Ok)"),
        (&staged, &updating, HealthGate::Green, "the live environment `shop-a` is Updating, not Ready"),
        (&other_app, &live, HealthGate::Green, "the staged environment `shop-b` belongs to application `blog`, not `shop`"),
    ];
    for (s, l, gate, expected) in cases {
        let err = check_preconditions(s, l, "shop", gate)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }
    assert!(check_preconditions(&yellow, &live, "shop", HealthGate::Yellow).is_ok());
}

#[test]
fn steps_are_validated_and_walked() {
    assert!(validate_steps(DEFAULT_STEPS).is_ok());
    assert!(validate_steps(&[100]).is_ok());
    for (bad, why) in [
        (&[][..], "1 to 10"),
        (&[10, 50][..], "last step must be 100"),
        (&[50, 10, 100][..], "rise strictly"),
        (&[0, 100][..], "1 to 100 percent"),
        (&[10, 101][..], "1 to 100 percent"),
    ] {
        assert!(validate_steps(bad).unwrap_err().contains(why), "{bad:?}");
    }
    assert_eq!(next_step(DEFAULT_STEPS, 0), Some(10));
    assert_eq!(next_step(DEFAULT_STEPS, 10), Some(50));
    assert_eq!(next_step(DEFAULT_STEPS, 30), Some(50));
    assert_eq!(next_step(DEFAULT_STEPS, 100), None);
    assert_eq!(split(10), (90, 10));
    assert_eq!(split(100), (0, 100));
    let shift = Shift {
        old: "a".into(),
        new: "b".into(),
        percent: 10,
        since: 1000,
    };
    assert_eq!(bake_left(&shift, Duration::from_secs(60), 1030), 30);
    assert_eq!(bake_left(&shift, Duration::from_secs(60), 2000), 0);
}

fn domain(record_type: RecordType) -> Domain {
    Domain {
        zone: "Z1".into(),
        name: "Shop.example.com".into(),
        record_type,
        ttl: 60,
    }
}

#[test]
fn records_point_at_environments_with_the_regions_zone() {
    let b = env("shop-b", "shop-b.eu-west-1.elasticbeanstalk.com");
    let r = simple_record(&domain(RecordType::Alias), &b).unwrap();
    assert_eq!(r.name, "shop.example.com.");
    assert_eq!(
        r.pointer,
        Pointer::Alias {
            dns_name: "shop-b.eu-west-1.elasticbeanstalk.com".into(),
            zone_id: "Z2NYPWQ7DFZAZH".into()
        }
    );
    let r = simple_record(&domain(RecordType::Cname), &b).unwrap();
    assert_eq!(
        r.pointer,
        Pointer::Cname {
            value: "shop-b.eu-west-1.elasticbeanstalk.com".into(),
            ttl: 60
        }
    );
    let nowhere = env("x", "x.xx-nowhere-1.elasticbeanstalk.com");
    let err = simple_record(&domain(RecordType::Alias), &nowhere).unwrap_err();
    assert!(err.to_string().contains("region `xx-nowhere-1`"), "{err}");
    assert!(matches!(
        ActionError::from(err).kind,
        crate::FailureKind::ConfigurationError
    ));
}

#[test]
fn the_serving_environment_is_found_by_record_and_weight() {
    let a = env("shop-a", "shop-a.us-east-1.elasticbeanstalk.com");
    let b = env("shop-b", "shop-b.us-east-1.elasticbeanstalk.com");
    let envs = vec![a.clone(), b.clone()];
    let d = domain(RecordType::Alias);
    let simple = vec![simple_record(&d, &a).unwrap()];
    assert_eq!(
        serving_environment(&simple, &envs, None).unwrap(),
        Some(&envs[0])
    );
    let weighted = weighted_records(&d, &a, &b, 50).unwrap();
    assert_eq!(share_of(&weighted, &b.cname), 50);
    // Mid-shift: the staged one is excluded, so the old one is found.
    assert_eq!(
        serving_environment(&weighted, &envs, Some(&b.cname)).unwrap(),
        Some(&envs[0])
    );
    let done = weighted_records(&d, &a, &b, 100).unwrap();
    assert_eq!(share_of(&done, &b.cname), 100);
    assert_eq!(
        serving_environment(&done, &envs, None).unwrap(),
        Some(&envs[1])
    );
    assert_eq!(serving_environment(&[], &envs, None).unwrap(), None);
    let stranger = vec![simple_record(&d, &env("x", "x.us-east-1.elasticbeanstalk.com")).unwrap()];
    assert_eq!(
        serving_environment(&stranger, &envs, None).unwrap_err(),
        "x.us-east-1.elasticbeanstalk.com"
    );
}

#[test]
fn rollback_returns_to_the_previous_environment_while_it_exists() {
    let a = env("shop-a", "shop-a.us-east-1.elasticbeanstalk.com");
    let b = env("shop-b", "shop-prod.us-east-1.elasticbeanstalk.com");
    let envs = vec![a.clone(), b.clone()];
    assert_eq!(
        rollback_target(&b, Some("shop-a"), None, &envs)
            .unwrap()
            .name,
        "shop-a"
    );
    assert_eq!(
        rollback_target(&b, None, Some("shop-a"), &envs)
            .unwrap()
            .name,
        "shop-a"
    );
    let cases = [
        (None, None, "has no `beanswap:previous-environment` tag"),
        (
            Some("shop-z"),
            None,
            "`shop-z` no longer exists (retired?); production stays on `shop-b`",
        ),
        (None, Some("shop-b"), "`shop-b` already serves production"),
    ];
    for (tag, explicit, expected) in cases {
        let err = rollback_target(&b, tag, explicit, &envs)
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }
    let mut gone = a.clone();
    gone.status = "Terminating".into();
    let err = rollback_target(&b, Some("shop-a"), None, &[gone, b.clone()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no longer exists"), "{err}");
}

#[test]
fn the_continuation_state_stays_small() {
    let shift = Shift {
        old: "x".repeat(40),
        new: "y".repeat(40),
        percent: 50,
        since: 1_800_000_000,
    };
    let token = crate::outcome::encode_state(&shift).unwrap();
    assert!(token.len() < 200, "{token}");
    assert_eq!(
        crate::outcome::decode_state::<Shift>(&token).unwrap(),
        shift
    );
}
