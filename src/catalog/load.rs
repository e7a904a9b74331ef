//! Loading and validating the catalogue (spec catalogue-and-search.md §1): the built-in files of
//! the top-level `catalog/` folder, embedded at build time, plus every `*.json` file directly in
//! `PEAQOS_CATALOG_DIR`. Each file is one object `{skills, manifests, services, adapters}`.
//! Every problem is collected and named by file and entry, so `catalog check` can list them all.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use include_dir::{Dir, include_dir};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Catalog;
use super::model::{AdapterSetup, ExecutionMode, Service, Skill, SkillManifest};

static BUILT_IN: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/catalog");

/// Service ids the official CLI reads as `scale order <word>` sub-commands.
const RESERVED_SERVICE_IDS: &[&str] = &["status", "list", "received", "dispute", "execute"];

/// The provider key the 0.12.1 client hands to a separate, stricter decoder.
const FORBIDDEN_PROVIDER: &str = "onem2m";

/// One reason the catalogue cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `built-in/qvac.json` or the path of a file in the catalogue directory.
    pub file: String,
    /// `services[2] (walrus:read)`, or empty for a problem of the whole file.
    pub entry: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entry.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.entry, self.message)
        }
    }
}

/// What a catalogue is made of, for `catalog check` and the start-up log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub files: usize,
    pub skills: usize,
    pub manifests: usize,
    pub services: usize,
    pub adapters: usize,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} files: {} skills, {} manifests, {} services, {} adapters",
            self.files, self.skills, self.manifests, self.services, self.adapters
        )
    }
}

/// Letters, digits and `. _ - :`, 1..255 characters, not starting with `-` (a leading `-`
/// would read as an option to the official CLI).
pub fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len())
        && !key.starts_with('-')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// Provider keys: the runtime-endpoint grammar, already lower-case.
fn valid_provider_key(key: &str) -> bool {
    crate::clients::runtime::provider_key("providerKey", key).is_ok_and(|k| k == key)
}

struct Loader {
    now_ms: i64,
    problems: Vec<Problem>,
    skills: BTreeMap<String, (Skill, String)>,
    manifests: BTreeMap<String, (SkillManifest, String)>,
    services: BTreeMap<String, (Service, String)>,
    adapters: BTreeMap<String, (AdapterSetup, String)>,
    files: usize,
}

fn entry_name(kind: &str, index: usize, value: &Value, id_field: &str) -> String {
    match value.get(id_field).and_then(Value::as_str) {
        Some(id) => format!("{kind}[{index}] ({id})"),
        None => format!("{kind}[{index}]"),
    }
}

