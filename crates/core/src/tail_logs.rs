//! An environment's tail logs, for a failure message that shows what went wrong on the instances
//! (a container command's output, a platform hook's stderr) instead of only "see eb-engine.log".
//!
//! RequestEnvironmentInfo (InfoType `tail`) makes Beanstalk compile the last lines of every instance's
//! logs; RetrieveEnvironmentInfo lists them once compiled, one presigned S3 URL per instance (the
//! EnvironmentInfoDescription's Message), fetched here over plain HTTPS (the URL carries its own
//! authorisation). [`relevant`] picks the lines that explain a failed deployment.

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_elasticbeanstalk::types::EnvironmentInfoType;

use crate::aws_error::unless_transient;
use crate::beanstalk::{poll_delay, Beanstalk};

/// Requests the tail logs and waits (at most `budget`) for every instance's; `(instance, text)` each.
/// Transient trouble is waited out within the budget; whatever else goes wrong is the error, which the
/// caller names in its message instead of the logs.
pub async fn fetch(
    eb: &Beanstalk,
    env_id: &str,
    budget: Duration,
) -> Result<Vec<(String, String)>, String> {
    let began = Instant::now();
    let asked = SystemTime::now() - Duration::from_secs(1);
    eb.client()
        .request_environment_info()
        .environment_id(env_id)
        .info_type(EnvironmentInfoType::Tail)
        .send()
        .await
        .map_err(|e| crate::beanstalk::eb_error("RequestEnvironmentInfo", e).to_string())?;
    let mut attempt = 0;
    let urls = loop {
        let answer = eb
            .client()
            .retrieve_environment_info()
            .environment_id(env_id)
            .info_type(EnvironmentInfoType::Tail)
            .send()
            .await
            .map_err(|e| crate::beanstalk::eb_error("RetrieveEnvironmentInfo", e));
        if let Some(out) = unless_transient(answer).map_err(|e| e.to_string())? {
            // Only what this request compiled: an earlier request's logs would miss the failure.
            let fresh: Vec<(String, String)> = out
                .environment_info()
                .iter()
                .filter(|i| {
                    i.sample_timestamp()
                        .and_then(|t| SystemTime::try_from(*t).ok())
                        .is_some_and(|t| t >= asked)
                })
                .filter_map(|i| {
                    Some((
                        i.ec2_instance_id().unwrap_or("?").to_string(),
                        i.message()?.to_string(),
                    ))
                })
                .collect();
            if !fresh.is_empty() {
                break fresh;
            }
        }
        attempt += 1;
        let delay = poll_delay(attempt).min(Duration::from_secs(3));
        if began.elapsed() + delay > budget {
            return Err(format!(
                "the tail logs were not compiled within {} s",
                budget.as_secs()
            ));
        }
        tokio::time::sleep(delay).await;
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let mut logs = vec![];
    for (instance, url) in urls {
        let text = match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => r.text().await.unwrap_or_default(),
            Ok(r) => format!("(the tail log answered HTTP {})", r.status().as_u16()),
            Err(e) => format!("(the tail log could not be fetched: {e})"),
        };
        logs.push((instance, text));
    }
    Ok(logs)
}

/// Strips a log line's timestamp and process prefix: `2024-12-03 17:53:01,286 P3644 [INFO] x` and
/// `2026/03/03 12:09:25.964246 [ERROR] x` become `[INFO] x` and `[ERROR] x`.
fn without_time(line: &str) -> &str {
    match line.find(" [") {
        Some(at) if at <= 40 && line[..at].starts_with(|c: char| c.is_ascii_digit()) => {
            &line[at + 1..]
        }
        _ => line,
    }
}

