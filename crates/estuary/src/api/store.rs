//! The configuration store: every change made through the API goes through here.
//!
//! The file is the source of truth (SIGHUP reloads read it too), so a change reads it fresh,
//! edits it with `toml_edit` (comments, order and formatting of untouched parts survive),
//! validates the result, asks the supervisor to run it, and only then replaces the file
//! atomically. A change that is refused at any step leaves the file byte-identical and the
//! running configuration as it was. One change at a time: the store's mutex is held
//! throughout, so two edits cannot both start from the same text.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, Value};
use tracing::{error, info};

use super::error::{ApiError, ApiResult};
use crate::config;
use crate::gateway::Gateway;

/// Where the configuration text lives.
#[derive(Debug)]
enum Source {
    File(PathBuf),
    /// An embedded configuration: edits are kept in memory only.
    Memory(String),
}

#[derive(Debug)]
pub struct ConfigStore {
    source: Mutex<Source>,
}

/// Which array of tables an edit is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Inputs,
    Outputs,
}

impl Section {
    pub fn key(self) -> &'static str {
        match self {
            Section::Inputs => "inputs",
            Section::Outputs => "outputs",
        }
    }

    fn field_order(self) -> &'static [&'static str] {
        match self {
            Section::Inputs => &[
                "name",
                "kind",
                "source",
                "sdp_file",
                "sdp",
                "sdp_stream",
                "address",
                "format",
                "channels",
                "sample_rate",
                "payload_type",
                "interface",
                "latency",
                "meters",
            ],
            Section::Outputs => &[
                "name",
                "kind",
                "input",
                "mode",
                "address",
                "codec",
                "bitrate",
                "channels",
                "bits",
                "latency",
                "passphrase",
                "key_length",
                "stream_id",
            ],
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Section::Inputs => "input",
            Section::Outputs => "output",
        }
    }
}

impl ConfigStore {
    pub fn file(path: impl Into<PathBuf>) -> Self {
        ConfigStore {
            source: Mutex::new(Source::File(path.into())),
        }
    }

    pub fn memory(text: impl Into<String>) -> Self {
        ConfigStore {
            source: Mutex::new(Source::Memory(text.into())),
        }
    }

    pub fn path(&self) -> Option<PathBuf> {
        match &*lock(&self.source) {
            Source::File(p) => Some(p.clone()),
            Source::Memory(_) => None,
        }
    }

    /// The current text (the file, read now).
    pub fn text(&self) -> ApiResult<String> {
        read_source(&lock(&self.source))
    }

    /// Runs `edit` on the current text and, if the result validates and the daemon runs it,
    /// saves it. Blocking (file I/O and [`Gateway::apply`]): call from `spawn_blocking`.
    /// Returns the supervisor's summary of the change.
    pub fn change(
        &self,
        gateway: &Gateway,
        edit: impl FnOnce(&str) -> ApiResult<String>,
    ) -> ApiResult<String> {
        let mut source = lock(&self.source);
        let current = read_source(&source)?;
        let new_text = edit(&current)?;
        let base = base_dir(&source);
        let config = config::parse(&new_text, &base)?;
        let report = gateway.apply(config)?;
        if let Err(e) = save(&mut source, &new_text) {
            // Put the daemon back the way the file says it is, so file and daemon agree.
            error!(error = %e.detail.message, "cannot save the configuration; reverting");
            if let Ok(old) = config::parse(&current, &base) {
                let _ = gateway.apply(old);
            }
            return Err(e);
        }
        let changes = report.to_string();
        info!(changes = %changes, "configuration changed through the API");
        Ok(changes)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_source(source: &Source) -> ApiResult<String> {
    match source {
        Source::File(path) => fs::read_to_string(path).map_err(|e| {
            ApiError::internal(format!("cannot read {}: {e}", path.display())).field("file")
        }),
        Source::Memory(text) => Ok(text.clone()),
    }
}

fn base_dir(source: &Source) -> PathBuf {
    match source {
        Source::File(path) => path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_owned),
        Source::Memory(_) => PathBuf::from("."),
    }
}

fn save(source: &mut Source, text: &str) -> ApiResult<()> {
    match source {
        Source::File(path) => write_atomic(path, text).map_err(|e| {
            ApiError::internal(format!("cannot write {}: {e}", path.display())).field("file")
        }),
        Source::Memory(current) => {
            text.clone_into(current);
            Ok(())
        }
    }
}

/// Replaces `path` with `text` so that a crash leaves either the old or the new file, never a
/// mix: a temporary file in the same directory, flushed to disk, renamed over the original
/// (through a symlink to its target), with the original's permissions.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let permissions = fs::metadata(&target).ok().map(|m| m.permissions());
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    if let Some(p) = permissions {
        tmp.as_file().set_permissions(p)?;
    }
    tmp.persist(&target).map_err(|e| e.error)?;
    // The rename itself is durable once the directory is.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn parse_doc(text: &str) -> ApiResult<DocumentMut> {
    text.parse::<DocumentMut>().map_err(|e| {
        let line = e
            .span()
            .map(|s| text.get(..s.start).map_or(0, |t| t.matches('\n').count()) + 1);
        let mut err = ApiError::unprocessable(e.message().trim().to_owned()).field("syntax");
        err.detail.line = line;
        err
    })
}

