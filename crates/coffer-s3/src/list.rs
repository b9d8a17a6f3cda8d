//! Object listings (ListObjects, ListObjectsV2, ListObjectVersions): one page reader, its parameters and `EncodingType=url`.

use super::*;

/// One page of an object listing (ListObjects, ListObjectsV2, ListObjectVersions): the
/// objects and the common prefixes they roll up into, whether more follow, and the marker
/// the next page starts after.
pub(super) struct ListPage {
    pub(super) contents: Vec<(String, ObjectRecord)>,
    pub(super) prefixes: Vec<String>,
    pub(super) truncated: bool,
    pub(super) next: Option<String>,
}

impl ListPage {
    pub(super) fn common_prefixes(prefixes: Vec<String>) -> Vec<CommonPrefix> {
        prefixes
            .into_iter()
            .map(|p| {
                let mut c = CommonPrefix::default();
                c.prefix = Some(p);
                c
            })
            .collect()
    }
}

/// Reads `meta` in batches until `max_keys` entries (objects + common prefixes) after
/// `after` are collected.
pub(super) async fn list_page(
    meta: &dyn MetaStore,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: &str,
    max_keys: usize,
) -> ServerResult<ListPage> {
    let mut contents = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut cursor = after.to_owned();
    let mut last = None;
    let mut truncated = false;
    if max_keys > 0 {
        'outer: loop {
            let batch = meta.list_objects(bucket, prefix, &cursor, 1000).await?;
            let n = batch.len();
            for (key, item) in batch {
                cursor = key.clone();
                let rolled = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                    key[prefix.len()..]
                        .find(d)
                        .map(|i| key[..prefix.len() + i + d.len()].to_owned())
                });
                match rolled {
                    Some(cp) => {
                        if prefixes.last() == Some(&cp) || cp.as_str() <= after {
                            continue;
                        }
                        if contents.len() + prefixes.len() == max_keys {
                            truncated = true;
                            break 'outer;
                        }
                        last = Some(cp.clone());
                        prefixes.push(cp);
                    }
                    None => {
                        if contents.len() + prefixes.len() == max_keys {
                            truncated = true;
                            break 'outer;
                        }
                        last = Some(key.clone());
                        contents.push((key, item));
                    }
                }
            }
            if n < 1000 {
                break;
            }
        }
    }
    Ok(ListPage {
        contents,
        prefixes,
        truncated,
        next: if truncated { last } else { None },
    })
}

pub(super) fn to_object(key: String, rec: &ObjectRecord) -> Object {
    let mut o = Object::default();
    o.key = Some(key);
    o.e_tag = Some(etag(&rec.etag));
    o.last_modified = Some(ts(rec.last_modified));
    o.size = Some(rec.size as i64);
    o.storage_class = Some(ObjectStorageClass::from_static(
        ObjectStorageClass::STANDARD,
    ));
    o
}

/// Listing parameters S3 validates: counts are not negative, encoding is `url`.
pub(super) fn check_list_params(
    counts: &[(&str, Option<i32>)],
    encoding: Option<&EncodingType>,
) -> ServerResult<()> {
    for (name, v) in counts {
        if v.is_some_and(|v| v < 0) {
            return Err(ServerError::invalid_argument(format!(
                "Argument {name} must be an integer between 0 and 2147483647"
            )));
        }
    }
    if let Some(e) = encoding {
        if e.as_str() != EncodingType::URL {
            return Err(ServerError::invalid_argument(
                "Invalid Encoding Method specified in Request",
            ));
        }
    }
    Ok(())
}

/// `EncodingType=url`: keys, prefixes and markers are percent-encoded in the response (the
/// client decodes them), so keys with characters XML 1.0 cannot carry survive the listing.
pub(super) fn url_encode(v: &mut Option<String>) {
    if let Some(s) = v.as_mut() {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        *s = out;
    }
}

pub(super) fn wants_url(e: &Option<EncodingType>) -> bool {
    e.as_ref().is_some_and(|e| e.as_str() == EncodingType::URL)
}

pub(super) fn url_encode_common(prefixes: &mut Option<Vec<CommonPrefix>>) {
    for p in prefixes.iter_mut().flatten() {
        url_encode(&mut p.prefix);
    }
}

