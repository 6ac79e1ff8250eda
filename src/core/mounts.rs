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

/// Parses `--secret` (as Docker): `NAME`, or `source=NAME[,target=FILE][,uid=N][,gid=N]
/// [,mode=0400]` (`src` for `source`; the mode in octal). The secret's ID and version are
/// left for the leader, which resolves the name to the newest version.
pub fn parse_secret_reference(text: &str) -> Result<SecretReference, CoreError> {
    let parts = parse_mount("--secret", text)?;
    Ok(SecretReference {
        target: parts.target.unwrap_or_else(|| parts.source.clone()),
        name: parts.source,
        secret_id: String::new(),
        version: 0,
        uid: parts.uid,
        gid: parts.gid,
        mode: parts.mode,
    })
}

/// Parses `--config`, in the same form as [`parse_secret_reference`]; the target may be an
/// absolute path.
pub fn parse_config_reference(text: &str) -> Result<ConfigReference, CoreError> {
    let parts = parse_mount("--config", text)?;
    Ok(ConfigReference {
        target: parts.target.unwrap_or_else(|| parts.source.clone()),
        name: parts.source,
        config_id: String::new(),
        version: 0,
        uid: parts.uid,
        gid: parts.gid,
        mode: parts.mode,
    })
}

struct MountParts {
    source: String,
    target: Option<String>,
    uid: String,
    gid: String,
    mode: u32,
}

fn parse_mount(flag: &'static str, text: &str) -> Result<MountParts, CoreError> {
    let refuse = |reason: String| CoreError::parse(flag, text, reason);
    let mut parts = MountParts {
        source: String::new(),
        target: None,
        uid: String::new(),
        gid: String::new(),
        mode: MOUNT_MODE_DEFAULT,
    };
    if !text.contains('=') {
        if text.is_empty() || text.contains(',') {
            return Err(refuse("expected NAME or source=NAME[,target=...]".into()));
        }
        parts.source = text.to_string();
        return Ok(parts);
    }
    for field in text.split(',') {
        let Some((key, value)) = field.split_once('=') else {
            return Err(refuse(format!("{field:?} is not KEY=VALUE")));
        };
        if value.is_empty() {
            return Err(refuse(format!("{key} needs a value")));
        }
        match key.trim().to_ascii_lowercase().as_str() {
            "source" | "src" => parts.source = value.to_string(),
            "target" => parts.target = Some(value.to_string()),
            "uid" => parts.uid = value.to_string(),
            "gid" => parts.gid = value.to_string(),
            "mode" => {
                let digits = value.strip_prefix("0o").unwrap_or(value);
                parts.mode = u32::from_str_radix(digits, 8)
                    .ok()
                    .filter(|mode| mode & !0o777 == 0)
                    .ok_or_else(|| {
                        refuse(format!("mode {value:?} is not an octal mode up to 0777"))
                    })?;
            }
            other => {
                return Err(refuse(format!(
                    "unknown field {other:?}: expected source, target, uid, gid or mode"
                )))
            }
        }
    }
    if parts.source.is_empty() {
        return Err(refuse("source=NAME is required".into()));
    }
    Ok(parts)
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
    fn references_parse_as_docker_writes_them() {
        let short = parse_secret_reference("db_password").expect("name only");
        assert_eq!(
            (short.name.as_str(), short.target.as_str(), short.mode),
            ("db_password", "db_password", MOUNT_MODE_DEFAULT)
        );
        let long = parse_secret_reference("source=db,target=password,uid=1000,gid=1000,mode=0400")
            .expect("long form");
        assert_eq!(
            (
                long.name.as_str(),
                long.target.as_str(),
                long.uid.as_str(),
                long.gid.as_str(),
                long.mode
            ),
            ("db", "password", "1000", "1000", 0o400)
        );
        let config = parse_config_reference("src=site,target=/etc/site.conf").expect("config");
        assert_eq!(
            (config.name.as_str(), config.target.as_str()),
            ("site", "/etc/site.conf")
        );
        for (text, needle) in [
            ("", "expected NAME"),
            ("target=x", "source=NAME is required"),
            ("source=db,mode=0999", "octal"),
            ("source=db,mode=01777", "octal"),
            ("source=db,colour=red", "unknown field"),
            ("source=db,target", "not KEY=VALUE"),
            ("source=db,target=", "needs a value"),
        ] {
            let error = parse_secret_reference(text).expect_err(text);
            let message = error.to_string();
            assert!(
                message.contains(needle) && message.contains("--secret"),
                "{message}"
            );
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
