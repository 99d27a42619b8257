//! Reading TOML config files and `--set key=value` overrides into a raw JSON object.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

/// Reads a TOML file into a JSON object.
pub(crate) fn read_toml(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing TOML config {}", path.display()))?;
    match serde_json::to_value(table)? {
        Value::Object(m) => Ok(m),
        other => bail!(
            "config {}: expected a table at the top level, found {other}",
            path.display()
        ),
    }
}

/// Applies one `key=value` override; `value` is parsed as a TOML value, or taken as a string.
///
/// Dotted keys (`grf.alpha=2`) address nested tables.
pub(crate) fn apply_set(map: &mut Map<String, Value>, assignment: &str) -> Result<()> {
    let Some((key, raw)) = assignment.split_once('=') else {
        bail!("--set {assignment:?}: expected key=value");
    };
    let key = key.trim();
    if key.is_empty() {
        bail!("--set {assignment:?}: empty key");
    }
    let value = parse_value(raw.trim());
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = map;
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            cur.insert((*part).to_string(), value);
            break;
        }
        let entry = cur
            .entry((*part).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        cur = match entry {
            Value::Object(m) => m,
            _ => bail!("--set {key}: `{part}` is not a table"),
        };
    }
    Ok(())
}

fn parse_value(raw: &str) -> Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t
            .remove("v")
            .and_then(|v| serde_json::to_value(v).ok())
            .unwrap_or_else(|| Value::String(raw.to_string())),
        Err(_) => Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_set_parses_numbers_strings_and_nested_keys() {
        let mut m = Map::new();
        apply_set(&mut m, "nu=1e-3").unwrap();
        apply_set(&mut m, "recipe=pdebench").unwrap();
        apply_set(&mut m, "grf.alpha=2").unwrap();
        assert_eq!(m["nu"], serde_json::json!(1e-3));
        assert_eq!(m["recipe"], serde_json::json!("pdebench"));
        assert_eq!(m["grf"]["alpha"], serde_json::json!(2));
        assert!(apply_set(&mut m, "novalue").is_err());
    }
}