pub(super) fn url_encode_v1(out: &mut ListObjectsOutput) {
    if !wants_url(&out.encoding_type) {
        return;
    }
    for o in out.contents.iter_mut().flatten() {
        url_encode(&mut o.key);
    }
    url_encode_common(&mut out.common_prefixes);
    url_encode(&mut out.prefix);
    url_encode(&mut out.delimiter);
    url_encode(&mut out.marker);
    url_encode(&mut out.next_marker);
}

pub(super) fn url_encode_v2(out: &mut ListObjectsV2Output) {
    if !wants_url(&out.encoding_type) {
        return;
    }
    for o in out.contents.iter_mut().flatten() {
        url_encode(&mut o.key);
    }
    url_encode_common(&mut out.common_prefixes);
    url_encode(&mut out.prefix);
    url_encode(&mut out.delimiter);
    url_encode(&mut out.start_after);
}

pub(super) fn url_encode_versions(out: &mut ListObjectVersionsOutput) {
    if !wants_url(&out.encoding_type) {
        return;
    }
    for v in out.versions.iter_mut().flatten() {
        url_encode(&mut v.key);
    }
    for m in out.delete_markers.iter_mut().flatten() {
        url_encode(&mut m.key);
    }
    url_encode_common(&mut out.common_prefixes);
    url_encode(&mut out.prefix);
    url_encode(&mut out.delimiter);
    url_encode(&mut out.key_marker);
    url_encode(&mut out.next_key_marker);
}

impl S3Handlers {
    /// One page of an object listing, in the order every listing checks things: its
    /// parameters, then the bucket, then `after` (the marker, start-after, or decoded
    /// continuation token), then the page is read. Returns (page size, after, page).
    pub(super) async fn list(
        &self,
        bucket: &str,
        max_keys: Option<i32>,
        encoding: Option<&EncodingType>,
        prefix: &str,
        delimiter: Option<&str>,
        after: impl FnOnce() -> ServerResult<String>,
    ) -> ServerResult<(usize, String, ListPage)> {
        check_list_params(&[("max-keys", max_keys)], encoding)?;
        if !self.meta.bucket_exists(bucket).await? {
            return Err(ServerError::NoSuchBucket);
        }
        let limit = max_keys.map(|v| v.clamp(0, 1000) as usize).unwrap_or(1000);
        let after = after()?;
        let page = list_page(&*self.meta, bucket, prefix, delimiter, &after, limit).await?;
        Ok((limit, after, page))
    }
}

pub(super) async fn list_objects(
    h: &S3Handlers,
    req: S3Request<ListObjectsInput>,
) -> S3Result<S3Response<ListObjectsOutput>> {
    let input = req.input;
    let (prefix, limit, marker, page) =
        list_input!(h, input, || Ok(input.marker.clone().unwrap_or_default()));
    let ListPage {
        contents,
        prefixes,
        truncated,
        next,
    } = page;
    let mut out = ListObjectsOutput::default();
    list_output!(out, input, prefix, limit);
    out.marker = Some(marker);
    out.is_truncated = Some(truncated);
    // NextMarker is returned only with a delimiter (S3 ListObjects docs); clients use
    // the last key otherwise.
    out.next_marker = if out.delimiter.is_some() { next } else { None };
    out.contents = Some(
        contents
            .into_iter()
            .map(|(k, r)| to_object(k, &r))
            .collect(),
    );
    out.common_prefixes = Some(ListPage::common_prefixes(prefixes));
    url_encode_v1(&mut out);
    Ok(S3Response::new(out))
}

pub(super) async fn list_objects_v2(
    h: &S3Handlers,
    req: S3Request<ListObjectsV2Input>,
) -> S3Result<S3Response<ListObjectsV2Output>> {
    let input = req.input;
    let after = || match &input.continuation_token {
        Some(t) => B64
            .decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ServerError::invalid_argument("The continuation token provided is incorrect")
            }),
        None => Ok(input.start_after.clone().unwrap_or_default()),
    };
    let (prefix, limit, _, page) = list_input!(h, input, after);
    let ListPage {
        contents,
        prefixes,
        truncated,
        next,
    } = page;
    let fetch_owner = input.fetch_owner.unwrap_or(false);
    let bucket_owner = h.bucket_owner(&input.bucket);
    let mut out = ListObjectsV2Output::default();
    list_output!(out, input, prefix, limit);
    out.key_count = Some((contents.len() + prefixes.len()) as i32);
    out.start_after = input.start_after;
    out.continuation_token = input.continuation_token;
    out.is_truncated = Some(truncated);
    out.next_continuation_token = next.map(|n| B64.encode(n));
    out.contents = Some(
        contents
            .into_iter()
            .map(|(k, r)| {
                let mut o = to_object(k, &r);
                if fetch_owner {
                    o.owner = Some(bucket_owner.clone());
                }
                o
            })
            .collect(),
    );
    out.common_prefixes = Some(ListPage::common_prefixes(prefixes));
    url_encode_v2(&mut out);
    Ok(S3Response::new(out))
}

