//! The file part's name of a browser form upload (S3 POST object), for the `${filename}`
//! variable of the form's `key` field.
//!
//! AWS replaces `${filename}` in the key with the name the browser gives the file part
//! (`Content-Disposition: form-data; name="file"; filename="…"`). s3s 0.14 parses the form
//! but does not hand that name to the service (its 0.15+ do, but need a newer Rust than this
//! project's toolchain). So the front records the start of a form's body as s3s reads it
//! ([`PostForm::record`]) and the POST access hook reads the file part's name from it with
//! `multer` ([`PostForm::file_name`]) before it authorizes the final key. The form fields come
//! before the file part (S3 ignores fields after it), so the first [`PREFIX_LIMIT`] bytes hold
//! the name; the file's content is never kept.

use std::sync::{Arc, Mutex};

use zeroize::Zeroizing;

/// How much of a form's start is kept: S3 allows 20 KB of form fields before the file part;
/// a file part header beyond this many bytes is not found (the upload is then refused).
pub const PREFIX_LIMIT: usize = 64 * 1024;

/// The variable S3 replaces in a POST form's key.
pub const FILENAME_VARIABLE: &str = "${filename}";

/// The recorded start of one `multipart/form-data` request body (a request extension).
#[derive(Clone)]
pub struct PostForm {
    content_type: String,
    /// Wiped when the request ends: a form may carry an SSE-C key field or the file's start.
    /// Allocated once at its limit so it never moves (a reallocation would leave a copy).
    prefix: Arc<Mutex<Zeroizing<Vec<u8>>>>,
}

impl PostForm {
    /// For a request whose `Content-Type` is `content_type` (with its `boundary`).
    pub fn new(content_type: &str) -> PostForm {
        PostForm {
            content_type: content_type.to_owned(),
            prefix: Arc::new(Mutex::new(Zeroizing::new(Vec::with_capacity(PREFIX_LIMIT)))),
        }
    }

    /// Whether a request with this `Content-Type` is a form upload.
    pub fn is_form(content_type: &str) -> bool {
        content_type
            .trim_start()
            .get(..19)
            .is_some_and(|t| t.eq_ignore_ascii_case("multipart/form-data"))
    }

    /// Keeps the part of `chunk` that still fits in [`PREFIX_LIMIT`].
    pub fn record(&self, chunk: &[u8]) {
        let mut prefix = self.prefix.lock().unwrap_or_else(|e| e.into_inner());
        let room = PREFIX_LIMIT.saturating_sub(prefix.len());
        prefix.extend_from_slice(chunk.get(..room.min(chunk.len())).unwrap_or(chunk));
    }

    /// The name of the form's file part: its `filename`, or `file` when it has none (as s3s
    /// names it). `None` when the recorded start holds no complete file part header.
    pub async fn file_name(&self) -> Option<String> {
        let boundary = multer::parse_boundary(&self.content_type).ok()?;
        let copy = self
            .prefix
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let bytes = bytes::Bytes::from_owner(copy);
        let body = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
        let mut form = multer::Multipart::new(body, boundary);
        while let Ok(Some(field)) = form.next_field().await {
            if field.name().is_some_and(|n| n.eq_ignore_ascii_case("file")) {
                return Some(field.file_name().unwrap_or("file").to_owned());
            }
        }
        None
    }

    /// `key` with `${filename}` replaced by the file part's name (every occurrence, as AWS).
    pub async fn substitute(&self, key: &str) -> Option<String> {
        if !key.contains(FILENAME_VARIABLE) {
            return Some(key.to_owned());
        }
        Some(key.replace(FILENAME_VARIABLE, &self.file_name().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    fn form(file_header: &str) -> Vec<u8> {
        format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nup/${{filename}}\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"policy\"\r\n\r\neyJ9\r\n\
             --XyZ\r\n{file_header}\r\nContent-Type: text/plain\r\n\r\nsecret content\r\n--XyZ--\r\n"
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn file_name_from_the_file_part_recorded_in_any_chunking() {
        let body = form("Content-Disposition: form-data; name=\"file\"; filename=\"report 1.pdf\"");
        for chunk in [1, 7, 64, body.len()] {
            let f = PostForm::new(CT);
            for c in body.chunks(chunk) {
                f.record(c);
            }
            assert_eq!(f.file_name().await.as_deref(), Some("report 1.pdf"));
            assert_eq!(
                f.substitute("up/${filename}/${filename}").await.as_deref(),
                Some("up/report 1.pdf/report 1.pdf")
            );
        }
    }

    #[tokio::test]
    async fn no_filename_is_named_file_and_no_file_part_is_none() {
        let f = PostForm::new(CT);
        f.record(&form("Content-Disposition: form-data; name=\"File\""));
        assert_eq!(f.file_name().await.as_deref(), Some("file"));

        let f = PostForm::new(CT);
        f.record(b"--XyZ\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--XyZ--\r\n");
        assert_eq!(f.file_name().await, None);
        assert_eq!(f.substitute("plain").await.as_deref(), Some("plain"));
        assert_eq!(f.substitute("a/${filename}").await, None);
    }

    #[tokio::test]
    async fn only_the_prefix_is_kept_and_malformed_input_is_none() {
        let f = PostForm::new(CT);
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"pad\"\r\n\r\n".to_vec();
        body.extend(std::iter::repeat_n(b'a', PREFIX_LIMIT));
        body.extend(form(
            "Content-Disposition: form-data; name=\"file\"; filename=\"x\"",
        ));
        f.record(&body);
        assert_eq!(f.prefix.lock().unwrap().len(), PREFIX_LIMIT);
        assert_eq!(f.file_name().await, None);

        for ct in ["multipart/form-data", "text/plain", ""] {
            let f = PostForm::new(ct);
            f.record(&form(
                "Content-Disposition: form-data; name=\"file\"; filename=\"x\"",
            ));
            assert_eq!(f.file_name().await, None, "{ct}");
        }
        let f = PostForm::new(CT);
        f.record(b"\xff\xfe garbage --XyZ\r\n\r\n\r\n");
        assert_eq!(f.file_name().await, None);
    }

    #[test]
    fn form_content_types() {
        assert!(PostForm::is_form(CT));
        assert!(PostForm::is_form("Multipart/Form-Data;boundary=a"));
        assert!(!PostForm::is_form("multipart/mixed; boundary=a"));
        assert!(!PostForm::is_form("multipart"));
    }
}