impl Loader {
    fn problem(&mut self, file: &str, entry: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: file.to_string(),
            entry: entry.to_string(),
            message: message.into(),
        });
    }

    /// The entries of one array of a file, each decoded on its own so one bad entry names itself.
    fn entries<T: DeserializeOwned>(
        &mut self,
        file: &str,
        object: &serde_json::Map<String, Value>,
        kind: &str,
        id_field: &str,
    ) -> Vec<(T, String)> {
        let Some(value) = object.get(kind) else {
            return Vec::new();
        };
        let Some(items) = value.as_array() else {
            self.problem(file, kind, "must be an array");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let entry = entry_name(kind, index, item, id_field);
            match serde_path_to_error::deserialize::<_, T>(item) {
                Ok(decoded) => out.push((decoded, entry)),
                Err(err) => {
                    let path = err.path().to_string();
                    let message = if path == "." {
                        err.inner().to_string()
                    } else {
                        format!("{path}: {}", err.inner())
                    };
                    self.problem(file, &entry, message)
                }
            }
        }
        out
    }

    fn timestamp(&mut self, file: &str, entry: &str, field: &str, value: Option<&str>) -> i64 {
        match value {
            None => self.now_ms,
            Some(text) => crate::clock::parse_rfc3339_ms(text).unwrap_or_else(|| {
                self.problem(
                    file,
                    entry,
                    format!("{field} must be an RFC 3339 timestamp"),
                );
                self.now_ms
            }),
        }
    }

    fn check_key(&mut self, file: &str, entry: &str, field: &str, key: &str) {
        if !valid_key(key) {
            self.problem(
                file,
                entry,
                format!("{field} {key:?} may only contain letters, digits and . _ - : (1 to 255, not starting with -)"),
            );
        }
    }

    fn check_provider(&mut self, file: &str, entry: &str, key: &str) {
        if key == FORBIDDEN_PROVIDER {
            self.problem(
                file,
                entry,
                "providerKey onem2m is reserved: the official 0.12.1 client decodes it as oneM2M",
            );
        } else if !valid_provider_key(key) {
            self.problem(
                file,
                entry,
                format!("providerKey {key:?} must match ^[a-z0-9][a-z0-9._-]{{0,63}}$"),
            );
        }
    }

    fn file(&mut self, name: &str, bytes: &[u8]) {
        self.files += 1;
        let value: Value = match serde_json::from_slice(bytes) {
            Ok(value) => value,
            Err(err) => return self.problem(name, "", format!("not valid JSON: {err}")),
        };
        let Some(object) = value.as_object() else {
            return self.problem(
                name,
                "",
                "must be one JSON object {skills, manifests, services, adapters}",
            );
        };

        for (mut skill, entry) in self.entries::<Skill>(name, object, "skills", "key") {
            self.check_key(name, &entry, "key", &skill.key);
            self.check_provider(name, &entry, &skill.provider_key);
            skill.updated_at_ms =
                self.timestamp(name, &entry, "updatedAt", skill.updated_at.as_deref());
            if let Some(at) = skill.last_verified_at.clone() {
                self.timestamp(name, &entry, "lastVerifiedAt", Some(&at));
            }
            self.insert_skill(name, entry, skill);
        }
        for (manifest, entry) in self.entries::<SkillManifest>(name, object, "manifests", "key") {
            self.check_key(name, &entry, "key", &manifest.key);
            self.check_provider(name, &entry, &manifest.provider_key);
            if let Some((_, first)) = self.manifests.get(&manifest.key) {
                let message = format!(
                    "duplicate manifest key {:?} (first in {first})",
                    manifest.key
                );
                self.problem(name, &entry, message);
            } else {
                self.manifests
                    .insert(manifest.key.clone(), (manifest, format!("{name}: {entry}")));
            }
        }
        for (mut service, entry) in self.entries::<Service>(name, object, "services", "id") {
            self.check_key(name, &entry, "id", &service.id);
            self.check_key(name, &entry, "skillKey", &service.skill_key);
            self.check_provider(name, &entry, &service.provider_key);
            if RESERVED_SERVICE_IDS.contains(&service.id.as_str()) {
                self.problem(
                    name,
                    &entry,
                    format!(
                        "service id {:?} is reserved (the official CLI reads `scale order {}` as a sub-command)",
                        service.id, service.id
                    ),
                );
            }
            if service.operations.is_empty() {
                self.problem(name, &entry, "a service needs at least one operation");
            }
            if service.operations.iter().any(|op| op.trim().is_empty()) {
                self.problem(name, &entry, "operations must be non-blank strings");
            }
            if service.execution_mode == ExecutionMode::ExternalHandoff && service.handoff.is_none()
            {
                self.problem(name, &entry, "an external-handoff service needs a handoff");
            }
            if service
                .pricing
                .amount
                .is_some_and(|a| !a.is_finite() || a < 0.0)
            {
                self.problem(name, &entry, "pricing.amount must be a number >= 0");
            }
            service.updated_at_ms =
                self.timestamp(name, &entry, "updatedAt", service.updated_at.as_deref());
            if let Some((_, first)) = self.services.get(&service.id) {
                let message = format!("duplicate service id {:?} (first in {first})", service.id);
                self.problem(name, &entry, message);
            } else {
                self.services
                    .insert(service.id.clone(), (service, format!("{name}: {entry}")));
            }
        }
        for (adapter, entry) in
            self.entries::<AdapterSetup>(name, object, "adapters", "providerKey")
        {
            self.check_provider(name, &entry, &adapter.provider_key);
            if let Some((_, first)) = self.adapters.get(&adapter.provider_key) {
                let message = format!(
                    "duplicate adapter providerKey {:?} (first in {first})",
                    adapter.provider_key
                );
                self.problem(name, &entry, message);
            } else {
                self.adapters.insert(
                    adapter.provider_key.clone(),
                    (adapter, format!("{name}: {entry}")),
                );
            }
        }
    }

    fn insert_skill(&mut self, file: &str, entry: String, skill: Skill) {
        if let Some((_, first)) = self.skills.get(&skill.key) {
            let message = format!("duplicate skill key {:?} (first in {first})", skill.key);
            self.problem(file, &entry, message);
        } else {
            self.skills
                .insert(skill.key.clone(), (skill, format!("{file}: {entry}")));
        }
    }

    /// Rules across files: services name known skills; every skill has a manifest and every
    /// manifest a skill.
    fn cross_check(&mut self) {
        let mut problems = Vec::new();
        for (service, at) in self.services.values() {
            if !self.skills.contains_key(&service.skill_key) {
                problems.push((
                    at.clone(),
                    format!("unknown skillKey {:?}", service.skill_key),
                ));
            }
        }
        for (key, (_, at)) in &self.skills {
            if !self.manifests.contains_key(key) {
                problems.push((at.clone(), format!("skill {key:?} has no manifest")));
            }
        }
        for (key, (_, at)) in &self.manifests {
            if !self.skills.contains_key(key) {
                problems.push((at.clone(), format!("manifest {key:?} names no skill")));
            }
        }
        for (at, message) in problems {
            let (file, entry) = at.split_once(": ").unwrap_or((&at, ""));
            self.problem(file, entry, message);
        }
    }
}

