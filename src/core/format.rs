//! Format versions of everything Flotilla keeps on disk (SPEC §12): Raft entries, store
//! snapshots, the Raft database's layout and the node files.
//!
//! A binary format starts with a three-byte header: [`BINARY_MAGIC`] (two bytes) and the
//! version. The first release wrote no header; its data is version 1 and still read. The
//! header cannot be mistaken for such data: legacy Raft entries and snapshots are bincode
//! bodies whose first byte is an enum variant index or an `Option` tag, both below 251, never
//! 0xFF. Text files (TOML) carry a `format_version` key; a file without one is version 1.
//!
//! A version newer than this build knows is refused with an error that names the file or
//! record and both versions, never skipped: data a later release wrote may mean something
//! this one would get wrong.

/// The first two bytes of every versioned binary record.
pub const BINARY_MAGIC: [u8; 2] = [0xFF, b'F'];

/// Bytes of the binary header (magic, then the version byte).
pub const HEADER_BYTES: usize = 3;

/// The version of data written before formats were versioned (the first release).
pub const LEGACY_VERSION: u8 = 1;

/// One persistent format and the newest version of it this build reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// What the data is, for errors (`"store snapshot"`, `"node.toml"` ...).
    pub what: &'static str,
    /// The version this build writes; it reads this one and every older one.
    pub current: u8,
}

/// A Raft log entry holding a store command.
pub const RAFT_ENTRY: Format = Format {
    what: "Raft log entry",
    current: 5,
};

/// A snapshot of the replicated store.
pub const STORE_SNAPSHOT: Format = Format {
    what: "store snapshot",
    current: 5,
};

/// The table layout of a manager's `raft.redb`.
pub const RAFT_DATABASE: Format = Format {
    what: "Raft database",
    current: 2,
};

/// A node's TOML files (`node.toml`, `credentials.toml`, `client.toml`).
pub const NODE_FILE: Format = Format {
    what: "node file",
    current: 2,
};

/// A process-runtime task record (`processes/<task>.json`).
pub const PROCESS_RECORD: Format = Format {
    what: "process record",
    current: 2,
};

/// Data this build cannot read because of its format version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} has format version {found}, but this build reads versions up to {supported}: \
     it was written by a newer Flotilla; run that release (or newer) on this data"
)]
pub struct FormatError {
    /// What the data is.
    pub what: &'static str,
    /// The version found.
    pub found: u8,
    /// The newest version this build reads.
    pub supported: u8,
}

impl Format {
    /// Accepts `found` if this build reads it (it is not newer than [`Format::current`], and
    /// not zero, which no release ever wrote).
    pub fn check(self, found: u8) -> Result<u8, FormatError> {
        if found == 0 || found > self.current {
            return Err(FormatError {
                what: self.what,
                found,
                supported: self.current,
            });
        }
        Ok(found)
    }

    /// The header for data written now.
    pub fn header(self) -> [u8; HEADER_BYTES] {
        [BINARY_MAGIC[0], BINARY_MAGIC[1], self.current]
    }

    /// Splits versioned bytes into their version and body: data without a header is
    /// [`LEGACY_VERSION`] and all body. A header with a version this build does not read is
    /// an error.
    pub fn split(self, bytes: &[u8]) -> Result<(u8, &[u8]), FormatError> {
        match bytes {
            [first, second, version, body @ ..] if [*first, *second] == BINARY_MAGIC => {
                Ok((self.check(*version)?, body))
            }
            // A magic byte followed by too little to hold a version: not legacy data either.
            [first, ..] if *first == BINARY_MAGIC[0] && bytes.len() < HEADER_BYTES => {
                Err(FormatError {
                    what: self.what,
                    found: 0,
                    supported: self.current,
                })
            }
            _ => Ok((LEGACY_VERSION, bytes)),
        }
    }
}

/// The key that holds a TOML file's format version.
pub const TOML_VERSION_KEY: &str = "format_version";

/// `value` as TOML, with `format`'s current version under [`TOML_VERSION_KEY`].
pub fn to_toml<T: serde::Serialize>(format: Format, value: &T) -> Result<String, String> {
    let mut table = toml::Table::try_from(value).map_err(|e| e.to_string())?;
    table.insert(
        TOML_VERSION_KEY.to_string(),
        toml::Value::Integer(i64::from(format.current)),
    );
    toml::to_string(&table).map_err(|e| e.to_string())
}

/// Reads TOML written by [`to_toml`] (or by the first release, without a version); a newer
/// version than this build reads is refused.
pub fn from_toml<T: serde::de::DeserializeOwned>(format: Format, text: &str) -> Result<T, String> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    match table.remove(TOML_VERSION_KEY) {
        None => {}
        Some(toml::Value::Integer(found)) => {
            let found = u8::try_from(found).unwrap_or(u8::MAX);
            format.check(found).map_err(|e| e.to_string())?;
        }
        Some(other) => {
            return Err(format!(
                "{TOML_VERSION_KEY} must be a number, found {}",
                other.type_str()
            ))
        }
    }
    table.try_into().map_err(|e: toml::de::Error| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Settings {
        name: String,
        port: u16,
    }

    #[test]
    fn toml_files_carry_their_version_and_old_ones_read_without_it() {
        let settings = Settings {
            name: "n1".into(),
            port: 4240,
        };
        let text = to_toml(NODE_FILE, &settings).expect("writes");
        assert!(text.contains("format_version = 2"), "{text}");
        assert_eq!(from_toml::<Settings>(NODE_FILE, &text), Ok(settings));
        let legacy = "name = \"n1\"\nport = 4240\n";
        assert!(from_toml::<Settings>(NODE_FILE, legacy).is_ok());
        let newer = format!("format_version = 7\n{legacy}");
        let error = from_toml::<Settings>(NODE_FILE, &newer).expect_err("newer");
        assert!(error.contains("node file has format version 7"), "{error}");
        let wrong = format!("format_version = \"two\"\n{legacy}");
        assert!(from_toml::<Settings>(NODE_FILE, &wrong).is_err());
    }

    #[test]
    fn current_data_round_trips_through_its_header() {
        let mut bytes = STORE_SNAPSHOT.header().to_vec();
        bytes.extend_from_slice(b"body");
        assert_eq!(
            STORE_SNAPSHOT.split(&bytes),
            Ok((STORE_SNAPSHOT.current, &b"body"[..]))
        );
    }

    #[test]
    fn data_without_a_header_is_the_first_release() {
        // A legacy bincode body starts with a variant index or an Option tag.
        assert_eq!(RAFT_ENTRY.split(&[3, 1, 2]), Ok((1, &[3u8, 1, 2][..])));
        assert_eq!(RAFT_ENTRY.split(&[]), Ok((1, &[][..])));
    }

    #[test]
    fn a_newer_version_is_refused_with_both_versions_named() {
        let error = STORE_SNAPSHOT
            .split(&[0xFF, b'F', 9, 0])
            .expect_err("newer than this build");
        assert_eq!(error.found, 9);
        assert_eq!(error.supported, STORE_SNAPSHOT.current);
        let text = error.to_string();
        assert!(
            text.contains("store snapshot has format version 9"),
            "{text}"
        );
        assert!(text.contains("up to 5"), "{text}");
        assert!(
            STORE_SNAPSHOT.check(0).is_err(),
            "no release wrote version 0"
        );
        assert!(STORE_SNAPSHOT.split(&[0xFF]).is_err(), "a cut header");
    }
}
