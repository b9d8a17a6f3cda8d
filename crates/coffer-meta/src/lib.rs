//! Coffer's metadata records and their stored encoding, and the store error type.

mod error;
pub mod record;

pub use error::{MetaError, MetaResult};
pub use record::{
    BucketEncryption, BucketInfo, Checksums, ObjectHeaders, ObjectRecord, PartRecord, Segment,
    SseRecord, UploadRecord, RECORD_VERSION,
};