/// The section's array of tables, created if absent; an inline array (`inputs = [{…}]`) is
/// turned into `[[inputs]]` tables so entries can be added and replaced one by one.
fn entries(doc: &mut DocumentMut, section: Section) -> ApiResult<&mut ArrayOfTables> {
    let key = section.key();
    let item = doc
        .as_table_mut()
        .entry(key)
        .or_insert(Item::ArrayOfTables(ArrayOfTables::new()));
    if !item.is_array_of_tables() {
        let taken = std::mem::take(item);
        *item = Item::ArrayOfTables(taken.into_array_of_tables().map_err(|_| {
            ApiError::conflict(format!("`{key}` in the file is not a list of tables")).field(key)
        })?);
    }
    item.as_array_of_tables_mut()
        .ok_or_else(|| ApiError::conflict(format!("`{key}` is not a list of tables")).field(key))
}

fn name_of(table: &Table) -> Option<&str> {
    table.get("name").and_then(Item::as_str)
}

fn position(tables: &ArrayOfTables, name: &str) -> Option<usize> {
    tables.iter().position(|t| name_of(t) == Some(name))
}

/// JSON field values as TOML values; `null` means "not set".
fn fields(section: Section, spec: &serde_json::Value) -> ApiResult<Vec<(String, Value)>> {
    let Some(object) = spec.as_object() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let mut out = Vec::new();
    for (key, value) in object {
        let field = format!("{}.{key}", section.key());
        if let Some(v) = toml_value(value, &field)? {
            out.push((key.clone(), v));
        }
    }
    // The order of docs/config.md, as a person would write the entry (JSON objects have none).
    let order = section.field_order();
    out.sort_by_key(|(k, _)| order.iter().position(|o| o == k).unwrap_or(order.len()));
    Ok(out)
}

fn toml_value(value: &serde_json::Value, field: &str) -> ApiResult<Option<Value>> {
    use serde_json::Value as J;
    Ok(match value {
        J::Null => None,
        J::Bool(b) => Some(Value::from(*b)),
        J::Number(n) => Some(match n.as_i64() {
            Some(i) => Value::from(i),
            None => Value::from(n.as_f64().unwrap_or(0.0)),
        }),
        J::String(s) => Some(Value::from(s.as_str())),
        J::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                let v = toml_value(item, field)?.ok_or_else(|| {
                    ApiError::unprocessable("null inside a list").field(field.to_owned())
                })?;
                array.push(v);
            }
            Some(Value::Array(array))
        }
        J::Object(_) => {
            return Err(ApiError::unprocessable("nested objects are not allowed").field(field));
        }
    })
}

/// Text with a new entry appended to `section`. 409 if the name is taken.
pub fn add_entry(text: &str, section: Section, spec: &serde_json::Value) -> ApiResult<String> {
    let name = spec
        .get("name")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| ApiError::unprocessable("`name` is required").field("name"))?
        .to_owned();
    let fields = fields(section, spec)?;
    let mut doc = parse_doc(text)?;
    let tables = entries(&mut doc, section)?;
    if position(tables, &name).is_some() {
        return Err(
            ApiError::conflict(format!("an {} named {name:?} exists", section.noun()))
                .field("name"),
        );
    }
    let mut table = Table::new();
    // A blank line before the new `[[…]]` header, like hand-written files.
    table.decor_mut().set_prefix("\n");
    for (key, value) in fields {
        table.insert(&key, Item::Value(value));
    }
    tables.push(table);
    Ok(doc.to_string())
}

