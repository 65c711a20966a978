//! The RDS subset the backup action uses (2014-10-31, awsQuery), following botocore's
//! `rds/2014-10-31/service-2.json`: CreateDBSnapshot, DescribeDBSnapshots and DeleteDBSnapshot, with the
//! model's member names, list wrappers (`DBSnapshots/DBSnapshot`, `TagList/Tag`) and error codes
//! (`DBInstanceNotFound` 404, `DBSnapshotAlreadyExists`, `DBSnapshotNotFound` 404,
//! `InvalidDBSnapshotState`).
//!
//! A DB instance is a real PostgreSQL database registered with [`crate::LocalAws::add_db_instance`]
//! (the stand-in does not create instances: the template's `AWS::RDS::DBInstance` is played by the
//! run's own server). A manual snapshot is a `pg_dump -Fc` of it into the snapshot directory: the
//! snapshot is `creating` while the dump runs (CreateDBSnapshot answers at once, as RDS does) and
//! `available` once it is complete, with a metadata file beside the dump that `beanswap restore` reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::beanstalk::{ACCOUNT, REGION};
use crate::query::{Params, QueryError, Xml};

pub const NAMESPACE: &str = "http://rds.amazonaws.com/doc/2014-10-31/";
/// The API version RDS requests carry: how the dispatcher tells them from Beanstalk's.
pub const VERSION: &str = "2014-10-31";

/// A DB instance: where its database is and how to log in (the master user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// DBInstanceIdentifier.
    pub id: String,
    pub host: String,
    pub port: u16,
    /// DBName.
    pub database: String,
    /// MasterUsername.
    pub user: String,
    pub password: String,
    /// Where its snapshots' dumps go; `<state dir>/rds/snapshots` when not given.
    #[serde(default)]
    pub snapshot_dir: Option<PathBuf>,
}

/// A manual DB snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub id: String,
    pub instance: String,
    pub created: SystemTime,
    /// `creating`, `available`, `failed`.
    pub status: &'static str,
    pub tags: Vec<(String, String)>,
    pub dump: PathBuf,
    pub bytes: u64,
    pub percent: u8,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub sequence: u64,
}

/// What `beanswap restore` reads beside a dump: which database it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    #[serde(rename = "DBSnapshotIdentifier")]
    pub id: String,
    #[serde(rename = "DBInstanceIdentifier")]
    pub instance: String,
    pub database: String,
    pub user: String,
    /// RFC 3339.
    pub created: String,
    /// The dump's file name, in the same directory.
    pub dump: String,
    pub bytes: u64,
}

/// Everything RDS holds for one region.
#[derive(Debug, Default)]
pub struct Store {
    pub instances: BTreeMap<String, Instance>,
    /// Keyed by the (lowercase) snapshot identifier.
    pub snapshots: BTreeMap<String, Snapshot>,
    next_sequence: u64,
}

/// A dump to take: the snapshot's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dump(pub String);

pub fn snapshot_arn(id: &str) -> String {
    format!("arn:aws:rds:{REGION}:{ACCOUNT}:snapshot:{id}")
}

fn instance_not_found(id: &str) -> QueryError {
    QueryError::new(
        404,
        "DBInstanceNotFound",
        format!("DBInstance {id} not found."),
    )
}

fn snapshot_not_found(id: &str) -> QueryError {
    QueryError::new(
        404,
        "DBSnapshotNotFound",
        format!("DBSnapshot {id} not found."),
    )
}

/// CreateDBSnapshotMessage's rule for DBSnapshotIdentifier: 1 to 255 letters, digits or hyphens, a
/// letter first, no hyphen at the end and no two in a row.
fn valid_identifier(id: &str) -> bool {
    (1..=255).contains(&id.len())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && id.starts_with(|c: char| c.is_ascii_alphabetic())
        && !id.ends_with('-')
        && !id.contains("--")
}

/// `Name.Tag.N.Field` (the model's member name) or `Name.member.N.Field`, one map per member.
fn members(p: &Params, name: &str, member: &str, fields: &[&str]) -> Vec<BTreeMap<String, String>> {
    let mut out = vec![];
    for wrapper in [member, "member"] {
        for i in 1.. {
            let one: BTreeMap<String, String> = fields
                .iter()
                .filter_map(|f| {
                    p.get(&format!("{name}.{wrapper}.{i}.{f}"))
                        .map(|v| (f.to_string(), v.to_string()))
                })
                .collect();
            if one.is_empty() {
                break;
            }
            out.push(one);
        }
        if !out.is_empty() {
            break;
        }
    }
    out
}

