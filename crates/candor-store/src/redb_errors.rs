//! redb's errors as [`StoreError`]s, for the redb backend and its index runs.

use super::StoreError;

/// Maps any redb error to a [`StoreError`].
pub(crate) fn map_err(err: impl Into<redb::Error>) -> StoreError {
    let err: redb::Error = err.into();
    match err {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            StoreError::InUse(format!("redb database ({err})"))
        }
        redb::Error::Corrupted(msg) => StoreError::Corrupt(msg),
        redb::Error::Io(e) => StoreError::from_io("redb", &e),
        redb::Error::PreviousIo => StoreError::Io(
            "an earlier write failed (disk full or I/O error) and redb refuses every further \
             write until the store is reopened: free space or fix the disk, then restart \
             the log (nothing acknowledged was lost)"
                .into(),
        ),
        other => StoreError::Backend(format!("redb: {other}")),
    }
}
