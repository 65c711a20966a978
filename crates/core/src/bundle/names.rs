//! Entry names: whether a name is safe to unpack (no zip slip), where it unpacks to, and which two
//! entries would land on the same place. Apart because these rules are shared: the central directory's
//! raw names are checked here before anything is read, and the planned layout is checked again with
//! [`path_key`] after normalisation.

use std::collections::HashMap;

use super::directory::Record;
use super::{BundleError, Clash};

/// Checks a raw entry name as `unzip` would see it; `\` counts as a separator here whatever the
/// settings, because some unzip implementations honour it.
pub(super) fn check_path(name: &str) -> Result<(), BundleError> {
    let unsafe_path = |reason| BundleError::UnsafePath {
        entry: name.to_string(),
        reason,
    };
    if name.contains('\0') {
        return Err(unsafe_path("contains a NUL byte"));
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Err(unsafe_path("is an absolute path"));
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(unsafe_path("starts with a Windows drive letter"));
    }
    let mut parts = name
        .split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".");
    if parts.clone().any(|p| p == "..") {
        return Err(unsafe_path("climbs out of the bundle root with `..`"));
    }
    if parts.next().is_none() {
        return Err(unsafe_path("has an empty name"));
    }
    Ok(())
}

pub(super) fn components(name: &str, backslash: bool) -> Vec<&str> {
    let split: Box<dyn Iterator<Item = &str>> = if backslash {
        Box::new(name.split(['/', '\\']))
    } else {
        Box::new(name.split('/'))
    };
    split.filter(|p| !p.is_empty() && *p != ".").collect()
}

pub(super) fn is_os_metadata(parts: &[&str]) -> bool {
    parts.first() == Some(&"__MACOSX") || parts.last() == Some(&".DS_Store")
}

/// Where an entry unpacks to, for comparing entries: `\` read as a separator (see [`Clash::SamePath`]),
/// `.` and empty parts dropped, letter case folded (see [`Clash::Case`]).
pub(super) fn path_key(name: &str) -> String {
    components(name, true).join("/").to_lowercase()
}

pub(super) fn is_folder_name(name: &str) -> bool {
    name.ends_with('/') || name.ends_with('\\')
}

/// Checks every record's path ([`check_path`]) and refuses any two that would unpack to the same place.
pub(super) fn check_names(records: &[Record]) -> Result<(), BundleError> {
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        check_path(&record.name)?;
        let key = path_key(&record.name);
        if let Some(&first) = seen.get(&key) {
            let (a, b) = (&records[first].name, &record.name);
            let exact = |n: &str| components(n, true).join("/");
            let clash = if a == b {
                Clash::SameName
            } else if exact(a) != exact(b) {
                Clash::Case
            } else if is_folder_name(a) != is_folder_name(b) {
                Clash::FileAndFolder
            } else {
                Clash::SamePath
            };
            return Err(BundleError::Duplicate {
                first: a.clone(),
                first_index: first,
                second: b.clone(),
                second_index: index,
                clash,
            });
        }
        seen.insert(key, index);
    }
    Ok(())
}
