//! What a service spec names of the cluster's secrets and configs (SPEC §9): the file each
//! task gets, its owner and mode. The objects themselves (their data, encrypted for secrets)
//! live in the store; a reference names one version of one object.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::core::CoreError;

/// Default file mode of a secret or config (`0444`).
pub const MOUNT_MODE_DEFAULT: u32 = 0o444;

/// One `--secret` of a service: which secret (and version) and where the task sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretReference {
    /// The secret's name (`source=`).
    pub name: String,
    /// The secret's ID, resolved when the spec is accepted.
    pub secret_id: String,
    /// The version the tasks see (`secret rotate` adds versions).
    pub version: u64,
    /// File name under `/run/secrets` (Docker) or `FLOTILLA_SECRETS_DIR` (process); default
    /// the name.
    pub target: String,
    /// Owner user ID (Docker runtime); empty is root.
    pub uid: String,
    /// Owner group ID (Docker runtime); empty is root.
    pub gid: String,
    /// File mode (default `0444`).
    pub mode: u32,
}

/// One `--config` of a service: as a secret reference, but the target may be an absolute path.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConfigReference {
    /// The config's name (`source=`).
    pub name: String,
    /// The config's ID, resolved when the spec is accepted.
    pub config_id: String,
    /// The version the tasks see.
    pub version: u64,
    /// `/<target>` in the container unless absolute; the file name under
    /// `FLOTILLA_CONFIGS_DIR` for processes.
    pub target: String,
    /// Owner user ID (Docker runtime); empty is root.
    pub uid: String,
    /// Owner group ID (Docker runtime); empty is root.
    pub gid: String,
    /// File mode (default `0444`).
    pub mode: u32,
}

/// Checks the `--secret`s and `--config`s of a spec before anything changes: a secret's
/// target is a plain file name; a config's a plain file name or an absolute path without
/// `..`; modes fit in `0777`; owners are numeric IDs (or empty, root); no two references of
/// a kind share a target.
pub fn validate_references(
    secrets: &[SecretReference],
    configs: &[ConfigReference],
) -> Result<(), CoreError> {
    let mut targets: HashSet<(&str, &str)> = HashSet::new();
    let rows = secrets
        .iter()
        .map(|r| {
            (
                "secret",
                r.name.as_str(),
                r.target.as_str(),
                &r.uid,
                &r.gid,
                r.mode,
            )
        })
        .chain(configs.iter().map(|r| {
            (
                "config",
                r.name.as_str(),
                r.target.as_str(),
                &r.uid,
                &r.gid,
                r.mode,
            )
        }));
    for (kind, name, target, uid, gid, mode) in rows {
        let invalid = |why: String| Err(CoreError::InvalidSpec(format!("{kind} {name}: {why}")));
        if name.is_empty() {
            return Err(CoreError::InvalidSpec(format!(
                "a {kind} reference needs a source"
            )));
        }
        let target_ok = if kind == "secret" {
            is_plain_file_name(target)
        } else {
            is_plain_file_name(target) || is_clean_absolute_path(target)
        };
        if !target_ok {
            let rule = if kind == "secret" {
                "a plain file name (no '/', not '.' or '..')"
            } else {
                "a plain file name or an absolute path without '..'"
            };
            return invalid(format!("target {target:?} must be {rule}"));
        }
        if mode & !0o777 != 0 {
            return invalid(format!("mode {mode:o} has bits beyond 0777"));
        }
        for (what, id) in [("uid", uid), ("gid", gid)] {
            if !id.is_empty() && (id.parse::<u32>().is_err()) {
                return invalid(format!("{what} {id:?} must be a numeric ID"));
            }
        }
        if !targets.insert((kind, target)) {
            return invalid(format!("target {target:?} is used twice"));
        }
    }
    Ok(())
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

fn is_clean_absolute_path(path: &str) -> bool {
    path.len() > 1
        && path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains('\0')
        && path
            .split('/')
            .skip(1)
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(target: &str, mode: u32) -> SecretReference {
        SecretReference {
            name: "db".into(),
            secret_id: String::new(),
            version: 0,
            target: target.into(),
            uid: String::new(),
            gid: String::new(),
            mode,
        }
    }

    fn config(target: &str) -> ConfigReference {
        ConfigReference {
            name: "site".into(),
            config_id: String::new(),
            version: 0,
            target: target.into(),
            uid: "0".into(),
            gid: String::new(),
            mode: MOUNT_MODE_DEFAULT,
        }
    }

    #[test]
    fn good_references_pass() {
        let secrets = [secret("db", 0o400), secret("db-copy", MOUNT_MODE_DEFAULT)];
        let configs = [config("site.conf"), config("/etc/nginx/nginx.conf")];
        assert_eq!(validate_references(&secrets, &configs), Ok(()));
    }

    #[test]
    fn bad_targets_modes_owners_and_duplicates_are_refused() {
        for (secrets, configs, needle) in [
            (vec![secret("a/b", 0o444)], vec![], "plain file name"),
            (vec![secret("..", 0o444)], vec![], "plain file name"),
            (vec![secret("/run/x", 0o444)], vec![], "plain file name"),
            (vec![secret("x", 0o1777)], vec![], "beyond 0777"),
            (
                vec![secret("x", 0o444), secret("x", 0o400)],
                vec![],
                "used twice",
            ),
            (vec![], vec![config("/etc/../passwd")], "absolute path"),
            (vec![], vec![config("/etc/")], "absolute path"),
        ] {
            let error = validate_references(&secrets, &configs).expect_err(needle);
            assert!(error.to_string().contains(needle), "{error} lacks {needle}");
        }
        let mut owned = config("c");
        owned.gid = "staff".into();
        let error = validate_references(&[], &[owned]).expect_err("gid");
        assert!(error.to_string().contains("numeric"), "{error}");
        // A secret and a config may share a file name: they land in different directories.
        assert_eq!(
            validate_references(&[secret("x", 0o444)], &[config("x")]),
            Ok(())
        );
    }
}