/// One page of a version listing: entries (versions and delete markers, by key then
/// newest first) and common prefixes, whether more follow, and the (key, version id) the
/// next page starts after.
pub(super) struct VersionPage {
    pub(super) entries: Vec<coffer_meta::VersionEntry>,
    pub(super) prefixes: Vec<String>,
    pub(super) truncated: bool,
    pub(super) next: Option<(String, Option<String>)>,
}

/// Reads `meta`'s versions in batches until `max_keys` entries (versions, markers and common
/// prefixes) after (`key_marker`, `version_marker`) are collected; a common prefix at or
/// before the key marker was on an earlier page.
pub(super) async fn version_page(
    meta: &dyn MetaStore,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    key_marker: &str,
    version_marker: &str,
    max_keys: usize,
) -> ServerResult<VersionPage> {
    let mut page = VersionPage {
        entries: Vec::new(),
        prefixes: Vec::new(),
        truncated: false,
        next: None,
    };
    if max_keys == 0 {
        return Ok(page);
    }
    let (mut key, mut version) = (key_marker.to_owned(), version_marker.to_owned());
    'outer: loop {
        let batch = meta
            .list_versions(bucket, prefix, &key, &version, 1000)
            .await?;
        let n = batch.len();
        for e in batch {
            key = e.key.clone();
            version = e.record.s3_version_id().to_owned();
            let rolled = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                e.key[prefix.len()..]
                    .find(d)
                    .map(|i| e.key[..prefix.len() + i + d.len()].to_owned())
            });
            if let Some(cp) = &rolled {
                if page.prefixes.last() == Some(cp) || cp.as_str() <= key_marker {
                    continue;
                }
            }
            if page.entries.len() + page.prefixes.len() == max_keys {
                page.truncated = true;
                break 'outer;
            }
            match rolled {
                Some(cp) => {
                    page.next = Some((cp.clone(), None));
                    page.prefixes.push(cp);
                }
                None => {
                    page.next = Some((e.key.clone(), Some(version.clone())));
                    page.entries.push(e);
                }
            }
        }
        if n < 1000 {
            break;
        }
    }
    if !page.truncated {
        page.next = None;
    }
    Ok(page)
}

