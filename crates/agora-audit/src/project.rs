//! Projects on disk: Foundry (`foundry.toml`, remappings, `lib/`) and Hardhat/npm
//! (`node_modules`) layouts, and plain folders. A project's own files are audited with every
//! file their imports reach, so that each contract is analysed with what it inherits; findings
//! are reported in the project's own files, and in its dependencies on request.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::{Error, ParseError, Report, audit_prepared, prepare};

/// How a project is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `foundry.toml`: sources in its `src` (default `src/`), libraries in its `libs` (default
    /// `lib/`), remappings from it, `remappings.txt` and each library's own.
    Foundry,
    /// `hardhat.config.*` or `package.json`: sources in `contracts/`, packages in `node_modules/`.
    Hardhat,
    /// Any other folder: every `.sol` file outside `lib/` and `node_modules/`.
    Plain,
}

/// A project: where its own sources are and how its imports resolve.
#[derive(Clone, Debug)]
pub struct Project {
    /// The project's folder; files are named by their path from it.
    pub root: PathBuf,
    pub layout: Layout,
    /// Folders (from the root) whose `.sol` files are the project's own.
    pub sources: Vec<PathBuf>,
    /// Library folders (from the root) that imports are looked up in.
    pub libs: Vec<PathBuf>,
    /// Import prefixes and what they stand for (a path from the root), longest prefix first.
    pub remappings: Vec<(String, String)>,
}

/// Why a project cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid foundry.toml: {why}")]
    Config { path: PathBuf, why: String },
}

/// An import that names no file the project has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unresolved {
    /// The importing file.
    pub file: String,
    /// The path as written.
    pub import: String,
}

