//! The local run's database, standing in for what the template creates on AWS: a real PostgreSQL server
//! for `AWS::RDS::DBInstance` `Database` (DBName from the DatabaseName parameter, the master user
//! `beanswap` as the secret's template names it), its credentials in moto's Secrets Manager for
//! `AWS::SecretsManager::Secret` `DatabaseSecret` (with host, port and dbname, as the template's
//! SecretTargetAttachment adds them), and the instance registered with local-aws's RDS so the backup
//! action snapshots it. The stack then resolves `Ref`/`Fn::GetAtt` of both to these, so every environment
//! gets DATABASE_HOST, DATABASE_PORT, DATABASE_NAME and the DATABASE_CREDENTIALS secret as on AWS.
//!
//! The data lives in `<report dir>/postgres` and the snapshots in `<report dir>/snapshots`, both kept
//! after the run: `beanswap restore --snapshot ID` restores one into the same database.

use std::path::{Path, PathBuf};

use local_aws::postgres::{self, Server};
use local_aws::rds::{Instance, SnapshotFile};
use serde_json::json;

use crate::local::LocalCloud;
use crate::template::{Provided, Stack};

/// The template's master user (`DatabaseSecret`'s SecretStringTemplate).
pub const MASTER_USER: &str = "beanswap";

/// The running database of a local run; the server stops when this is dropped.
pub struct LocalDatabase {
    pub server: Server,
    pub instance: Instance,
    pub secret_arn: String,
}

pub fn data_dir(report_dir: &Path) -> PathBuf {
    report_dir.join("postgres")
}

pub fn snapshot_dir(report_dir: &Path) -> PathBuf {
    report_dir.join("snapshots")
}

/// Starts a fresh server (an earlier run's data and snapshots are removed), makes the database and its
/// master user, the secret, and the RDS instance.
pub async fn start(
    report_dir: &Path,
    cloud: &LocalCloud,
    stack: &Stack,
) -> Result<LocalDatabase, String> {
    let dir = data_dir(report_dir);
    let snapshots = snapshot_dir(report_dir);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&snapshots);
    std::fs::create_dir_all(&snapshots).map_err(|e| format!("{}: {e}", snapshots.display()))?;
    let server = tokio::task::spawn_blocking(move || Server::start(&dir))
        .await
        .map_err(|e| format!("PostgreSQL: {e}"))??;
    let name = stack
        .parameter("DatabaseName")
        .map(crate::template::text)
        .unwrap_or_else(|| "app".into());
    let password = uuid::Uuid::new_v4().simple().to_string();
    server.create_database(&name, MASTER_USER, &password)?;
    // RDS keeps instance identifiers in lowercase.
    let id = stack.physical_id("Database").to_ascii_lowercase();
    let secret = json!({
        "username": MASTER_USER,
        "password": password,
        "engine": "postgres",
        "host": server.host(),
        "port": server.port(),
        "dbname": name,
        "dbInstanceIdentifier": id,
    });
    let secret_name = format!(
        "{}-DatabaseSecret-{}",
        crate::template::STACK,
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let secret_arn = local_aws::secrets::create_secret(
        &reqwest::Client::new(),
        cloud.moto_endpoint(),
        &secret_name,
        &secret.to_string(),
    )
    .await?;
    let instance = Instance {
        id,
        host: server.host().into(),
        port: server.port(),
        database: name,
        user: MASTER_USER.into(),
        password,
        snapshot_dir: Some(snapshots),
    };
    cloud.add_db_instance(instance.clone()).await?;
    Ok(LocalDatabase {
        server,
        instance,
        secret_arn,
    })
}

impl LocalDatabase {
    /// The stack with `Database` and `DatabaseSecret` resolving to this server and secret.
    pub fn provide(&self, stack: Stack) -> Stack {
        stack
            .provide(
                "Database",
                Provided {
                    reference: self.instance.id.clone(),
                    attributes: [
                        ("Endpoint.Address".to_string(), self.instance.host.clone()),
                        ("Endpoint.Port".to_string(), self.instance.port.to_string()),
                    ]
                    .into(),
                },
            )
            .provide(
                "DatabaseSecret",
                Provided {
                    reference: self.secret_arn.clone(),
                    attributes: Default::default(),
                },
            )
    }

    /// `version name applied_at` of every migration the database has, oldest first.
    pub fn migrations(&self) -> Vec<String> {
        self.server
            .psql(
                &self.instance.database,
                "SELECT version || ' ' || name || ' ' || to_char(applied_at, 'HH24:MI:SS') FROM schema_migrations ORDER BY version",
            )
            .map(|out| out.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

/// `beanswap restore --snapshot ID`: the snapshot's dump (taken by the backup action through local-aws's
/// RDS) restored into the same database of the last local run, as its master user, in one transaction.
/// Starts that run's server on its data directory for the restore and stops it after.
pub fn restore(report_dir: &Path, snapshot: &str) -> Result<String, String> {
    let snapshots = snapshot_dir(report_dir);
    let id = snapshot.to_ascii_lowercase();
    let meta_path = snapshots.join(format!("{id}.json"));
    let text = std::fs::read_to_string(&meta_path).map_err(|e| {
        format!(
            "no snapshot {id} in {} ({e}); the backup action's snapshots of the last local run are there",
            snapshots.display()
        )
    })?;
    let meta: SnapshotFile =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", meta_path.display()))?;
    let dump = snapshots.join(&meta.dump);
    let dir = data_dir(report_dir);
    if !dir.join("data").exists() {
        return Err(format!(
            "no database of a local run in {} to restore into",
            dir.display()
        ));
    }
    let server = Server::start(&dir)?;
    postgres::restore(&server.superuser(&meta.database), &dump, Some(&meta.user))?;
    let schema = server
        .psql(
            &meta.database,
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
        )
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    Ok(format!(
        "restored database {} of {} from snapshot {} (taken {}, {} bytes): schema version {schema}\n",
        meta.database, meta.instance, meta.id, meta.created, meta.bytes
    ))
}