/// Runs one RDS operation: the XML result and a dump to start, if any.
pub fn handle(
    store: &mut Store,
    operation: &str,
    p: &Params,
    default_dir: &std::path::Path,
) -> Result<(String, Option<Dump>), QueryError> {
    match operation {
        "CreateDBSnapshot" => create_snapshot(store, p, default_dir),
        "DescribeDBSnapshots" => describe_snapshots(store, p).map(|x| (x, None)),
        "DeleteDBSnapshot" => delete_snapshot(store, p).map(|x| (x, None)),
        other => Err(QueryError::new(
            400,
            "InvalidAction",
            format!("Could not find operation {other} for version {VERSION} (local-aws serves CreateDBSnapshot, DescribeDBSnapshots and DeleteDBSnapshot)"),
        )),
    }
}

fn create_snapshot(
    store: &mut Store,
    p: &Params,
    default_dir: &std::path::Path,
) -> Result<(String, Option<Dump>), QueryError> {
    let id = p.required("DBSnapshotIdentifier")?;
    let instance_id = p.required("DBInstanceIdentifier")?;
    if !valid_identifier(id) {
        return Err(QueryError::invalid(format!(
            "The parameter DBSnapshotIdentifier is not a valid identifier. Identifiers must begin with a letter; must contain only ASCII letters, digits, and hyphens; and must not end with a hyphen or contain two consecutive hyphens. ({id})"
        )));
    }
    let id = id.to_ascii_lowercase();
    let instance = store
        .instances
        .get(&instance_id.to_ascii_lowercase())
        .cloned()
        .ok_or_else(|| instance_not_found(instance_id))?;
    if store.snapshots.contains_key(&id) {
        return Err(QueryError::new(
            400,
            "DBSnapshotAlreadyExists",
            format!("Cannot create the snapshot because a snapshot with the identifier {id} already exists."),
        ));
    }
    let tags = members(p, "Tags", "Tag", &["Key", "Value"])
        .into_iter()
        .filter_map(|t| {
            Some((
                t.get("Key")?.clone(),
                t.get("Value").cloned().unwrap_or_default(),
            ))
        })
        .collect();
    store.next_sequence += 1;
    let dir = instance
        .snapshot_dir
        .clone()
        .unwrap_or_else(|| default_dir.join("rds").join("snapshots"));
    let snapshot = Snapshot {
        dump: dir.join(format!("{id}.dump")),
        id: id.clone(),
        instance: instance.id.clone(),
        created: SystemTime::now(),
        status: "creating",
        tags,
        bytes: 0,
        percent: 0,
        port: instance.port,
        user: instance.user.clone(),
        database: instance.database.clone(),
        sequence: store.next_sequence,
    };
    let mut x = Xml::new();
    snapshot_xml(&mut x, &snapshot);
    store.snapshots.insert(id.clone(), snapshot);
    Ok((x.finish(), Some(Dump(id))))
}

fn describe_snapshots(store: &Store, p: &Params) -> Result<String, QueryError> {
    let mut instance = p.get("DBInstanceIdentifier").map(str::to_ascii_lowercase);
    let mut id = p.get("DBSnapshotIdentifier").map(str::to_ascii_lowercase);
    let mut kind = p.get("SnapshotType").map(str::to_string);
    for f in members(p, "Filters", "Filter", &["Name"]) {
        let name = f.get("Name").cloned().unwrap_or_default();
        let prefix = (1..)
            .map(|i| format!("Filters.Filter.{i}.Name"))
            .take(50)
            .find(|k| p.get(k) == Some(name.as_str()))
            .map(|k| k.trim_end_matches(".Name").to_string())
            .unwrap_or_default();
        let value = p
            .get(&format!("{prefix}.Values.Value.1"))
            .or_else(|| p.get(&format!("{prefix}.Values.member.1")))
            .map(str::to_ascii_lowercase);
        match name.as_str() {
            "db-instance-id" => instance = value,
            "db-snapshot-id" => id = value,
            "snapshot-type" => kind = value,
            other => {
                return Err(QueryError::invalid(format!(
                    "Unrecognized filter name: {other}"
                )))
            }
        }
    }
    if let Some(i) = &instance {
        if !store.instances.contains_key(i) {
            return Err(instance_not_found(i));
        }
    }
    let max = p.int("MaxRecords", 20, 100)?.unwrap_or(100) as usize;
    let after: u64 = p
        .get("Marker")
        .map(|m| {
            m.parse()
                .map_err(|_| QueryError::invalid(format!("Invalid marker: {m}")))
        })
        .transpose()?
        .unwrap_or(0);
    if let Some(one) = &id {
        if !store.snapshots.contains_key(one) && instance.is_none() {
            return Err(snapshot_not_found(one));
        }
    }
    // Only manual snapshots exist here: asking for automated (or shared, public) ones finds none.
    let manual = kind.as_deref().is_none_or(|k| k == "manual");
    let mut found: Vec<&Snapshot> = store
        .snapshots
        .values()
        .filter(|s| manual && s.sequence > after)
        .filter(|s| id.as_ref().is_none_or(|i| &s.id == i))
        .filter(|s| {
            instance
                .as_ref()
                .is_none_or(|i| s.instance.eq_ignore_ascii_case(i))
        })
        .collect();
    found.sort_by_key(|s| s.sequence);
    let more = found.len() > max;
    found.truncate(max);
    let mut x = Xml::new();
    if more {
        if let Some(last) = found.last() {
            x.text("Marker", &last.sequence.to_string());
        }
    }
    x.elem("DBSnapshots", |x| {
        for s in &found {
            x.elem("DBSnapshot", |x| snapshot_fields(x, s));
        }
    });
    Ok(x.finish())
}

