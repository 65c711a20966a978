//! CodePipeline's stage conditions as the local run applies them (pipeline type V2): an entry condition
//! whose rules must pass before the stage runs (else FAIL or SKIP), a failure condition that rolls the
//! stage back, and a success condition whose rules must pass after it (else ROLLBACK).
//!
//! From the CodePipeline User Guide, "Configure conditions for a stage": "If all rules in a condition
//! succeed, then the condition is met"; entry conditions engage FAIL or SKIP, failure conditions
//! ROLLBACK, success conditions ROLLBACK. A rollback re-runs the stage with the previous successful
//! execution's artifacts and variables ("Rolling back a stage"). Rule references: "DeploymentWindow"
//! (a cron of allowed times and a time zone) and "CloudWatchAlarm" (fails while an alarm is in ALARM).
//!
//! Anything else (another rule provider, a cron feature or time zone this does not model) is an error
//! naming it: a condition is never treated as passed because it was not understood.

use std::time::{Duration, SystemTime};

use serde_json::Value;

/// What a condition does when its rules do not all pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionResult {
    Fail,
    Skip,
    Rollback,
}

impl ConditionResult {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "FAIL" => Ok(ConditionResult::Fail),
            "SKIP" => Ok(ConditionResult::Skip),
            "ROLLBACK" => Ok(ConditionResult::Rollback),
            other => Err(format!(
                "condition result `{other}` is not modelled locally"
            )),
        }
    }
}

/// A rule of a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Passes while now is inside the cron's allowed times.
    DeploymentWindow { name: String, cron: Cron },
    /// Passes while none of the alarm's state is ALARM.
    CloudWatchAlarm { name: String, alarm: String },
}

/// A condition: its rules and what it does when one of them does not pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub result: ConditionResult,
    pub rules: Vec<Rule>,
}

/// A stage's conditions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageConditions {
    pub before_entry: Vec<Condition>,
    /// OnFailure's result ROLLBACK: a failed stage is rolled back.
    pub rollback_on_failure: bool,
    pub on_success: Vec<Condition>,
}

impl StageConditions {
    /// From a stage declaration (`BeforeEntry`, `OnFailure`, `OnSuccess`), evaluated.
    pub fn parse(stage: &Value) -> Result<Self, String> {
        let conditions = |key: &str| -> Result<Vec<Condition>, String> {
            stage[key]["Conditions"]
                .as_array()
                .map(|list| list.iter().map(|c| parse_condition(key, c)).collect())
                .unwrap_or(Ok(vec![]))
        };
        let on_failure = &stage["OnFailure"];
        let rollback_on_failure = match on_failure["Result"].as_str() {
            None => false,
            Some("ROLLBACK") => true,
            Some(other) => {
                return Err(format!(
                    "OnFailure result `{other}` is not modelled locally (ROLLBACK is)"
                ))
            }
        };
        if on_failure.get("Conditions").is_some() {
            return Err("OnFailure conditions are not modelled locally (a Result alone is)".into());
        }
        Ok(StageConditions {
            before_entry: conditions("BeforeEntry")?,
            rollback_on_failure,
            on_success: conditions("OnSuccess")?,
        })
    }
}

fn parse_condition(key: &str, c: &Value) -> Result<Condition, String> {
    let result = ConditionResult::parse(c["Result"].as_str().unwrap_or("FAIL"))?;
    let allowed: &[ConditionResult] = match key {
        "BeforeEntry" => &[ConditionResult::Fail, ConditionResult::Skip],
        _ => &[ConditionResult::Rollback],
    };
    if !allowed.contains(&result) {
        return Err(format!("{key} conditions take {allowed:?}, not {result:?}"));
    }
    let rules = c["Rules"]
        .as_array()
        .map(|rules| rules.iter().map(parse_rule).collect())
        .unwrap_or(Ok(vec![]))?;
    Ok(Condition { result, rules })
}

