//! `query`: filter the records and print them as JSON lines for a SIEM (spec §9). It reads
//! and parses but does not verify: run `verify` for that.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use time::OffsetDateTime;

use crate::error::{io, AuditError, Result};
use crate::files;
use crate::record::{self, Record, MAX_LINE};

/// Which records [`query`] prints; every field set must match (`None` matches anything).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Exact `key_id`.
    pub key_id: Option<String>,
    /// Exact `identity` (an ARN).
    pub identity: Option<String>,
    /// `action`, where `*` matches any run of characters (`kms:*`, `*Object`).
    pub action: Option<String>,
    /// Records at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Records strictly before this time.
    pub until: Option<OffsetDateTime>,
}

impl Filter {
    pub fn matches(&self, r: &Record) -> bool {
        if self.key_id.is_some() && self.key_id != r.key_id {
            return false;
        }
        if self.identity.is_some() && self.identity != r.identity {
            return false;
        }
        if let Some(pattern) = &self.action {
            if !wildcard_match(pattern, &r.action) {
                return false;
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(t) = r.timestamp() else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        true
    }
}

/// `*` matches any (possibly empty) run of characters; everything else matches itself.
/// Greedy with backtracking to the last star: linear-ish, no recursion.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Prints every record of the log in `dir` that matches `filter` to `out`, one JSON object
/// per line exactly as stored (with `prev`, `hash` and `mac`), in log order. Returns how
/// many were printed. An incomplete last line is skipped; any other unparseable line is an
/// error ([`AuditError::Malformed`]).
pub fn query(dir: &Path, filter: &Filter, out: &mut dyn Write) -> Result<usize> {
    let mut printed = 0;
    for number in files::list(dir)? {
        let name = files::file_name(number);
        let path = dir.join(&name);
        let file = File::open(&path).map_err(io(format!("open {}", path.display())))?;
        let mut reader = BufReader::new(file);
        let mut buf = Vec::new();
        let mut line_no = 0;
        loop {
            buf.clear();
            let n = reader
                .by_ref()
                .take(MAX_LINE as u64 + 2)
                .read_until(b'\n', &mut buf)
                .map_err(io(format!("read {}", path.display())))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let Some(line) = buf.strip_suffix(b"\n") else {
                if buf.len() <= MAX_LINE {
                    break; // an interrupted write: not a record
                }
                return Err(AuditError::Malformed {
                    file: name,
                    line: line_no,
                    reason: "line too long".into(),
                });
            };
            let r = record::parse_line(line).map_err(|reason| AuditError::Malformed {
                file: name.clone(),
                line: line_no,
                reason,
            })?;
            if filter.matches(&r) {
                out.write_all(&buf).map_err(io("write query output"))?;
                printed += 1;
            }
        }
    }
    out.flush().map_err(io("write query output"))?;
    Ok(printed)
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("kms:*", "kms:Decrypt"));
        assert!(wildcard_match("*Object", "s3:PutObject"));
        assert!(wildcard_match("s3:*Object*", "s3:GetObjectAcl"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("kms:Decrypt", "kms:Decrypt"));
        assert!(!wildcard_match("kms:Decrypt", "kms:DecryptX"));
        assert!(!wildcard_match("kms:*", "s3:GetObject"));
        assert!(!wildcard_match("*a*b", "xxaxxc"));
        assert!(wildcard_match("a*b*c", "aXbYbZc"));
        assert!(!wildcard_match("", "x"));
    }
}