fn delete_snapshot(store: &mut Store, p: &Params) -> Result<String, QueryError> {
    let id = p.required("DBSnapshotIdentifier")?.to_ascii_lowercase();
    let snapshot = store
        .snapshots
        .get(&id)
        .ok_or_else(|| snapshot_not_found(&id))?;
    if snapshot.status != "available" && snapshot.status != "failed" {
        return Err(QueryError::new(
            400,
            "InvalidDBSnapshotState",
            format!(
                "Cannot delete the snapshot because it is not in the available state (it is {}).",
                snapshot.status
            ),
        ));
    }
    let mut gone = snapshot.clone();
    store.snapshots.remove(&id);
    let _ = std::fs::remove_file(&gone.dump);
    let _ = std::fs::remove_file(gone.dump.with_extension("json"));
    gone.status = "deleted";
    let mut x = Xml::new();
    snapshot_xml(&mut x, &gone);
    Ok(x.finish())
}

fn snapshot_xml(x: &mut Xml, s: &Snapshot) {
    x.elem("DBSnapshot", |x| snapshot_fields(x, s));
}

fn snapshot_fields(x: &mut Xml, s: &Snapshot) {
    x.text("DBSnapshotIdentifier", &s.id)
        .text("DBInstanceIdentifier", &s.instance)
        .time("SnapshotCreateTime", s.created)
        .text("Engine", "postgres")
        .text(
            "AllocatedStorage",
            &(s.bytes / (1 << 30)).max(1).to_string(),
        )
        .text("Status", s.status)
        .text("Port", &s.port.to_string())
        .text("AvailabilityZone", &format!("{REGION}a"))
        .text("MasterUsername", &s.user)
        .text("LicenseModel", "postgresql-license")
        .text("SnapshotType", "manual")
        .text("PercentProgress", &s.percent.to_string())
        .text("StorageType", "gp3")
        .text("Encrypted", "true")
        .text("DBSnapshotArn", &snapshot_arn(&s.id))
        .elem("TagList", |x| {
            for (k, v) in &s.tags {
                x.elem("Tag", |x| {
                    x.text("Key", k).text("Value", v);
                });
            }
        });
}

impl Store {
    /// The dump to take for a snapshot still being created: (its instance's login, the dump's path).
    pub fn dump_job(&self, id: &str) -> Option<(Instance, PathBuf)> {
        let s = self.snapshots.get(id).filter(|s| s.status == "creating")?;
        let instance = self.instances.get(&s.instance.to_ascii_lowercase())?;
        Some((instance.clone(), s.dump.clone()))
    }

    /// Records how a dump ended.
    pub fn dumped(&mut self, id: &str, result: Result<u64, String>) {
        if let Some(s) = self.snapshots.get_mut(id) {
            match result {
                Ok(bytes) => {
                    s.status = "available";
                    s.percent = 100;
                    s.bytes = bytes;
                }
                Err(e) => {
                    tracing::warn!(snapshot = id, error = %e, "pg_dump failed");
                    s.status = "failed";
                }
            }
        }
    }

    /// The metadata file written beside an available snapshot's dump.
    pub fn snapshot_file(&self, id: &str) -> Option<SnapshotFile> {
        let s = self.snapshots.get(id)?;
        Some(SnapshotFile {
            id: s.id.clone(),
            instance: s.instance.clone(),
            database: s.database.clone(),
            user: s.user.clone(),
            created: humantime::format_rfc3339_seconds(s.created).to_string(),
            dump: s
                .dump
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            bytes: s.bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_create_db_snapshots_rule() {
        for ok in ["a", "beanswap-shop-1a2b3c4d", "A1-b2"] {
            assert!(valid_identifier(ok), "{ok}");
        }
        for bad in ["", "1abc", "a--b", "a-", "a_b", &"a".repeat(256)] {
            assert!(!valid_identifier(bad), "{bad}");
        }
    }
}