fn parse_rule(r: &Value) -> Result<Rule, String> {
    let name = r["Name"].as_str().unwrap_or_default().to_string();
    let provider = r["RuleTypeId"]["Provider"].as_str().unwrap_or_default();
    let config = &r["Configuration"];
    match provider {
        "DeploymentWindow" => {
            let cron = config["Cron"]
                .as_str()
                .ok_or_else(|| format!("rule {name}: DeploymentWindow needs a Cron"))?;
            let zone = config["TimeZone"].as_str().unwrap_or("UTC");
            if !["UTC", "Etc/UTC", "GMT", "Etc/GMT"].contains(&zone) {
                return Err(format!(
                    "rule {name}: time zone `{zone}` is not modelled locally (UTC is)"
                ));
            }
            Ok(Rule::DeploymentWindow {
                name: name.clone(),
                cron: Cron::parse(cron).map_err(|e| format!("rule {name}: {e}"))?,
            })
        }
        "CloudWatchAlarm" => Ok(Rule::CloudWatchAlarm {
            name: name.clone(),
            alarm: config["AlarmName"]
                .as_str()
                .ok_or_else(|| format!("rule {name}: CloudWatchAlarm needs an AlarmName"))?
                .to_string(),
        }),
        other => Err(format!(
            "rule {name}: provider `{other}` is not modelled locally"
        )),
    }
}

/// A DeploymentWindow cron: seconds (only `*`), minutes, hours, day of month, month, day of week
/// (1-7 = SUN-SAT), and an optional year; `*`, `?`, values, ranges, lists and `/` steps. `L`, `W` and
/// `#` are refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    text: String,
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    years: Option<Vec<bool>>,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn field(text: &str, min: u32, max: u32, names: &[&str], what: &str) -> Result<Vec<bool>, String> {
    let mut set = vec![false; (max + 1) as usize];
    let value = |s: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(min + i as u32);
        }
        let v: u32 = s
            .parse()
            .map_err(|_| format!("{what}: `{s}` is not a value this models"))?;
        if v < min || v > max {
            return Err(format!("{what}: {v} is outside {min}-{max}"));
        }
        Ok(v)
    };
    for part in text.split(',') {
        if part.contains(['L', 'W', '#']) && !names.iter().any(|n| n.eq_ignore_ascii_case(part)) {
            return Err(format!(
                "{what}: `{part}` (L, W, #) is not modelled locally"
            ));
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .map_err(|_| format!("{what}: bad step `{s}`"))?
                    .max(1),
            ),
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" | "?" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if part.contains('/') => (value(r)?, max),
                None => (value(r)?, value(r)?),
            },
        };
        let mut v = from;
        while v <= to {
            set[v as usize] = true;
            v += step;
        }
    }
    Ok(set)
}

impl Cron {
    pub fn parse(text: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if !(6..=7).contains(&fields.len()) {
            return Err(format!(
                "cron `{text}` has {} fields; it takes 6 (seconds minutes hours day-of-month month day-of-week) and an optional year",
                fields.len()
            ));
        }
        if fields[0] != "*" && fields[0] != "0" {
            return Err(format!("cron `{text}`: the seconds field takes only `*`"));
        }
        Ok(Cron {
            text: text.to_string(),
            minutes: field(fields[1], 0, 59, &[], "minutes")?,
            hours: field(fields[2], 0, 23, &[], "hours")?,
            days: field(fields[3], 1, 31, &[], "day of month")?,
            months: field(fields[4], 1, 12, &MONTHS, "month")?,
            weekdays: field(fields[5], 1, 7, &WEEKDAYS, "day of week")?,
            years: fields
                .get(6)
                .map(|y| field(y, 1970, 2199, &[], "year"))
                .transpose()?,
        })
    }

    /// Whether `t` (UTC) is an allowed time.
    pub fn allows(&self, t: SystemTime) -> bool {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let days = (secs / 86_400) as i64;
        let (year, month, day) = civil(days);
        // 1970-01-01 was a Thursday: day of week 5 with 1 = SUN.
        let weekday = ((days + 4).rem_euclid(7) + 1) as usize;
        let minute = ((secs / 60) % 60) as usize;
        let hour = ((secs / 3600) % 24) as usize;
        self.minutes[minute]
            && self.hours[hour]
            && self.days[day as usize]
            && self.months[month as usize]
            && self.weekdays[weekday]
            && self
                .years
                .as_ref()
                .is_none_or(|y| (year as usize) < y.len() && y[year as usize])
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Days since 1970-01-01 -> (year, month 1-12, day 1-31), proleptic Gregorian (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).unwrap()
    }

