//! A dataset's export as Parquet: one row per item with its inclusion proof (JSONL is written by
//! the CLI line by line).

use arrow::array::{ArrayRef, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use std::path::Path;
use std::sync::Arc;

/// One exported item.
#[derive(Clone, Debug)]
pub struct Row {
    /// The dataset's root, hex.
    pub root: String,
    /// The bounty.
    pub bounty: u64,
    /// The item's index in the bounty.
    pub index: u32,
    /// Its contributor, `agora1…`.
    pub contributor: String,
    /// blake3 of its bytes, hex.
    pub hash: String,
    /// Its bytes, as text.
    pub content: String,
    /// Its inclusion proof, as JSON.
    pub proof: String,
}

/// Writes `rows` to a Parquet file at `path`.
pub fn write_parquet(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("root", DataType::Utf8, false),
        Field::new("bounty", DataType::UInt64, false),
        Field::new("index", DataType::UInt32, false),
        Field::new("contributor", DataType::Utf8, false),
        Field::new("hash", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
        Field::new("proof", DataType::Utf8, false),
    ]));
    let text = |f: fn(&Row) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            text(|r| &r.root),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.bounty))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.index))),
            text(|r| &r.contributor),
            text(|r| &r.hash),
            text(|r| &r.content),
            text(|r| &r.proof),
        ],
    )
    .map_err(std::io::Error::other)?;
    let file = std::fs::File::create(path)?;
    let mut writer = ArrowWriter::try_new(file, schema, None).map_err(std::io::Error::other)?;
    writer.write(&batch).map_err(std::io::Error::other)?;
    writer.close().map_err(std::io::Error::other)?;
    Ok(())
}
