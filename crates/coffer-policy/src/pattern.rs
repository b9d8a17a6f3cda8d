//! IAM wildcards: `*` matches any run of characters (`/` and `:` included), `?` exactly one
//! character. Everything else matches itself.

/// Whether `text` matches `pattern`. Linear backtracking over the last `*` only, so
/// O(len(pattern) × len(text)) in the worst case, never exponential.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Position of the last `*` seen, and the text position it is currently assumed to end at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and retry.
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn wildcards() {
        let cases = [
            ("*", "", true),
            ("*", "anything/at:all", true),
            ("", "", true),
            ("", "a", false),
            ("a", "", false),
            ("?", "", false),
            ("?", "é", true),
            ("??", "é", false),
            ("s3:get*", "s3:getobject", true),
            ("s3:get*", "s3:putobject", false),
            ("arn:aws:s3:::b/*", "arn:aws:s3:::b", false),
            ("arn:aws:s3:::b/*", "arn:aws:s3:::b/", true),
            ("arn:aws:s3:::b/*", "arn:aws:s3:::b/x/y:z", true),
            ("arn:aws:s3:::b*", "arn:aws:s3:::b/x", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbYcZ", false),
            ("a*b*c", "abcbc", true),
            ("*a", "bbba", true),
            ("*a", "bbbab", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a**", "a", true),
            ("Key", "key", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob(p, t), want, "glob({p:?}, {t:?})");
        }
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let pattern = "*a".repeat(200) + "b";
        let text = "a".repeat(5000);
        assert!(!glob(&pattern, &text));
    }
}
