//! SDK clients aimed at the local servers: dummy credentials, us-east-1, the endpoint given. Every test
//! builds its clients here, so a change to how (say, a new SDK default) is made once.

use crate::identities::ADMIN_KEY;

/// The administrator's credentials ([`ADMIN_KEY`]): every client a test builds here makes the test's
/// own setup and checks (buckets, bundles, versions, environments as fixtures, reading what a function
/// did), never a function's calls, which sign as the function's role (`crate::bed`). Where permissions
/// are enforced the administrator may do anything; where they are not, any signed request is accepted.
pub fn credentials() -> aws_sdk_elasticbeanstalk::config::Credentials {
    aws_sdk_elasticbeanstalk::config::Credentials::new(ADMIN_KEY, "local", None, None, "admin")
}

/// The Elastic Beanstalk client configuration, for a test that changes more (retries, timeouts).
pub fn beanstalk_config(endpoint: &str) -> aws_sdk_elasticbeanstalk::config::Builder {
    aws_sdk_elasticbeanstalk::Config::builder()
        .behavior_version(aws_sdk_elasticbeanstalk::config::BehaviorVersion::latest())
        .region(aws_sdk_elasticbeanstalk::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials())
}

pub fn beanstalk(endpoint: &str) -> aws_sdk_elasticbeanstalk::Client {
    aws_sdk_elasticbeanstalk::Client::from_conf(beanstalk_config(endpoint).build())
}

/// Path-style addressing: moto serves buckets under its one host, not as subdomains.
pub fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(credentials())
            .build(),
    )
}

pub fn route53(endpoint: &str) -> aws_sdk_route53::Client {
    aws_sdk_route53::Client::from_conf(
        aws_sdk_route53::Config::builder()
            .behavior_version(aws_sdk_route53::config::BehaviorVersion::latest())
            .region(aws_sdk_route53::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(credentials())
            .build(),
    )
}
