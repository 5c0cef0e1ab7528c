//! A line-preserving rewrite of pre-0.5 syntax that `solang-parser` does not take (`throw`, `var`)
//! and of deprecated aliases (`suicide`, `sha3`), outside comments and strings. Every rewrite is
//! recorded with its line, so the deprecated-constructs detector still sees the original.

/// An old construct found and rewritten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewrite {
    /// 1-based line.
    pub line: usize,
    /// The original word: `throw`, `var`, `suicide`, `sha3`.
    pub word: &'static str,
}

/// The rewritten source (same lines) and what was rewritten.
pub fn prepass(src: &str) -> (String, Vec<Rewrite>) {
    let bytes = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 64);
    let mut rewrites = Vec::new();
    let mut line = 1usize;
    let mut i = 0usize;
    while i < bytes.len() {
        let c = bytes[i];
        // Comments and strings are copied as they are.
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            let end = src[i..].find('\n').map_or(bytes.len(), |n| i + n);
            out.push_str(&src[i..end]);
            i = end;
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            let end = src[i + 2..]
                .find("*/")
                .map_or(bytes.len(), |n| i + 2 + n + 2);
            line += src[i..end].matches('\n').count();
            out.push_str(&src[i..end]);
            i = end;
            continue;
        }
        if c == b'"' || c == b'\'' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != c && bytes[j] != b'\n' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            let mut end = (j + 1).min(bytes.len());
            while end < bytes.len() && !src.is_char_boundary(end) {
                end += 1;
            }
            out.push_str(&src[i..end]);
            i = end;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let mut j = i;
            while j < bytes.len()
                && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'$')
            {
                j += 1;
            }
            let word = &src[i..j];
            let prev_dot = out.trim_end().ends_with('.');
            let next = src[j..].trim_start();
            let replaced = match word {
                "throw" if !prev_dot && next.starts_with(';') => Some(("throw", "revert()")),
                "suicide" if !prev_dot && next.starts_with('(') => {
                    Some(("suicide", "selfdestruct"))
                }
                "sha3" if !prev_dot && next.starts_with('(') => Some(("sha3", "keccak256")),
                "var"
                    if !prev_dot
                        && next.starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_') =>
                {
                    Some(("var", "uint256"))
                }
                _ => None,
            };
            // Words the parser reserves for other dialects, ordinary identifiers in Solidity.
            if matches!(word, "instance" | "persistent" | "temporary") && !prev_dot {
                out.push_str(word);
                out.push('_');
                i = j;
                continue;
            }
            // Before 0.6 `receive` and `fallback` were ordinary function names.
            if matches!(word, "receive" | "fallback")
                && out.trim_end().ends_with("function")
                && next.starts_with('(')
            {
                out.push_str(word);
                out.push('_');
                i = j;
                continue;
            }
            match replaced {
                Some((original, new)) => {
                    out.push_str(new);
                    rewrites.push(Rewrite {
                        line,
                        word: original,
                    });
                }
                None => out.push_str(word),
            }
            i = j;
            continue;
        }
        if c == b'\n' {
            line += 1;
        }
        // Copy one whole UTF-8 character.
        let len = src[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&src[i..i + len]);
        i += len;
    }
    (out, rewrites)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_syntax_is_rewritten_on_the_same_lines_outside_comments_and_strings() {
        let src = "contract A {\n  function f() {\n    if (x) throw;\n    var y = sha3(1); // throw;\n    suicide(o); string s = \"throw;\";\n  }\n}\n";
        let (out, rw) = prepass(src);
        assert_eq!(out.lines().count(), src.lines().count());
        assert!(out.contains("if (x) revert();"));
        assert!(out.contains("uint256 y = keccak256(1); // throw;"));
        assert!(out.contains("selfdestruct(o); string s = \"throw;\";"));
        let words: Vec<(usize, &str)> = rw.iter().map(|r| (r.line, r.word)).collect();
        assert_eq!(
            words,
            vec![(3, "throw"), (4, "var"), (4, "sha3"), (5, "suicide")]
        );
    }

    #[test]
    fn any_bytes_are_handled_without_panicking() {
        for s in [
            "\"unterminated",
            "/* open",
            "é'\\",
            "\"\\é\"",
            "var",
            "throw",
            "a.throw;",
            "\u{0}\u{ffff}",
        ] {
            let (out, _) = prepass(s);
            assert_eq!(out.lines().count(), s.lines().count());
        }
    }
}