/// The lines of an instance's tail log that explain a failed deployment, at most `max` characters:
/// the output of the container command that exited non-zero (cfn-init-cmd.log, between its
/// `Command <name>` line and `Exited with error code`), then every `[ERROR]` line of the other logs
/// (cfn-init.log names the command, eb-engine.log the step and a hook's stderr). Empty when the
/// logs show no failure.
pub fn relevant(text: &str, max: usize) -> String {
    let mut sections: Vec<(&str, Vec<&str>)> = vec![];
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("----------------------------------------") {
            if let Some(name) = lines.next() {
                let _ = lines.next_if(|l| l.starts_with("-----"));
                sections.push((name.trim(), vec![]));
            }
            continue;
        }
        if let Some((_, body)) = sections.last_mut() {
            body.push(line);
        }
    }
    let mut out: Vec<String> = vec![];
    for (name, body) in &sections {
        if name.ends_with("cfn-init-cmd.log") {
            if let Some(end) = body
                .iter()
                .rposition(|l| l.contains("Exited with error code"))
            {
                let start = body[..end]
                    .iter()
                    .rposition(|l| without_time(l).starts_with("[INFO] Command "))
                    .unwrap_or(end);
                out.push(format!("{name}:"));
                for l in &body[start..=end] {
                    let l = without_time(l);
                    if l.contains("-----") {
                        continue;
                    }
                    out.push(format!("  {}", l.trim_end()));
                }
            }
        }
    }
    for (name, body) in &sections {
        if name.ends_with("cfn-init-cmd.log") {
            continue;
        }
        let errors: Vec<&str> = body
            .iter()
            .map(|l| without_time(l))
            .filter(|l| l.starts_with("[ERROR]"))
            .collect();
        if !errors.is_empty() {
            out.push(format!("{name}:"));
            out.extend(errors.iter().map(|l| format!("  {l}")));
        }
    }
    let mut text = String::new();
    for line in out {
        if text.chars().count() + line.chars().count() + 1 > max {
            text.push_str("  (more in the environment's logs)\n");
            break;
        }
        text.push_str(&line);
        text.push('\n');
    }
    text.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAIL: &str = "----------------------------------------
/var/log/eb-engine.log
----------------------------------------
2026/03/03 12:09:25.964246 [INFO] Executing instruction: PostBuildEbExtension
2026/03/03 12:09:26.000001 [INFO] Error occurred during build: Command 01_migrate failed
2026/03/03 12:09:26.000002 [ERROR] An error occurred during execution of command [app-deploy] - [PostBuildEbExtension]. Stop running the command. Error: container commands build failed. Please refer to /var/log/cfn-init.log for more details.


----------------------------------------
/var/log/cfn-init.log
----------------------------------------
2026-03-03 12:09:25,990 [INFO] Command 00_ok succeeded
2026-03-03 12:09:26,000 [ERROR] Command 01_migrate (python3 migrate.py) failed


----------------------------------------
/var/log/cfn-init-cmd.log
----------------------------------------
2026-03-03 12:09:25,980 P3644 [INFO] ============================================================
2026-03-03 12:09:25,980 P3644 [INFO] Command 00_ok
2026-03-03 12:09:25,981 P3644 [INFO] -----------------------Command Output-----------------------
2026-03-03 12:09:25,981 P3644 [INFO] \tfine
2026-03-03 12:09:25,981 P3644 [INFO] ------------------------------------------------------------
2026-03-03 12:09:25,981 P3644 [INFO] Completed successfully.
2026-03-03 12:09:25,990 P3644 [INFO] ============================================================
2026-03-03 12:09:25,990 P3644 [INFO] Command 01_migrate
2026-03-03 12:09:25,999 P3644 [INFO] -----------------------Command Output-----------------------
2026-03-03 12:09:25,999 P3644 [INFO] \tapplying 0002_orders_note
2026-03-03 12:09:25,999 P3644 [INFO] \tpsycopg: ERROR:  column \"note\" already exists
2026-03-03 12:09:25,999 P3644 [INFO] ------------------------------------------------------------
2026-03-03 12:09:25,999 P3644 [ERROR] Exited with error code 1


";

    #[test]
    fn the_failed_commands_output_and_the_errors_are_picked() {
        let got = relevant(TAIL, 5000);
        assert_eq!(
            got,
            "/var/log/cfn-init-cmd.log:
  [INFO] Command 01_migrate
  [INFO] \tapplying 0002_orders_note
  [INFO] \tpsycopg: ERROR:  column \"note\" already exists
  [ERROR] Exited with error code 1
/var/log/eb-engine.log:
  [ERROR] An error occurred during execution of command [app-deploy] - [PostBuildEbExtension]. Stop running the command. Error: container commands build failed. Please refer to /var/log/cfn-init.log for more details.
/var/log/cfn-init.log:
  [ERROR] Command 01_migrate (python3 migrate.py) failed"
        );
    }

    #[test]
    fn a_healthy_log_has_nothing_to_say_and_the_budget_holds() {
        let healthy = "----------------------------------------\n/var/log/eb-engine.log\n----------------------------------------\n2026/03/03 12:09:25.964246 [INFO] all fine\n";
        assert_eq!(relevant(healthy, 5000), "");
        let cut = relevant(TAIL, 120);
        assert!(cut.chars().count() <= 160, "{cut}");
        assert!(cut.ends_with("(more in the environment's logs)"), "{cut}");
        assert_eq!(
            without_time("no timestamp [INFO] here"),
            "no timestamp [INFO] here"
        );
    }
}
