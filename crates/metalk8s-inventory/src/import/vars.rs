//! Ansible `group_vars/` and `host_vars/` directories: for a group or host `name`, the file
//! `name`, `name.yml`, `name.yaml` or `name.json`, and every such file in a `name/`
//! directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use super::ImportError;

pub(crate) type Vars = Map<String, Json>;

/// Variables read from one file, named for messages (`group_vars/kube-node.yml`).
#[derive(Debug)]
pub(crate) struct VarsFile {
    pub origin: String,
    pub vars: Vars,
}

const EXTENSIONS: [&str; 3] = ["yml", "yaml", "json"];

/// The variable files for `name` under `dir`, in the order Ansible reads them.
pub(crate) fn files_for(
    dir: &Path,
    name: &str,
    notes: &mut Vec<String>,
) -> Result<Vec<VarsFile>, ImportError> {
    let mut paths: Vec<PathBuf> = std::iter::once(dir.join(name))
        .chain(
            EXTENSIONS
                .iter()
                .map(|ext| dir.join(format!("{name}.{ext}"))),
        )
        .filter(|path| path.is_file())
        .collect();
    let folder = dir.join(name);
    if folder.is_dir() {
        let mut inside = list(&folder)?
            .into_iter()
            .filter(|path| path.is_file() && is_vars_file(path))
            .collect::<Vec<_>>();
        inside.sort();
        paths.extend(inside);
    }
    let mut files = Vec::new();
    for path in paths {
        let origin = origin(dir, &path);
        match read(&path)? {
            Some(vars) => files.push(VarsFile { origin, vars }),
            None => notes.push(format!(
                "{origin}: not a mapping of variables (encrypted with ansible-vault?): ignored"
            )),
        }
    }
    Ok(files)
}

/// The group or host names `dir` has variables for.
pub(crate) fn names_in(dir: &Path) -> Result<BTreeSet<String>, ImportError> {
    Ok(list(dir)?
        .iter()
        .filter(|path| path.is_dir() || is_vars_file(path))
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let stem = EXTENSIONS
                .iter()
                .find_map(|ext| name.strip_suffix(&format!(".{ext}")))
                .unwrap_or(name);
            Some(stem.to_owned())
        })
        .collect())
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    let read_error = |source| ImportError::ReadVars {
        path: dir.to_owned(),
        source,
    };
    std::fs::read_dir(dir)
        .map_err(read_error)?
        .map(|entry| entry.map(|entry| entry.path()).map_err(read_error))
        .collect()
}

/// Ansible skips hidden files and editor backups; other extensions are not variables.
fn is_vars_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return false;
    };
    if name.starts_with('.') || name.ends_with('~') {
        return false;
    }
    match path.extension().and_then(|ext| ext.to_str()) {
        None => true,
        Some(ext) => EXTENSIONS.contains(&ext),
    }
}

fn origin(dir: &Path, path: &Path) -> String {
    let top = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let inner = path.strip_prefix(dir).unwrap_or(path);
    Path::new(&top).join(inner).display().to_string()
}

/// The variables in one file; `None` when it is not a mapping.
fn read(path: &Path) -> Result<Option<Vars>, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::ReadVars {
        path: path.to_owned(),
        source,
    })?;
    let value: Json = serde_saphyr::from_str(&text).map_err(|source| ImportError::ParseVars {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    Ok(match value {
        Json::Object(vars) => Some(vars),
        Json::Null => Some(Map::new()),
        _ => None,
    })
}
