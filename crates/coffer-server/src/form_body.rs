//! A POST form upload's body, passed through unchanged while its start is recorded for the
//! `${filename}` key variable (see `coffer_iam::post_form`: s3s 0.14 reads the form but
//! keeps the file part's name to itself), and its answer made to name the final key.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use coffer_iam::post_form::{PostForm, FILENAME_VARIABLE, PREFIX_LIMIT};
use http_body::{Body, Frame};
use hyper::{header, StatusCode};

/// A request body whose first [`PREFIX_LIMIT`] bytes go to a [`PostForm`].
pub struct Recorded<B> {
    inner: B,
    form: PostForm,
    seen: usize,
}

impl<B> Recorded<B> {
    pub fn new(inner: B, form: PostForm) -> Self {
        Recorded {
            inner,
            form,
            seen: 0,
        }
    }
}

impl<B> Body for Recorded<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                if this.seen < PREFIX_LIMIT {
                    this.form.record(data);
                }
                this.seen = this.seen.saturating_add(data.len());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// s3s 0.14 writes a form's key as sent into its answer: the `201` PostResponse's `<Key>` and
/// `<Location>`, and the `key` parameter of a `303` redirect. With `${filename}` in that key,
/// the object is stored under the final key (the POST access hook substitutes it), so the
/// answer is made to name it too: XML-escaped as s3s escapes its XML, or form-encoded as s3s
/// builds the redirect. Other answers (`204`, `200`, errors) name no key and pass unchanged.
pub async fn with_final_key(
    resp: hyper::Response<s3s::Body>,
    form: &PostForm,
) -> hyper::Response<s3s::Body> {
    let status = resp.status();
    if status != StatusCode::CREATED && status != StatusCode::SEE_OTHER {
        return resp;
    }
    let Some(name) = form.file_name().await else {
        return resp;
    };
    let (mut parts, body) = resp.into_parts();
    if status == StatusCode::CREATED {
        // The PostResponse s3s built in memory; neither its bucket nor its ETag can hold `$`.
        let Some(xml) = body.bytes() else {
            return hyper::Response::from_parts(parts, body);
        };
        let Ok(text) = std::str::from_utf8(&xml) else {
            return hyper::Response::from_parts(parts, body);
        };
        let named = text.replace(FILENAME_VARIABLE, &quick_xml::escape::escape(name.as_str()));
        parts.headers.remove(header::CONTENT_LENGTH);
        return hyper::Response::from_parts(parts, s3s::Body::from(named));
    }
    let location = parts
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| url::Url::parse(v).ok());
    if let Some(mut url) = location {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "key" {
                    v.replace(FILENAME_VARIABLE, &name)
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        if let Ok(v) = header::HeaderValue::from_str(url.as_str()) {
            parts.headers.insert(header::LOCATION, v);
        }
    }
    hyper::Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(name: &str) -> PostForm {
        let f = PostForm::new("multipart/form-data; boundary=B");
        f.record(
            format!(
                "--B\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nup/${{filename}}\r\n\
                 --B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\nx\r\n--B--\r\n"
            )
            .as_bytes(),
        );
        f
    }

    fn answer(
        status: StatusCode,
        location: Option<&str>,
        body: &str,
    ) -> hyper::Response<s3s::Body> {
        let mut r = hyper::Response::new(s3s::Body::from(body.to_owned()));
        *r.status_mut() = status;
        if let Some(l) = location {
            r.headers_mut().insert(header::LOCATION, l.parse().unwrap());
        }
        r
    }

    #[tokio::test]
    async fn created_body_names_the_final_key_escaped() {
        let xml = "<PostResponse><Location>/b/up/${filename}</Location><Bucket>b</Bucket>\
                   <Key>up/${filename}</Key><ETag>\"e\"</ETag></PostResponse>";
        let r = with_final_key(answer(StatusCode::CREATED, None, xml), &form("a&b <1>.txt")).await;
        let body = r.into_body().bytes().unwrap();
        let body = std::str::from_utf8(&body).unwrap();
        assert!(
            body.contains("<Key>up/a&amp;b &lt;1&gt;.txt</Key>"),
            "{body}"
        );
        assert!(
            body.contains("<Location>/b/up/a&amp;b &lt;1&gt;.txt</Location>"),
            "{body}"
        );
        assert!(!body.contains("${filename}"), "{body}");
    }

    #[tokio::test]
    async fn redirect_names_the_final_key_encoded_and_keeps_other_parameters() {
        let loc = "https://app.example/done?x=%24%7Bfilename%7D&bucket=b&key=up%2F%24%7Bfilename%7D&etag=%22e%22";
        let r = with_final_key(
            answer(StatusCode::SEE_OTHER, Some(loc), ""),
            &form("r 1&2.pdf"),
        )
        .await;
        let got = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
        let url = url::Url::parse(&got).unwrap();
        let q: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let want = [
            ("x", "${filename}"),
            ("bucket", "b"),
            ("key", "up/r 1&2.pdf"),
            ("etag", "\"e\""),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(q, want, "{got}");
    }

    #[tokio::test]
    async fn other_answers_and_unknown_names_pass_unchanged() {
        let r = with_final_key(
            answer(StatusCode::NO_CONTENT, None, "${filename}"),
            &form("n"),
        )
        .await;
        assert_eq!(&r.into_body().bytes().unwrap()[..], b"${filename}");
        let none = PostForm::new("multipart/form-data; boundary=B");
        let r = with_final_key(
            answer(StatusCode::CREATED, None, "<Key>${filename}</Key>"),
            &none,
        )
        .await;
        assert_eq!(
            &r.into_body().bytes().unwrap()[..],
            b"<Key>${filename}</Key>"
        );
    }
}
