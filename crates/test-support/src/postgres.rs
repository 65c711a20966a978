//! One real PostgreSQL server per test binary (initdb costs about a second): started on first use on a
//! free loopback port, its data in a temporary directory that goes with it when the binary exits.
//! Each test makes a database of its own with [`database`], so tests sharing the server never see each
//! other's tables.

use std::sync::OnceLock;

pub use local_aws::postgres::{Login, Server};

static SERVER: OnceLock<Server> = OnceLock::new();

/// The binary's server (started by the first caller).
pub fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        Server::start_scratch().unwrap_or_else(|e| {
            panic!(
                "could not start PostgreSQL ({e}); scripts/test installs the `postgresql` package"
            )
        })
    })
}

/// A fresh database owned by a fresh login role, as RDS makes DBName and the master user: the login
/// its app would use.
pub fn database(prefix: &str) -> Login {
    let server = server();
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let name = format!("{prefix}_{id}");
    let password = uuid::Uuid::new_v4().simple().to_string();
    server
        .create_database(&name, &name, &password)
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    Login {
        host: server.host().into(),
        port: server.port(),
        database: name.clone(),
        user: name,
        password,
    }
}