    #[test]
    fn a_weekday_office_hours_window() {
        let cron = Cron::parse("* * 9-16 ? * MON-FRI").unwrap();
        // 2026-12-02 is a Wednesday.
        assert!(cron.allows(at("2026-12-02T10:30:00Z")));
        assert!(!cron.allows(at("2026-12-02T17:00:00Z")));
        // 2026-12-05 is a Saturday.
        assert!(!cron.allows(at("2026-12-05T10:30:00Z")));
        let sundays = Cron::parse("* 0/15 * ? * 1 2026").unwrap();
        assert!(sundays.allows(at("2026-12-06T03:45:00Z")));
        assert!(!sundays.allows(at("2026-12-06T03:46:00Z")));
        assert!(!sundays.allows(at("2027-12-05T03:45:00Z")));
    }

    #[test]
    fn what_is_not_modelled_is_refused_never_allowed() {
        for (cron, expected) in [
            ("* * * L * ?", "(L, W, #) is not modelled"),
            ("* * * ? * 6#3", "(L, W, #) is not modelled"),
            ("* * * * *", "has 5 fields"),
            ("5 * * * * ?", "seconds field takes only `*`"),
            ("* 61 * * * ?", "61 is outside 0-59"),
        ] {
            let err = Cron::parse(cron).unwrap_err();
            assert!(err.contains(expected), "{cron}: {err}");
        }
        let stage = serde_json::json!({"BeforeEntry": {"Conditions": [{"Result": "FAIL", "Rules": [
            {"Name": "Gate", "RuleTypeId": {"Category": "Rule", "Owner": "AWS", "Provider": "LambdaInvoke", "Version": "1"}}
        ]}]}});
        assert!(StageConditions::parse(&stage)
            .unwrap_err()
            .contains("provider `LambdaInvoke` is not modelled locally"));
        let zone = serde_json::json!({"BeforeEntry": {"Conditions": [{"Result": "FAIL", "Rules": [
            {"Name": "W", "RuleTypeId": {"Provider": "DeploymentWindow"}, "Configuration": {"Cron": "* * * * * ?", "TimeZone": "Europe/Paris"}}
        ]}]}});
        assert!(StageConditions::parse(&zone)
            .unwrap_err()
            .contains("time zone `Europe/Paris` is not modelled locally"));
    }

    #[test]
    fn a_stage_declaration_parses_into_its_conditions() {
        let stage = serde_json::json!({
            "Name": "Swap",
            "BeforeEntry": {"Conditions": [{"Result": "SKIP", "Rules": [
                {"Name": "SwapWindow", "RuleTypeId": {"Category": "Rule", "Owner": "AWS", "Provider": "DeploymentWindow", "Version": "1"},
                 "Configuration": {"Cron": "* * 9-16 ? * MON-FRI", "TimeZone": "UTC"}}]}]},
            "OnFailure": {"Result": "ROLLBACK"},
            "OnSuccess": {"Conditions": [{"Result": "ROLLBACK", "Rules": [
                {"Name": "Alarm", "RuleTypeId": {"Category": "Rule", "Owner": "AWS", "Provider": "CloudWatchAlarm", "Version": "1"},
                 "Configuration": {"AlarmName": "shop-5xx"}}]}]}
        });
        let c = StageConditions::parse(&stage).unwrap();
        assert!(c.rollback_on_failure);
        assert_eq!(c.before_entry[0].result, ConditionResult::Skip);
        assert!(
            matches!(&c.before_entry[0].rules[0], Rule::DeploymentWindow { cron, .. } if cron.text() == "* * 9-16 ? * MON-FRI")
        );
        assert_eq!(
            c.on_success[0].rules[0],
            Rule::CloudWatchAlarm {
                name: "Alarm".into(),
                alarm: "shop-5xx".into()
            }
        );
        assert_eq!(
            StageConditions::parse(&serde_json::json!({})).unwrap(),
            StageConditions::default()
        );
    }
}
