//! Writing query results: an aligned text table, CSV, JSON, Arrow IPC (what the CLI fetches
//! and renders itself) or Parquet.

use crate::{Error, Result};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use std::str::FromStr;

/// An output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned text, for a terminal.
    Table,
    /// CSV with a header row.
    Csv,
    /// `{"columns": [{"name", "type"}…], "rows": [{column: value}…]}`.
    Json,
    /// An Arrow IPC stream.
    Arrow,
    /// A Parquet file.
    Parquet,
}

impl Format {
    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Table => "text/plain; charset=utf-8",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "arrow" => Ok(Format::Arrow),
            "parquet" => Ok(Format::Parquet),
            other => Err(format!(
                "unknown format {other:?}: table, csv, json, arrow or parquet"
            )),
        }
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("writing {what}: {e}"))
}

/// Writes `batches` (of `schema`) in `format`.
pub fn write(format: Format, schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    match format {
        Format::Table => {
            let text = arrow::util::pretty::pretty_format_batches(batches)
                .map_err(|e| failed("a table", e))?
                .to_string();
            let mut text = if batches.is_empty() {
                // No batch: still show the columns.
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                names.join(" | ")
            } else {
                text
            };
            text.push('\n');
            // Values come from the chain (names, endpoints, event attributes): no terminal
            // escape sequence in them reaches the reader's terminal.
            let text: String = text
                .chars()
                .map(|c| {
                    if c.is_control() && c != '\n' {
                        '\u{fffd}'
                    } else {
                        c
                    }
                })
                .collect();
            Ok(text.into_bytes())
        }
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                if batches.is_empty() {
                    let names: Vec<&str> =
                        schema.fields().iter().map(|f| f.name().as_str()).collect();
                    return Ok(format!("{}\n", names.join(",")).into_bytes());
                }
                for batch in batches {
                    writer.write(batch).map_err(|e| failed("CSV", e))?;
                }
            }
            Ok(out)
        }
        Format::Json => {
            let mut rows = Vec::new();
            {
                let mut writer = arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, arrow::json::writer::JsonArray>(&mut rows);
                for batch in batches {
                    writer.write(batch).map_err(|e| failed("JSON", e))?;
                }
                writer.finish().map_err(|e| failed("JSON", e))?;
            }
            if rows.is_empty() {
                rows = b"[]".to_vec();
            }
            let columns: Vec<serde_json::Value> = schema
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                .collect();
            let mut out = Vec::with_capacity(rows.len() + 256);
            out.extend_from_slice(b"{\"columns\":");
            out.extend_from_slice(
                serde_json::to_string(&columns)
                    .map_err(|e| failed("JSON", e))?
                    .as_bytes(),
            );
            out.extend_from_slice(b",\"rows\":");
            out.extend_from_slice(&rows);
            out.extend_from_slice(b"}\n");
            Ok(out)
        }
        Format::Arrow => {
            let mut out = Vec::new();
            {
                let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut out, schema)
                    .map_err(|e| failed("Arrow", e))?;
                for batch in batches {
                    writer.write(batch).map_err(|e| failed("Arrow", e))?;
                }
                writer.finish().map_err(|e| failed("Arrow", e))?;
            }
            Ok(out)
        }
        Format::Parquet => {
            let mut out = Vec::new();
            let mut writer =
                datafusion::parquet::arrow::ArrowWriter::try_new(&mut out, schema.clone(), None)
                    .map_err(|e| failed("Parquet", e))?;
            for batch in batches {
                writer.write(batch).map_err(|e| failed("Parquet", e))?;
            }
            writer.close().map_err(|e| failed("Parquet", e))?;
            Ok(out)
        }
    }
}

/// Reads an Arrow IPC stream (what [`write`] gives for [`Format::Arrow`]).
pub fn read_arrow(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| Error::Internal(format!("reading an Arrow stream: {e}")))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Internal(format!("reading an Arrow stream: {e}")))?;
    Ok((schema, batches))
}
