//! The table and the JSON file.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub raw: Option<f64>,
    pub ratio: Option<f64>,
    /// What else was measured alongside (not in the JSON contract's five fields).
    #[serde(skip)]
    pub note: String,
}

impl Row {
    pub fn new(
        name: &str,
        value: f64,
        unit: &str,
        raw: Option<f64>,
        note: impl Into<String>,
    ) -> Self {
        let ratio = raw.filter(|r| *r > 0.0).map(|r| value / r);
        Self {
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            raw,
            ratio,
            note: note.into(),
        }
    }
}

fn number(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<32} {:>12} {:<10} {:>12} {:>7}  {}\n",
        "name", "value", "unit", "raw", "ratio", "notes"
    );
    for row in rows {
        out.push_str(&format!(
            "{:<32} {:>12} {:<10} {:>12} {:>7}  {}\n",
            row.name,
            number(row.value),
            row.unit,
            row.raw.map(number).unwrap_or_else(|| "-".into()),
            row.ratio
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "-".into()),
            row.note
        ));
    }
    out
}

pub fn write_json(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(rows)?)?;
    Ok(())
}