pub(super) async fn list_object_versions(
    h: &S3Handlers,
    req: S3Request<ListObjectVersionsInput>,
) -> S3Result<S3Response<ListObjectVersionsOutput>> {
    let input = req.input;
    s3(check_list_params(
        &[("max-keys", input.max_keys)],
        input.encoding_type.as_ref(),
    ))?;
    let key_marker = input.key_marker.clone().unwrap_or_default();
    let version_marker = input.version_id_marker.clone().unwrap_or_default();
    if key_marker.is_empty() && !version_marker.is_empty() {
        return Err(ServerError::invalid_argument(
            "A version-id marker cannot be specified without a key marker.",
        )
        .into());
    }
    if !s3(h.meta.bucket_exists(&input.bucket).await)? {
        return Err(ServerError::NoSuchBucket.into());
    }
    let prefix = input.prefix.clone().unwrap_or_default();
    let limit = input
        .max_keys
        .map(|v| v.clamp(0, 1000) as usize)
        .unwrap_or(1000);
    let page = s3(version_page(
        &*h.meta,
        &input.bucket,
        &prefix,
        input.delimiter.as_deref(),
        &key_marker,
        &version_marker,
        limit,
    )
    .await)?;
    let bucket_owner = h.bucket_owner(&input.bucket);
    let mut out = ListObjectVersionsOutput::default();
    list_output!(out, input, prefix, limit);
    out.key_marker = Some(key_marker);
    out.version_id_marker = Some(version_marker);
    out.is_truncated = Some(page.truncated);
    if let Some((k, v)) = page.next {
        out.next_key_marker = Some(k);
        out.next_version_id_marker = v;
    }
    let mut versions = Vec::new();
    let mut markers = Vec::new();
    for e in page.entries {
        let r = e.record;
        if r.delete_marker {
            let mut m = DeleteMarkerEntry::default();
            m.key = Some(e.key);
            m.version_id = Some(r.s3_version_id().to_owned());
            m.is_latest = Some(e.is_latest);
            m.last_modified = Some(ts(r.last_modified));
            m.owner = Some(bucket_owner.clone());
            markers.push(m);
        } else {
            let mut v = ObjectVersion::default();
            v.key = Some(e.key);
            v.version_id = Some(r.s3_version_id().to_owned());
            v.is_latest = Some(e.is_latest);
            v.e_tag = Some(etag(&r.etag));
            v.last_modified = Some(ts(r.last_modified));
            v.size = Some(r.size as i64);
            v.owner = Some(bucket_owner.clone());
            v.storage_class = Some(ObjectVersionStorageClass::from_static(
                ObjectVersionStorageClass::STANDARD,
            ));
            versions.push(v);
        }
    }
    out.versions = Some(versions);
    out.delete_markers = Some(markers);
    out.common_prefixes = Some(ListPage::common_prefixes(page.prefixes));
    url_encode_versions(&mut out);
    Ok(S3Response::new(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lists `keys` (stored in an in-memory metadata store) the way the S3 handlers do.
    async fn page(
        keys: &[&str],
        prefix: &str,
        delimiter: Option<&str>,
        after: &str,
        max: usize,
    ) -> (Vec<String>, Vec<String>, bool, Option<String>) {
        let meta = coffer_meta::MemoryStore::new();
        meta.create_bucket("b", 0, "root").await.unwrap();
        for k in keys {
            let rec = coffer_meta::conformance::sample_object(k);
            meta.put_object("b", k, &rec, &Precondition::NONE)
                .await
                .unwrap();
        }
        let page = list_page(&meta, "b", prefix, delimiter, after, max)
            .await
            .unwrap();
        (
            page.contents.into_iter().map(|(k, _)| k).collect(),
            page.prefixes,
            page.truncated,
            page.next,
        )
    }

    #[tokio::test]
    async fn delimiter_rolls_up_common_prefixes() {
        let keys = ["a/1", "a/2", "b", "c/x/y", "c/z", "d"];
        let (c, p, t, _) = page(&keys, "", Some("/"), "", 1000).await;
        assert_eq!(c, ["b", "d"]);
        assert_eq!(p, ["a/", "c/"]);
        assert!(!t);
        let (c, p, _, _) = page(&keys, "c/", Some("/"), "", 1000).await;
        assert_eq!(c, ["c/z"]);
        assert_eq!(p, ["c/x/"]);
    }

    #[tokio::test]
    async fn pagination_resumes_after_a_common_prefix_without_repeating_it() {
        let keys = ["a/1", "a/2", "a/3", "b", "c/1"];
        let (c, p, t, next) = page(&keys, "", Some("/"), "", 1).await;
        assert!(c.is_empty());
        assert_eq!(p, ["a/"]);
        assert!(t);
        let next = next.unwrap();
        assert_eq!(next, "a/");
        let (c, p, t, next) = page(&keys, "", Some("/"), &next, 1).await;
        assert_eq!(c, ["b"]);
        assert!(p.is_empty());
        assert!(t);
        let (c, p, t, next) = page(&keys, "", Some("/"), &next.unwrap(), 1).await;
        assert!(c.is_empty());
        assert_eq!(p, ["c/"]);
        // The last entry fills the page exactly: S3 reports no truncation when nothing follows.
        assert!(!t, "nothing follows c/");
        assert!(next.is_none());
    }

    #[tokio::test]
    async fn pagination_without_delimiter_visits_every_key_once() {
        let keys: Vec<String> = (0..2500).map(|i| format!("k{i:05}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let (c, p, t, next) = page(&refs, "", None, &after, 1000).await;
            assert!(p.is_empty());
            seen.extend(c);
            if !t {
                break;
            }
            after = next.unwrap();
        }
        assert_eq!(seen, keys);
    }

    #[test]
    fn url_encoding_keeps_unreserved_and_slash() {
        let mut v = Some("a b+c/ü%".to_owned());
        url_encode(&mut v);
        assert_eq!(v.as_deref(), Some("a%20b%2Bc/%C3%BC%25"));
    }
}