/// Text with entry `name` of `section` replaced by `spec` (fields absent from `spec` are
/// removed; the ones kept stay where they were, with their comments).
pub fn replace_entry(
    text: &str,
    section: Section,
    name: &str,
    spec: &serde_json::Value,
) -> ApiResult<String> {
    let fields = fields(section, spec)?;
    let mut doc = parse_doc(text)?;
    let tables = entries(&mut doc, section)?;
    let index = position(tables, name).ok_or_else(|| not_found(section, name))?;
    let table = tables
        .get_mut(index)
        .ok_or_else(|| not_found(section, name))?;
    let keep: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    table.retain(|key, _| keep.contains(&key));
    for (key, mut value) in fields {
        if let Some(old) = table.get(&key).and_then(Item::as_value) {
            *value.decor_mut() = old.decor().clone();
        }
        table.insert(&key, Item::Value(value));
    }
    Ok(doc.to_string())
}

/// Text without entry `name` of `section`. Removing an input that outputs use is refused
/// (409) unless `cascade`, which removes those outputs too.
pub fn remove_entry(text: &str, section: Section, name: &str, cascade: bool) -> ApiResult<String> {
    let mut doc = parse_doc(text)?;
    if section == Section::Inputs {
        let users = users_of(&mut doc, name)?;
        if !users.is_empty() && !cascade {
            return Err(ApiError::conflict(format!(
                "input {name:?} feeds output(s) {}; remove or re-route them first, or use \
                 ?cascade=true",
                users.join(", ")
            ))
            .field("input"));
        }
        let outputs = entries(&mut doc, Section::Outputs)?;
        outputs.retain(|t| !users.iter().any(|u| name_of(t) == Some(u)));
    }
    let tables = entries(&mut doc, section)?;
    let index = position(tables, name).ok_or_else(|| not_found(section, name))?;
    tables.remove(index);
    Ok(doc.to_string())
}

/// The outputs fed by input `name`.
fn users_of(doc: &mut DocumentMut, name: &str) -> ApiResult<Vec<String>> {
    let outputs = entries(doc, Section::Outputs)?;
    Ok(outputs
        .iter()
        .filter(|t| t.get("input").and_then(Item::as_str) == Some(name))
        .filter_map(|t| name_of(t).map(str::to_owned))
        .collect())
}

fn not_found(section: Section, name: &str) -> ApiError {
    ApiError::not_found(format!("no {} named {name:?}", section.noun()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# my gateway\n[discovery]\nsap = false # no SAP here\n\n\
        [[inputs]]\nname = \"a\" # first\nkind = \"aes67\"\naddress = \"127.0.0.1:5004\"\n\n\
        [[outputs]]\nname = \"o\"\nkind = \"srt\"\ninput = \"a\"\nmode = \"listener\"\n\
        address = \"127.0.0.1:9000\"\ncodec = \"opus\"\n";

    #[test]
    fn add_keeps_the_rest_byte_for_byte() {
        let spec = serde_json::json!({"name": "b", "kind": "aes67", "address": "127.0.0.1:5006"});
        let out = add_entry(TEXT, Section::Inputs, &spec).expect("add");
        assert!(
            out.contains("\n[[inputs]]\nname = \"b\"\nkind = \"aes67\"\n"),
            "{out}"
        );
        // Removing it again gives back the original, byte for byte.
        let back = remove_entry(&out, Section::Inputs, "b", false).expect("remove");
        assert_eq!(back, TEXT);
        let again = add_entry(&out, Section::Inputs, &spec).expect_err("duplicate");
        assert_eq!(again.status, axum::http::StatusCode::CONFLICT);
    }

    #[test]
    fn replace_keeps_comments_of_kept_fields() {
        let spec = serde_json::json!({"name": "a", "kind": "aes67", "address": "127.0.0.1:6000"});
        let out = replace_entry(TEXT, Section::Inputs, "a", &spec).expect("replace");
        assert!(out.contains("name = \"a\" # first"), "{out}");
        assert!(out.contains("address = \"127.0.0.1:6000\""));
        assert!(out.contains("sap = false # no SAP here"));
    }

    #[test]
    fn remove_refuses_an_input_in_use_unless_cascading() {
        let e = remove_entry(TEXT, Section::Inputs, "a", false).expect_err("in use");
        assert_eq!(e.status, axum::http::StatusCode::CONFLICT);
        let out = remove_entry(TEXT, Section::Inputs, "a", true).expect("cascade");
        assert!(
            !out.contains("[[inputs]]") && !out.contains("[[outputs]]"),
            "{out}"
        );
        assert!(out.contains("# my gateway"));
        let e = remove_entry(TEXT, Section::Outputs, "zz", false).expect_err("missing");
        assert_eq!(e.status, axum::http::StatusCode::NOT_FOUND);
    }
}
