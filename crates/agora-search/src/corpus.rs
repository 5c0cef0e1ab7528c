//! Documents from content on disk: Solidity sources (their NatSpec), folders of Markdown or text.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::doc::{Doc, Kind};

/// Largest file read, in bytes; larger ones are skipped.
pub const MAX_FILE: u64 = 1 << 20;

/// Files under `root` whose names end in one of `exts`, sorted, skipping folders named in `skip`.
fn files(root: &Path, exts: &[&str], skip: &[&str]) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let path = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            let kind = e.file_type()?;
            if kind.is_dir() {
                if !skip.contains(&name.as_str()) && !name.starts_with('.') {
                    stack.push(path);
                }
            } else if kind.is_file()
                && exts.iter().any(|x| name.ends_with(x))
                && e.metadata()?.len() <= MAX_FILE
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// One document per Solidity file under `root` (tests and mocks left out): its title names the
/// file's main contract, its body is the documentation comments (NatSpec tags dropped, `{A-b}`
/// references as words) and the names of its contracts, functions, events and errors. Ids are
/// `article:<source>/<path>`.
pub fn solidity_docs(root: &Path, source: &str) -> Result<Vec<Doc>, Error> {
    let mut out = Vec::new();
    for path in files(root, &[".sol"], &["mocks", "test", "tests", "node_modules"])? {
        let Ok(src) = std::fs::read_to_string(&path) else {
            continue; // not UTF-8: not a source file
        };
        let rel = relative(root, &path);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        // No exact keys: a file's name is a word people search for, not an identifier.
        out.push(Doc::new(
            format!("article:{source}/{rel}"),
            Kind::Article,
            format!("{stem} ({rel})"),
            solidity_text(&src),
        ));
    }
    Ok(out)
}

/// The documentation comments and declared names of a Solidity source, as prose.
pub fn solidity_text(src: &str) -> String {
    let mut comments = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut in_block = false;
    for line in src.lines() {
        let t = line.trim();
        if in_block {
            let (body, end) = match t.find("*/") {
                Some(i) => (&t[..i], true),
                None => (t, false),
            };
            comments.push(clean_comment(body.trim_start_matches('*')));
            in_block = !end;
            continue;
        }
        if let Some(rest) = t.strip_prefix("/**") {
            match rest.find("*/") {
                Some(i) => comments.push(clean_comment(&rest[..i])),
                None => {
                    comments.push(clean_comment(rest));
                    in_block = true;
                }
            }
        } else if let Some(rest) = t.strip_prefix("///") {
            comments.push(clean_comment(rest));
        } else {
            for kw in [
                "contract ",
                "abstract contract ",
                "interface ",
                "library ",
                "function ",
                "event ",
                "error ",
                "modifier ",
            ] {
                if let Some(rest) = t.strip_prefix(kw) {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        names.push(format!("{}{name}", kw.trim_start_matches("abstract ")));
                    }
                }
            }
        }
    }
    let mut text = String::new();
    for c in comments.iter().filter(|c| !c.is_empty()) {
        text.push_str(c);
        text.push(if c.ends_with('.') || c.ends_with(':') {
            '\n'
        } else {
            ' '
        });
    }
    if !names.is_empty() {
        text.push_str("\nDeclares: ");
        text.push_str(&names.join(", "));
        text.push('.');
    }
    text
}

fn clean_comment(s: &str) -> String {
    let mut s = s.trim().to_string();
    for tag in [
        "@dev",
        "@notice",
        "@title",
        "@author",
        "@custom:oz-upgrades-unsafe-allow",
        "@inheritdoc",
        "@return",
    ] {
        s = s.replace(tag, "");
    }
    if let Some(rest) = s.strip_prefix("@param") {
        s = rest.trim().to_string();
    }
    // `{IERC20-allowance}` → `IERC20 allowance`; `xref:…[Title]` → `Title`.
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '{' | '}' | '`' => {}
            '-' if out.chars().last().is_some_and(char::is_alphanumeric) => out.push(' '),
            c => out.push(c),
        }
    }
    out.trim().to_string()
}

/// One document per Markdown or text file under `root`: its first heading (or file name) is the
/// title. Ids are `article:<source>/<path>`.
pub fn text_docs(root: &Path, source: &str) -> Result<Vec<Doc>, Error> {
    let mut out = Vec::new();
    for path in files(root, &[".md", ".markdown", ".txt"], &["node_modules"])? {
        let bytes = std::fs::read(&path)?;
        let text = String::from_utf8_lossy(&bytes).replace('\r', "");
        let rel = relative(root, &path);
        let heading = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches('#').trim().to_string())
            .filter(|h| !h.is_empty());
        let title = heading.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default()
        });
        out.push(Doc::new(
            format!("article:{source}/{rel}"),
            Kind::Article,
            title,
            text,
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solidity_text_keeps_prose_and_names() {
        let src = "/**\n * @dev Implementation of the {IERC20} interface.\n * See {IERC20-allowance}.\n */\ncontract Token is IERC20 {\n    /// @notice Moves `amount` tokens.\n    function transfer(address to) public {}\n    event Moved(uint x);\n}\n";
        let t = solidity_text(src);
        assert!(t.contains("Implementation of the IERC20 interface."), "{t}");
        assert!(t.contains("IERC20 allowance"), "{t}");
        assert!(t.contains("Moves amount tokens."), "{t}");
        assert!(
            t.contains("contract Token")
                && t.contains("function transfer")
                && t.contains("event Moved"),
            "{t}"
        );
        assert!(!t.contains("@dev") && !t.contains('{'), "{t}");
    }
}
