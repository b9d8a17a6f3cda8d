//! Who is asking, and may they: the request parsers Coffer runs before any protocol does
//! ([`request`]: query strings, `Authorization`, credential scopes), SigV4 verification for
//! services s3s does not verify ([`sigv4`]), the authenticated caller ([`principal`]) and the
//! identity and policy decisions that return an [`iam::Authorized`] proof ([`iam`]).

pub mod iam;
pub mod post_form;
pub mod principal;
pub mod request;
pub mod sigv4;
