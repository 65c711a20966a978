use super::*;

fn env(cname: &str) -> Environment {
    Environment {
        id: "e-1".into(),
        name: "shop-a".into(),
        application: "shop".into(),
        version_label: None,
        cname: cname.into(),
        status: "Ready".into(),
        health: "Green".into(),
        health_status: None,
        arn: String::new(),
        created: None,
    }
}

#[test]
fn finds_production_by_cname_prefix_or_full_name() {
    let e = env("shop-prod.us-east-1.elasticbeanstalk.com");
    assert!(e.holds_cname("shop-prod"));
    assert!(e.holds_cname("SHOP-PROD"));
    assert!(e.holds_cname("shop-prod.us-east-1.elasticbeanstalk.com."));
    assert!(!e.holds_cname("shop"));
    assert!(!e.holds_cname("shop-prod-2"));
    assert!(!e.holds_cname("shop-prod.eu-west-1.elasticbeanstalk.com"));
}

#[test]
fn health_gate() {
    for (health, gate, passes) in [
        (Health::Green, HealthGate::Green, true),
        (Health::Green, HealthGate::Yellow, true),
        (Health::Yellow, HealthGate::Yellow, true),
        (Health::Yellow, HealthGate::Green, false),
        (Health::Red, HealthGate::Yellow, false),
        (Health::Grey, HealthGate::Yellow, false),
        (Health::Unknown, HealthGate::Yellow, false),
    ] {
        assert_eq!(gate.passes(&health), passes, "{health} vs {gate}");
    }
    assert_eq!(Status::from("Ready"), Status::Ready);
    assert_eq!(Status::from("Rebooting").as_str(), "Rebooting");
    assert_eq!(Health::from("Red"), Health::Red);
}

#[test]
fn polling_backs_off_to_a_ceiling() {
    assert_eq!(poll_delay(0), Duration::from_millis(500));
    assert_eq!(poll_delay(2), Duration::from_secs(2));
    assert_eq!(poll_delay(30), Duration::from_secs(10));
}
