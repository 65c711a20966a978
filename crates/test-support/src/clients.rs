//! SDK clients aimed at the local servers: dummy credentials, us-east-1, the endpoint given. Every test
//! builds its clients here, so a change to how (say, a new SDK default) is made once.

/// The credentials every local server accepts (moto and local-aws check only that a request is signed).
pub fn credentials() -> aws_sdk_elasticbeanstalk::config::Credentials {
    aws_sdk_elasticbeanstalk::config::Credentials::new("testing", "testing", None, None, "test")
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
