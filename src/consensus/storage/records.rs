//! How storage records are encoded on disk and read back with checks, and the one way a write
//! transaction is opened (durably).

use redb::{Database, Durability, WriteTransaction};

use super::StorageError;

/// Converts every redb error type into [`StorageError::Database`].
pub(super) fn db_error(error: impl Into<redb::Error>) -> StorageError {
    StorageError::Database(error.into())
}

pub(super) fn corrupt(what: &'static str, detail: impl ToString) -> StorageError {
    StorageError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

pub(super) fn decode<M: protobuf::Message>(
    what: &'static str,
    bytes: &[u8],
) -> Result<M, StorageError> {
    M::parse_from_bytes(bytes).map_err(|error| corrupt(what, error))
}

pub(super) fn decode_pair(what: &'static str, bytes: &[u8]) -> Result<(u64, u64), StorageError> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| corrupt(what, format!("expected 16 bytes, found {}", bytes.len())))?;
    let (first, second) = array.split_at(8);
    let first = u64::from_le_bytes(first.try_into().map_err(|_| corrupt(what, "split"))?);
    let second = u64::from_le_bytes(second.try_into().map_err(|_| corrupt(what, "split"))?);
    Ok((first, second))
}

pub(super) fn encode_pair(first: u64, second: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&first.to_le_bytes());
    bytes[8..].copy_from_slice(&second.to_le_bytes());
    bytes
}

pub(super) fn begin_durable_write(database: &Database) -> Result<WriteTransaction, StorageError> {
    let mut transaction = database.begin_write().map_err(db_error)?;
    transaction
        .set_durability(Durability::Immediate)
        .map_err(db_error)?;
    Ok(transaction)
}
