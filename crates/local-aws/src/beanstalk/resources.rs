//! The AWS resources Beanstalk creates for an environment, as their names and ARNs appear in
//! DescribeEnvironmentResources and the launch events: the load balancer, its target group, the Auto
//! Scaling group.

use super::{Store, ACCOUNT, REGION};
use crate::query::{Params, QueryError, Xml};

/// The Application Load Balancer Beanstalk creates for an environment: `awseb-AWSEB-<12 characters>`,
/// stable per environment.
pub fn load_balancer_name(env_id: &str) -> String {
    let suffix: String = env_id
        .trim_start_matches("e-")
        .to_ascii_uppercase()
        .chars()
        .chain("LB".chars())
        .take(12)
        .collect();
    format!("awseb-AWSEB-{suffix}")
}

/// Its ARN, as DescribeEnvironmentResources and the launch events name it.
pub fn load_balancer_arn(env_id: &str) -> String {
    format!(
        "arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:loadbalancer/app/{}/{}",
        load_balancer_name(env_id),
        hex_of(env_id)
    )
}

/// A target group's ARN, for the launch events.
pub fn target_group_arn(env_id: &str) -> String {
    format!(
        "arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/{}/{}",
        load_balancer_name(env_id),
        hex_of(&format!("{env_id}-tg"))
    )
}

/// The environment's Auto Scaling group.
pub fn auto_scaling_group(env_id: &str) -> String {
    format!(
        "awseb-{env_id}-stack-AWSEBAutoScalingGroup-{}",
        env_id.trim_start_matches("e-").to_ascii_uppercase()
    )
}

/// 16 stable hex digits derived from `s`.
pub(super) fn hex_of(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// DescribeEnvironmentResources: the environment's Auto Scaling group, its instance while it has one, its
/// launch template and its Application Load Balancer (named by ARN, as Beanstalk names an ALB).
pub fn resources(store: &Store, p: &Params) -> Result<String, QueryError> {
    let env = store.find_env(p.get("EnvironmentId"), p.get("EnvironmentName"))?;
    let mut x = Xml::new();
    x.elem("EnvironmentResources", |x| {
        x.text("EnvironmentName", &env.name)
            .elem("AutoScalingGroups", |x| {
                x.elem("member", |x| {
                    x.text("Name", &auto_scaling_group(&env.id));
                });
            })
            .elem("Instances", |x| {
                if env.status != "Terminating" {
                    for instance in &env.instances {
                        x.elem("member", |x| {
                            x.text("Id", &instance.id);
                        });
                    }
                }
            })
            .elem("LaunchConfigurations", |_| {})
            .elem("LaunchTemplates", |x| {
                x.elem("member", |x| {
                    x.text("Id", &format!("lt-0{}", &hex_of(&env.id)[..16]));
                });
            })
            .elem("LoadBalancers", |x| {
                x.elem("member", |x| {
                    x.text("Name", &load_balancer_arn(&env.id));
                });
            })
            .elem("Triggers", |_| {})
            .elem("Queues", |_| {});
    });
    Ok(x.finish())
}
