//! GGUF (version 2 and 3): the file format llama.cpp writes. A header of typed metadata, a table of
//! tensors, then the tensor data, each tensor aligned to `general.alignment` (32 by default).
//!
//! The reader parses the header, checks every tensor lies inside the file, and reads tensors on demand.
//! The writer exists so tests can build tiny models; it writes what the reader reads.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::Error;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// Sanity bounds so a corrupt header cannot make the reader allocate without limit.
const MAX_STRING: u64 = 1 << 24;
const MAX_ARRAY: u64 = 1 << 24;
const MAX_ITEMS: u64 = 1 << 20;
const MAX_DIMS: u32 = 4;

/// The ggml tensor types this runtime reads (named as ggml names them).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    /// Blocks of 32 5-bit quants (the fifth bits apart) with an f16 scale: `d·(q − 16)`.
    Q5_0,
    Q8_0,
    /// Super-blocks of 256: 4-bit quants in eight sub-blocks of 32, each with a 6-bit scale and
    /// minimum under two f16 factors.
    Q4_K,
    /// Super-blocks of 256: 6-bit quants in sixteen sub-blocks of 16, each with an 8-bit scale
    /// under one f16 factor.
    Q6_K,
}

impl GgmlType {
    fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            8 => Self::Q8_0,
            12 => Self::Q4_K,
            14 => Self::Q6_K,
            _ => return None,
        })
    }

    fn code(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q8_0 => 8,
            Self::Q4_K => 12,
            Self::Q6_K => 14,
        }
    }

    /// Elements per block and bytes per block.
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 => (1, 2),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q8_0 => (32, 34),
            Self::Q4_K => (256, 144),
            Self::Q6_K => (256, 210),
        }
    }

    /// Bytes taken by `n` elements, or `None` if `n` is not a whole number of blocks.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let (elems, bytes) = self.block();
        n.is_multiple_of(elems as u64)
            .then(|| n / elems as u64 * bytes as u64)
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Self::F32(v) => Some(v),
            Self::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    fn type_code(&self) -> u32 {
        match self {
            Self::U8(_) => 0,
            Self::I8(_) => 1,
            Self::U16(_) => 2,
            Self::I16(_) => 3,
            Self::U32(_) => 4,
            Self::I32(_) => 5,
            Self::F32(_) => 6,
            Self::Bool(_) => 7,
            Self::String(_) => 8,
            Self::Array(_) => 9,
            Self::U64(_) => 10,
            Self::I64(_) => 11,
            Self::F64(_) => 12,
        }
    }
}

/// Where a tensor is and what it holds. `dims[0]` is the row length (ggml's `ne[0]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute offset of the data in the file.
    pub offset: u64,
    pub size: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: metadata and tensor table; tensors are read from the file on demand.
#[derive(Debug)]
pub struct Gguf {
    pub metadata: BTreeMap<String, Value>,
    pub tensors: BTreeMap<String, TensorInfo>,
    file: File,
}

struct Cursor<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Cursor<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf).map_err(|e| {
            Error::BadModel(format!("GGUF header truncated at byte {}: {e}", self.pos))
        })?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn string(&mut self) -> Result<String, Error> {
        let len = self.u64()?;
        if len > MAX_STRING {
            return Err(Error::BadModel(format!(
                "GGUF string of {len} bytes at byte {}",
                self.pos
            )));
        }
        let mut buf = vec![0u8; len as usize];
        self.inner.read_exact(&mut buf).map_err(|e| {
            Error::BadModel(format!("GGUF header truncated at byte {}: {e}", self.pos))
        })?;
        self.pos += len;
        String::from_utf8(buf).map_err(|_| {
            Error::BadModel(format!("GGUF string is not UTF-8 near byte {}", self.pos))
        })
    }

    fn value(&mut self, ty: u32, depth: u32) -> Result<Value, Error> {
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.bytes()?)),
            1 => Value::I8(i8::from_le_bytes(self.bytes()?)),
            2 => Value::U16(u16::from_le_bytes(self.bytes()?)),
            3 => Value::I16(i16::from_le_bytes(self.bytes()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.bytes()?)),
            6 => Value::F32(f32::from_le_bytes(self.bytes()?)),
            7 => match u8::from_le_bytes(self.bytes()?) {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(Error::BadModel(format!("GGUF bool with value {b}"))),
            },
            8 => Value::String(self.string()?),
            9 if depth == 0 => {
                let item_ty = self.u32()?;
                let len = self.u64()?;
                if len > MAX_ARRAY {
                    return Err(Error::BadModel(format!("GGUF array of {len} items")));
                }
                let mut items = Vec::with_capacity(len.min(1 << 16) as usize);
                for _ in 0..len {
                    items.push(self.value(item_ty, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.bytes()?)),
            12 => Value::F64(f64::from_le_bytes(self.bytes()?)),
            other => {
                return Err(Error::BadModel(format!(
                    "GGUF metadata type {other} is not supported"
                )));
            }
        })
    }
}