/// Loads the built-in catalogue plus the `*.json` files directly in `dir`, validating every
/// rule of §1. Entries without `updatedAt` take `now_ms`.
pub fn load(dir: Option<&Path>, now_ms: i64) -> Result<(Catalog, Counts), Vec<Problem>> {
    let mut loader = Loader {
        now_ms,
        problems: Vec::new(),
        skills: BTreeMap::new(),
        manifests: BTreeMap::new(),
        services: BTreeMap::new(),
        adapters: BTreeMap::new(),
        files: 0,
    };
    let mut built_in: Vec<_> = BUILT_IN
        .files()
        .filter(|f| f.path().extension().is_some_and(|e| e == "json"))
        .collect();
    built_in.sort_by_key(|f| f.path());
    for file in built_in {
        loader.file(
            &format!("built-in catalog/{}", file.path().display()),
            file.contents(),
        );
    }
    if let Some(dir) = dir {
        match std::fs::read_dir(dir) {
            Err(err) => loader.problem(
                &dir.display().to_string(),
                "",
                format!("cannot read the catalogue directory: {err}"),
            ),
            Ok(entries) => {
                let mut paths: Vec<_> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json"))
                    .collect();
                paths.sort();
                for path in paths {
                    let name = path.display().to_string();
                    match std::fs::read(&path) {
                        Ok(bytes) => loader.file(&name, &bytes),
                        Err(err) => loader.problem(&name, "", format!("cannot read: {err}")),
                    }
                }
            }
        }
    }
    loader.cross_check();
    if !loader.problems.is_empty() {
        return Err(loader.problems);
    }
    let counts = Counts {
        files: loader.files,
        skills: loader.skills.len(),
        manifests: loader.manifests.len(),
        services: loader.services.len(),
        adapters: loader.adapters.len(),
    };
    let catalog = Catalog::new(
        loader.skills.into_values().map(|(s, _)| s).collect(),
        loader.manifests.into_values().map(|(m, _)| m).collect(),
        loader.services.into_values().map(|(s, _)| s).collect(),
        loader.adapters.into_values().map(|(a, _)| a).collect(),
    );
    Ok((catalog, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_allow_letters_digits_and_four_marks() {
        for good in ["qvac", "agentic-market:wolfram:query", "a.b_c-d", "X1"] {
            assert!(valid_key(good), "{good}");
        }
        for bad in [
            "",
            "a/b",
            "a?b",
            "a#b",
            "a%b",
            "a b",
            "-x",
            "é",
            &"k".repeat(256),
        ] {
            assert!(!valid_key(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_built_in_catalogue_is_valid() {
        let (catalog, counts) = load(None, 0).unwrap_or_else(|problems| {
            panic!(
                "{}",
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert!(counts.services >= 9, "{counts}");
        assert!(catalog.service("qvac-private-inference").is_some());
    }
}