/// What auditing a project gives.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProjectReport {
    #[serde(flatten)]
    pub report: Report,
    /// Imports that name no file (their contracts are missing from the analysis).
    pub unresolved: Vec<Unresolved>,
    /// Dependencies that could not be read or parsed (their contracts are missing too).
    pub dependency_errors: Vec<ParseError>,
    /// Files read: the project's own, then the dependencies their imports reach.
    pub own_files: usize,
    pub dependency_files: usize,
    /// Contracts, libraries and interfaces in all of them.
    pub contracts: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ProjectError + '_ {
    move |source| ProjectError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Project {
    /// Reads a project's layout from its folder.
    pub fn open(root: &Path) -> Result<Project, ProjectError> {
        let root = root.to_path_buf();
        let toml = root.join("foundry.toml");
        if toml.is_file() {
            return Self::foundry(root, &toml);
        }
        let hardhat = ["js", "ts", "cjs", "mjs"]
            .iter()
            .any(|x| root.join(format!("hardhat.config.{x}")).is_file());
        if hardhat || root.join("package.json").is_file() {
            let sources = match root.join("contracts").is_dir() {
                true => vec![PathBuf::from("contracts")],
                false => vec![PathBuf::new()],
            };
            return Ok(Project {
                root,
                layout: Layout::Hardhat,
                sources,
                libs: vec![PathBuf::from("node_modules")],
                remappings: Vec::new(),
            });
        }
        let libs = ["lib", "node_modules"]
            .iter()
            .map(PathBuf::from)
            .filter(|l| root.join(l).is_dir())
            .collect();
        let mut project = Project {
            root,
            layout: Layout::Plain,
            sources: vec![PathBuf::new()],
            libs,
            remappings: Vec::new(),
        };
        project.add_library_remappings()?;
        Ok(project)
    }

    fn foundry(root: PathBuf, toml: &Path) -> Result<Project, ProjectError> {
        let text = std::fs::read_to_string(toml).map_err(io(toml))?;
        let config = |why: String| ProjectError::Config {
            path: toml.to_path_buf(),
            why,
        };
        let doc: toml_edit::DocumentMut = text.parse().map_err(|e| config(format!("{e}")))?;
        let profile = doc
            .get("profile")
            .and_then(|p| p.get("default"))
            .and_then(|d| d.as_table_like());
        let string = |key: &str, default: &str| -> Result<String, ProjectError> {
            match profile.and_then(|p| p.get(key)) {
                None => Ok(default.to_string()),
                Some(v) => v
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| config(format!("`{key}` is not a string"))),
            }
        };
        let strings = |key: &str| -> Result<Option<Vec<String>>, ProjectError> {
            let Some(v) = profile.and_then(|p| p.get(key)) else {
                return Ok(None);
            };
            let array = v
                .as_array()
                .ok_or_else(|| config(format!("`{key}` is not an array")))?;
            array
                .iter()
                .map(|x| {
                    x.as_str().map(str::to_string).ok_or_else(|| {
                        config(format!("`{key}` holds a value that is not a string"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
        let src = string("src", "src")?;
        let libs = strings("libs")?.unwrap_or_else(|| vec!["lib".to_string()]);
        let mut remappings: Vec<(String, String)> = strings("remappings")?
            .unwrap_or_default()
            .iter()
            .filter_map(|r| parse_remapping(r))
            .collect();
        let txt = root.join("remappings.txt");
        if txt.is_file() {
            let text = std::fs::read_to_string(&txt).map_err(io(&txt))?;
            remappings.extend(text.lines().filter_map(parse_remapping));
        }
        let mut project = Project {
            root,
            layout: Layout::Foundry,
            sources: vec![PathBuf::from(src)],
            libs: libs.into_iter().map(PathBuf::from).collect(),
            remappings,
        };
        project.add_library_remappings()?;
        Ok(project)
    }

    /// After the project's own remappings: each library's `remappings.txt` (targets inside the
    /// library), then `NAME/` for each library folder `NAME` (its `src/` or `contracts/` when it
    /// has one, as Foundry guesses them). The longest prefix wins; among equals, the first.
    fn add_library_remappings(&mut self) -> Result<(), ProjectError> {
        let mut found = Vec::new();
        // npm packages are imported by their names already.
        for lib in self.libs.iter().filter(|l| !l.ends_with("node_modules")) {
            let dir = self.root.join(lib);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for name in names {
                let base = lib.join(&name);
                let txt = self.root.join(&base).join("remappings.txt");
                if txt.is_file() {
                    let text = std::fs::read_to_string(&txt).map_err(io(&txt))?;
                    for (prefix, target) in text.lines().filter_map(parse_remapping) {
                        found.push((prefix, slashed(&base.join(target))));
                    }
                }
                let inner = ["src", "contracts"]
                    .iter()
                    .map(|d| base.join(d))
                    .find(|d| self.root.join(d).is_dir())
                    .unwrap_or(base);
                found.push((format!("{name}/"), slashed(&inner)));
            }
        }
        self.remappings.extend(found);
        // Stable: among equal prefixes the first listed (the project's own) stays first.
        self.remappings
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(())
    }

    /// The project's own `.sol` files, by name, sorted (folders behind links are not entered).
    pub fn own_files(&self) -> Result<Vec<String>, ProjectError> {
        let skip: Vec<PathBuf> = self
            .libs
            .iter()
            .cloned()
            .chain(["node_modules", "out", "cache", "artifacts"].map(PathBuf::from))
            .map(|l| self.root.join(l))
            .collect();
        let mut out = Vec::new();
        for src in &self.sources {
            let mut stack = vec![self.root.join(src)];
            while let Some(dir) = stack.pop() {
                let entries = std::fs::read_dir(&dir).map_err(io(&dir))?;
                for e in entries {
                    let entry = e.map_err(io(&dir))?;
                    // Not followed through links: a link to a folder above would never end.
                    let kind = entry.file_type().map_err(io(&dir))?;
                    let path = entry.path();
                    if kind.is_dir() {
                        let hidden = path
                            .file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                        if !hidden && !skip.contains(&path) {
                            stack.push(path);
                        }
                    } else if path.extension().is_some_and(|x| x == "sol") && path.is_file() {
                        out.push(self.name_of(&path));
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// A file's name: its path from the root, with `/`.
    fn name_of(&self, path: &Path) -> String {
        slashed(path.strip_prefix(&self.root).unwrap_or(path))
    }

    /// The file an import names, by name: relative to the importing file (`./`, `../`), through
    /// a remapping, from the root, or inside a library folder, in that order; `None` when no
    /// such file exists.
    ///
    /// The name returned is the file's real path from the root, links resolved, so that a file
    /// reached by two paths is read once; a file outside the root is never read.
    pub fn resolve(&self, from: &str, import: &str) -> Option<String> {
        let root = self.root.canonicalize().ok()?;
        let real = |name: &str| -> Option<String> {
            let path = self.root.join(name).canonicalize().ok()?;
            let inside = path.strip_prefix(&root).ok()?;
            path.is_file().then(|| slashed(inside))
        };
        if import.starts_with("./") || import.starts_with("../") {
            return real(&joined(from, import));
        }
        for (prefix, target) in &self.remappings {
            if let Some(rest) = import.strip_prefix(prefix.as_str()) {
                let name = normalized(&format!("{}/{rest}", target.trim_end_matches('/')));
                if let Some(found) = real(&name) {
                    return Some(found);
                }
            }
        }
        real(&normalized(import)).or_else(|| {
            self.libs
                .iter()
                .find_map(|lib| real(&normalized(&format!("{}/{import}", slashed(lib)))))
        })
    }

    /// Audits the project: its own files and every file their imports reach, each contract with
    /// what it inherits. Findings in dependencies are reported only with `include_deps`.
    pub fn audit(&self, include_deps: bool) -> Result<ProjectReport, ProjectError> {
        let own = self.own_files()?;
        let mut out = ProjectReport {
            own_files: own.len(),
            ..ProjectReport::default()
        };
        // Files in the order they are met: the own ones, then what their imports reach.
        let mut names: Vec<String> = own.clone();
        let mut index: BTreeMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let mut prepared = Vec::new();
        let mut imports = Vec::new();
        // `slot[i]`: file i's place among the prepared ones.
        let mut slot = Vec::new();
        let mut i = 0;
        while i < names.len() {
            let name = names[i].clone();
            let reported = i < own.len() || include_deps;
            let path = self.root.join(&name);
            let cannot = |message: String| Error::Syntax {
                file: name.clone(),
                line: 1,
                message,
            };
            let file = match std::fs::metadata(&path) {
                Ok(m) if m.len() > MAX_FILE_BYTES => Err(cannot(format!(
                    "{} bytes: larger than the {MAX_FILE_BYTES} bytes a source may have",
                    m.len()
                ))),
                _ => match std::fs::read(&path) {
                    Ok(bytes) => prepare(&name, &String::from_utf8_lossy(&bytes), reported),
                    Err(e) => Err(cannot(format!("cannot read it: {e}"))),
                },
            };
            match file {
                Ok(p) => {
                    let mut mine = Vec::new();
                    for import in &p.imports {
                        match self
                            .resolve(&name, import)
                            .filter(|t| index.contains_key(t) || names.len() < MAX_FILES)
                        {
                            Some(target) => {
                                let next = names.len();
                                let j = *index.entry(target.clone()).or_insert(next);
                                if j == next {
                                    names.push(target);
                                }
                                mine.push(j);
                            }
                            None => out.unresolved.push(Unresolved {
                                file: name.clone(),
                                import: import.clone(),
                            }),
                        }
                    }
                    out.contracts += p.contracts;
                    slot.push(Some(prepared.len()));
                    prepared.push(p);
                    imports.push(mine);
                }
                Err(e) => {
                    slot.push(None);
                    match reported {
                        true => out.report.errors.push(e.report()),
                        false => out.dependency_errors.push(e.report()),
                    }
                }
            }
            i += 1;
        }
        out.dependency_files = names.len() - own.len();
        let imports = imports
            .into_iter()
            .map(|mine: Vec<usize>| mine.into_iter().filter_map(|j| slot[j]).collect())
            .collect();
        let (findings, errors) = audit_prepared(prepared, imports);
        out.report.findings = findings;
        out.report.errors.extend(errors.iter().map(Error::report));
        // A dependency that does not parse is not the project's fault: an error only on
        // request, a warning otherwise. An error of no file (the audit could not start) stays.
        let dependency =
            |e: &ParseError| !include_deps && index.get(&e.file).is_some_and(|&i| i >= own.len());
        let (deps, errors): (Vec<ParseError>, Vec<ParseError>) =
            out.report.errors.drain(..).partition(dependency);
        out.report.errors = errors;
        out.dependency_errors.extend(deps);
        Ok(out)
    }
}

/// Largest source file read: far beyond real contracts.
const MAX_FILE_BYTES: u64 = 4 << 20;
/// Most files one project audit reads; imports past it are listed as unresolved.
const MAX_FILES: usize = 50_000;

/// `prefix=target` (a Foundry remapping; a `context:` before the prefix is dropped).
fn parse_remapping(line: &str) -> Option<(String, String)> {
    let line = line.trim();
    let (prefix, target) = line.split_once('=')?;
    let prefix = prefix.rsplit_once(':').map_or(prefix, |(_, p)| p).trim();
    (!prefix.is_empty()).then(|| (prefix.to_string(), target.trim().to_string()))
}

/// A path with `/` between its parts.
fn slashed(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// `import` read from the file named `from`: relative (`./`, `../`) to its folder; any other
/// path as written. Both with `.` and `..` parts folded.
pub fn joined(from: &str, import: &str) -> String {
    if import.starts_with("./") || import.starts_with("../") {
        let dir = from.rsplit_once('/').map_or("", |(d, _)| d);
        normalized(&format!("{dir}/{import}"))
    } else {
        normalized(import)
    }
}

/// Folds `.` and `..` parts (a `..` past the start is kept) and drops empty ones.
fn normalized(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in Path::new(path).components() {
        match part {
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else {
                    parts.push("..");
                }
            }
            Component::Normal(p) => parts.push(p.to_str().unwrap_or_default()),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_join_and_fold_like_paths() {
        assert_eq!(joined("src/a/B.sol", "./C.sol"), "src/a/C.sol");
        assert_eq!(joined("src/a/B.sol", "../lib/C.sol"), "src/lib/C.sol");
        assert_eq!(joined("B.sol", "../C.sol"), "../C.sol");
        assert_eq!(
            joined("src/B.sol", "@oz/contracts/x.sol"),
            "@oz/contracts/x.sol"
        );
        assert_eq!(normalized("a//b/./c/../d.sol"), "a/b/d.sol");
    }

    #[test]
    fn remappings_read_as_foundry_writes_them() {
        assert_eq!(
            parse_remapping("@openzeppelin/=lib/openzeppelin-contracts/"),
            Some((
                "@openzeppelin/".to_string(),
                "lib/openzeppelin-contracts/".to_string()
            ))
        );
        assert_eq!(
            parse_remapping("src:ds-test/=lib/ds-test/src/"),
            Some(("ds-test/".to_string(), "lib/ds-test/src/".to_string()))
        );
        assert_eq!(parse_remapping("no equals sign"), None);
        assert_eq!(parse_remapping("=target"), None);
    }
}
