//! Configuration: the first step of every run. Raw files in ASE's formats become a
//! validated, typed [`Config`] before anything binds a port.
//!
//! A config directory holds `ase.conf` ([`conf`]) and `api/*.json` ([`api`], one API per
//! file, the file name being the API id). Loading either succeeds with a complete `Config`
//! plus [`Warning`]s (unknown keys, ignored fields), or fails with one [`ConfigError`] that
//! names the file, the key and the reason, so `enforcer run` can exit non-zero before it
//! binds anything.

pub mod api;
pub mod conf;
pub mod error;
pub mod value;

use std::path::{Path, PathBuf};

pub use api::{ApiDef, HostMatch, Protocol, UserEventStatuses};
pub use conf::{Mode, RuntimeShape, Settings, StoreKind, Timezone};
pub use error::{CLIP, ConfigError, Warning, clip};

/// A complete, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory it was loaded from.
    pub dir: PathBuf,
    pub settings: Settings,
    /// API definitions, sorted by id.
    pub apis: Vec<ApiDef>,
    pub warnings: Vec<Warning>,
}

impl Config {
    /// Loads `dir/ase.conf` and every `dir/api/*.json`.
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        let settings = Settings::load(&dir.join("ase.conf"), &mut warnings)?;
        let apis = load_apis(&dir.join("api"), settings.mode, &mut warnings)?;
        Ok(Config {
            dir: dir.to_path_buf(),
            settings,
            apis,
            warnings,
        })
    }
}

/// Reads every `*.json` in `api_dir` (other files, such as ASE's `*.json.example`, are
/// skipped). A missing directory means no APIs.
pub fn load_apis(
    api_dir: &Path,
    mode: Mode,
    warnings: &mut Vec<Warning>,
) -> Result<Vec<ApiDef>, ConfigError> {
    let entries = match std::fs::read_dir(api_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            warnings.push(Warning::new(
                api_dir,
                None,
                "api",
                "directory not found: no APIs are defined".to_string(),
            ));
            return Ok(Vec::new());
        }
        Err(e) => {
            return Err(ConfigError::Read {
                file: api_dir.to_path_buf(),
                source: e,
            });
        }
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ConfigError::Read {
            file: api_dir.to_path_buf(),
            source: e,
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "json") {
            // A link to nowhere is a definition that was meant to be there: say so rather
            // than serve without it.
            if entry.file_type().is_ok_and(|t| t.is_symlink()) && !path.exists() {
                return Err(ConfigError::Read {
                    file: path.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "a symbolic link to a file that does not exist",
                    ),
                });
            }
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut apis: Vec<ApiDef> = Vec::with_capacity(files.len());
    for file in files {
        let def = ApiDef::load(&file, mode, warnings)?;
        if let Some(other) = apis
            .iter()
            .find(|a| a.hostname == def.hostname && a.url == def.url)
        {
            return Err(ConfigError::DuplicateApi {
                first: other.file.clone(),
                second: def.file.clone(),
                hostname: match &def.hostname {
                    HostMatch::Any => "*".to_string(),
                    HostMatch::Exact(h) => h.clone(),
                },
                url: def.url.clone(),
            });
        }
        apis.push(def);
    }
    Ok(apis)
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, never half
/// of one: a temporary file beside it, synced, then renamed over it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        // Make the rename itself durable.
        let _ = d.sync_all();
    }
    Ok(())
}