impl Gguf {
    /// Parses the header of the GGUF file at `path`.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut cur = Cursor {
            inner: BufReader::new(&file),
            pos: 0,
        };
        if &cur.bytes::<4>()? != MAGIC {
            return Err(Error::BadModel(format!(
                "{} is not a GGUF file (bad magic)",
                path.display()
            )));
        }
        let version = cur.u32()?;
        if !(2..=3).contains(&version) {
            return Err(Error::BadModel(format!(
                "GGUF version {version} is not supported (2 or 3)"
            )));
        }
        let n_tensors = cur.u64()?;
        let n_kv = cur.u64()?;
        if n_tensors > MAX_ITEMS || n_kv > MAX_ITEMS {
            return Err(Error::BadModel(format!(
                "GGUF header claims {n_tensors} tensors and {n_kv} keys"
            )));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = cur.string()?;
            let ty = cur.u32()?;
            let value = cur.value(ty, 0)?;
            metadata.insert(key, value);
        }
        let mut raw = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = cur.string()?;
            let n_dims = cur.u32()?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(Error::BadModel(format!(
                    "tensor {name} has {n_dims} dimensions"
                )));
            }
            let dims = (0..n_dims)
                .map(|_| cur.u64())
                .collect::<Result<Vec<_>, _>>()?;
            let code = cur.u32()?;
            let ty = GgmlType::from_code(code).ok_or_else(|| {
                Error::BadModel(format!("tensor {name} has ggml type {code}, not supported"))
            })?;
            let offset = cur.u64()?;
            raw.push((name, dims, ty, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            Some(v) => v
                .as_u64()
                .filter(|a| a.is_power_of_two())
                .ok_or_else(|| Error::BadModel("general.alignment is not a power of two".into()))?,
            None => DEFAULT_ALIGNMENT,
        };
        let data_start = cur.pos.next_multiple_of(alignment);
        let mut tensors = BTreeMap::new();
        for (name, dims, ty, offset) in raw {
            let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            let size = elements.and_then(|n| ty.bytes_for(n)).ok_or_else(|| {
                Error::BadModel(format!("tensor {name} has a bad shape {dims:?} for {ty:?}"))
            })?;
            let start = data_start
                .checked_add(offset)
                .filter(|s| {
                    offset % alignment == 0
                        && s.checked_add(size).is_some_and(|end| end <= file_len)
                })
                .ok_or_else(|| {
                    Error::BadModel(format!("tensor {name} lies outside the file (truncated?)"))
                })?;
            tensors.insert(
                name,
                TensorInfo {
                    dims,
                    ty,
                    offset: start,
                    size,
                },
            );
        }
        Ok(Self {
            metadata,
            tensors,
            file,
        })
    }

    pub fn get(&self, key: &str) -> Result<&Value, Error> {
        self.metadata
            .get(key)
            .ok_or_else(|| Error::BadModel(format!("GGUF metadata lacks {key}")))
    }

    pub fn u64(&self, key: &str) -> Result<u64, Error> {
        self.get(key)?
            .as_u64()
            .ok_or_else(|| Error::BadModel(format!("GGUF metadata {key} is not an integer")))
    }

    pub fn f32(&self, key: &str) -> Result<f32, Error> {
        self.get(key)?
            .as_f32()
            .ok_or_else(|| Error::BadModel(format!("GGUF metadata {key} is not a float")))
    }

    pub fn str(&self, key: &str) -> Result<&str, Error> {
        self.get(key)?
            .as_str()
            .ok_or_else(|| Error::BadModel(format!("GGUF metadata {key} is not a string")))
    }

    pub fn info(&self, name: &str) -> Result<&TensorInfo, Error> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::BadModel(format!("GGUF file lacks tensor {name}")))
    }

    /// Reads the raw bytes of a tensor.
    pub fn read(&self, name: &str) -> Result<(TensorInfo, Vec<u8>), Error> {
        let info = self.info(name)?.clone();
        let mut buf = vec![0u8; info.size as usize];
        let mut file = &self.file;
        file.seek(SeekFrom::Start(info.offset))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| Error::BadModel(format!("reading tensor {name}: {e}")))?;
        Ok((info, buf))
    }
}

/// A tensor to write: name, dims (`dims[0]` = row length), type and raw bytes.
#[derive(Debug, Clone)]
pub struct TensorData {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    pub data: Vec<u8>,
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            let item_ty = items.first().map_or(0, Value::type_code);
            out.extend_from_slice(&item_ty.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                write_value(out, item);
            }
        }
    }
}

/// Writes a GGUF version 3 file (alignment 32).
pub fn write(
    mut w: impl Write,
    metadata: &BTreeMap<String, Value>,
    tensors: &[TensorData],
) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        write_string(&mut out, k);
        out.extend_from_slice(&v.type_code().to_le_bytes());
        write_value(&mut out, v);
    }
    let mut offset = 0u64;
    for t in tensors {
        write_string(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.ty.code().to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset = (offset + t.data.len() as u64).next_multiple_of(DEFAULT_ALIGNMENT);
    }
    out.resize(out.len().next_multiple_of(DEFAULT_ALIGNMENT as usize), 0);
    for t in tensors {
        out.extend_from_slice(&t.data);
        out.resize(out.len().next_multiple_of(DEFAULT_ALIGNMENT as usize), 0);
    }
    w.write_all(&out)?;
    w.flush()
}
