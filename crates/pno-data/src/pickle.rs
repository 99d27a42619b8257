//! A small, safe pickle interpreter for the subset `torch.save` writes (protocol 2, plus the
//! common protocol 3–5 opcodes). It never imports or calls anything: globals become names,
//! and only the reductions torch uses for tensors are understood.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use crate::error::{Error, Result};

/// A decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes,
    Tuple(Rc<Vec<Value>>),
    List(Rc<Vec<Value>>),
    Dict(Rc<Vec<(Value, Value)>>),
    /// `GLOBAL module name`.
    Global(String, String),
    /// `BINPERSID` of a value.
    PersId(Rc<Value>),
    /// A tensor rebuilt by `torch._utils._rebuild_tensor_v2`.
    Tensor(Rc<TensorRef>),
    /// Any other reduction (kept opaque).
    Opaque(String),
    /// The stack marker.
    Mark,
}

/// A tensor view into a storage of a `.pt` archive.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    /// Storage class name, e.g. `FloatStorage`.
    pub(crate) storage: String,
    /// Archive key of the storage (`data/<key>`).
    pub(crate) key: String,
    /// Number of elements of the storage.
    pub(crate) numel: usize,
    /// Offset of element 0 in the storage.
    pub(crate) offset: usize,
    /// Shape.
    pub(crate) size: Vec<usize>,
    /// Strides in elements.
    pub(crate) stride: Vec<usize>,
}

struct Machine<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

/// The longest stack or memo the interpreter accepts.
const MAX_ITEMS: usize = 1 << 24;

impl<'a> Machine<'a> {
    fn err(&self, expected: &str, got: impl Into<String>) -> Error {
        Error::format(
            self.path,
            format!("data.pkl at byte {}", self.pos),
            expected,
            got,
        )
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.err("a length", "overflow"))?;
        let s = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| self.err(&format!("{n} more bytes"), "end of data"))?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn string(&mut self, n: usize) -> Result<String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|e| self.err("UTF-8 text", e.to_string()))
    }

    fn line(&mut self) -> Result<String> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("a newline", "end of data"))?;
        let s = self.string(n)?;
        self.pos += 1;
        Ok(s)
    }

    fn push(&mut self, v: Value) -> Result<()> {
        if self.stack.len() >= MAX_ITEMS {
            return Err(self.err("a smaller pickle", "a stack too deep"));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value> {
        match self.stack.pop() {
            Some(Value::Mark) | None => Err(self.err("a value on the stack", "empty stack")),
            Some(v) => Ok(v),
        }
    }

    fn top(&mut self) -> Result<&mut Value> {
        let pos = self.pos;
        let path = self.path;
        self.stack.last_mut().ok_or_else(|| {
            Error::format(
                path,
                format!("data.pkl at byte {pos}"),
                "a value on the stack",
                "empty stack",
            )
        })
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| self.err("a MARK", "none"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    fn memo_put(&mut self, key: u32) -> Result<()> {
        let v = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| self.err("a value to memoize", "empty stack"))?;
        if self.memo.len() >= MAX_ITEMS {
            return Err(self.err("a smaller memo", "too many entries"));
        }
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Result<()> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or_else(|| self.err("a memoized key", key.to_string()))?;
        self.push(v)
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("key/value pairs", format!("{} items", items.len())));
        }
        let err = self.err("a dict", "another value");
        match self.top()? {
            Value::Dict(d) => {
                let d = Rc::make_mut(d);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    if let Some(slot) = d.iter_mut().find(|(ek, _)| *ek == k) {
                        slot.1 = v;
                    } else {
                        d.push((k, v));
                    }
                }
                Ok(())
            }
            // OrderedDict and other objects built by REDUCE: ignore their items.
            Value::Opaque(_) => Ok(()),
            _ => Err(err),
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Result<()> {
        let err = self.err("a list", "another value");
        match self.top()? {
            Value::List(l) => {
                Rc::make_mut(l).extend(items);
                Ok(())
            }
            Value::Opaque(_) => Ok(()),
            _ => Err(err),
        }
    }

    fn reduce(&mut self, func: Value, args: Value) -> Result<Value> {
        let Value::Global(module, name) = &func else {
            return Ok(Value::Opaque("call of a non-global".into()));
        };
        let Value::Tuple(args) = &args else {
            return Err(self.err("a tuple of arguments", format!("{args:?}")));
        };
        match (module.as_str(), name.as_str()) {
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => self.rebuild_tensor(args),
            (m, n) => Ok(Value::Opaque(format!("{m}.{n}"))),
        }
    }

    fn rebuild_tensor(&self, args: &[Value]) -> Result<Value> {
        let bad = |what: &str| {
            self.err(
                &format!("_rebuild_tensor_v2 {what}"),
                format!("{args:?}").chars().take(200).collect::<String>(),
            )
        };
        let (
            Some(Value::PersId(pid)),
            Some(Value::Int(offset)),
            Some(Value::Tuple(size)),
            Some(Value::Tuple(stride)),
        ) = (args.first(), args.get(1), args.get(2), args.get(3))
        else {
            return Err(bad("arguments (storage, offset, size, stride, ...)"));
        };
        let Value::Tuple(pid) = pid.as_ref() else {
            return Err(bad("persistent id tuple"));
        };
        let (
            Some(Value::Str(kind)),
            Some(Value::Global(_, storage)),
            Some(Value::Str(key)),
            Some(Value::Int(numel)),
        ) = (pid.first(), pid.get(1), pid.get(2), pid.get(4))
        else {
            return Err(bad(
                "persistent id ('storage', class, key, location, numel)",
            ));
        };
        if kind != "storage" {
            return Err(bad("persistent id kind 'storage'"));
        }
        let ints = |t: &[Value]| -> Option<Vec<usize>> {
            t.iter()
                .map(|v| {
                    if let Value::Int(i) = v {
                        usize::try_from(*i).ok()
                    } else {
                        None
                    }
                })
                .collect()
        };
        let size = ints(size).ok_or_else(|| bad("size (non-negative integers)"))?;
        let stride = ints(stride).ok_or_else(|| bad("stride (non-negative integers)"))?;
        if size.len() != stride.len() {
            return Err(bad("size and stride of equal length"));
        }
        Ok(Value::Tensor(Rc::new(TensorRef {
            storage: storage.clone(),
            key: key.clone(),
            numel: usize::try_from(*numel).map_err(|_| bad("storage numel"))?,
            offset: usize::try_from(*offset).map_err(|_| bad("storage offset"))?,
            size,
            stride,
        })))
    }

    fn run(mut self) -> Result<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(self.err("pickle protocol <= 5", proto.to_string()));
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME length: frames are just concatenated.
                }
                b'.' => return self.pop(),
                b'}' => self.push(Value::Dict(Rc::default()))?,
                b']' => self.push(Value::List(Rc::default()))?,
                b')' => self.push(Value::Tuple(Rc::default()))?,
                b'(' => self.push(Value::Mark)?,
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self
                        .stack
                        .last()
                        .cloned()
                        .ok_or_else(|| self.err("a value", "empty stack"))?;
                    self.push(v)?;
                }
                b'q' => {
                    let k = self.u8()?;
                    self.memo_put(u32::from(k))?;
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = u32::try_from(self.memo.len())
                        .map_err(|_| self.err("a smaller memo", "overflow"))?;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()?;
                    self.memo_get(u32::from(k))?;
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?;
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.push(Value::Str(s))?;
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let s = self.string(n)?;
                    self.push(Value::Str(s))?;
                }
                0x8d => {
                    let n = usize::try_from(self.u64()?)
                        .map_err(|_| self.err("a length", "overflow"))?;
                    let s = self.string(n)?;
                    self.push(Value::Str(s))?;
                }
                b'U' => {
                    let n = usize::from(self.u8()?);
                    let s = self.string(n)?;
                    self.push(Value::Str(s))?;
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.push(Value::Str(s))?;
                }
                b'C' => {
                    let n = usize::from(self.u8()?);
                    self.take(n)?;
                    self.push(Value::Bytes)?;
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.push(Value::Bytes)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(module, name))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push(Value::Global(m, n))?,
                        _ => return Err(self.err("two strings for STACK_GLOBAL", "other values")),
                    }
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Rc::new(items)))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n
                        || self
                            .stack
                            .iter()
                            .rev()
                            .take(n)
                            .any(|v| matches!(v, Value::Mark))
                    {
                        return Err(self.err(&format!("{n} values for TUPLE{n}"), "fewer"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Value::Tuple(Rc::new(items)))?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Rc::new(items)))?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(Rc::default()))?;
                    self.set_items(items)?;
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(i64::from(v)))?;
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?;
                    if n > 8 {
                        self.push(Value::Opaque("big integer".into()))?;
                    } else {
                        let mut a = [0u8; 8];
                        if b.last().is_some_and(|x| x & 0x80 != 0) {
                            a = [0xff; 8];
                        }
                        a[..n].copy_from_slice(b);
                        self.push(Value::Int(i64::from_le_bytes(a)))?;
                    }
                }
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'N' => self.push(Value::None)?,
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Value::Float(f64::from_be_bytes(a)))?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(Value::PersId(Rc::new(pid)))?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.push(v)?;
                }
                0x81 => {
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    self.push(Value::Opaque(
                        format!("object {cls:?}").chars().take(100).collect(),
                    ))?;
                }
                b'b' => {
                    // BUILD: set state on the object below; torch uses it for parameters only.
                    self.pop()?;
                    self.top()?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                other => {
                    self.pos -= 1;
                    return Err(self.err(
                        "a pickle opcode of the torch.save subset",
                        format!("opcode 0x{other:02x}"),
                    ));
                }
            }
        }
    }
}

/// Interprets `bytes` (a `data.pkl`) and returns the top-level value.
pub(crate) fn unpickle(bytes: &[u8], path: &Path) -> Result<Value> {
    Machine {
        path,
        bytes,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpickle_dict_of_scalars_reads() {
        // pickle.dumps({'a': 1, 'b': [1.5, True]}, protocol=2)
        let b = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(G?\xf8\x00\x00\x00\x00\x00\x00\x88eu.";
        let v = unpickle(b, Path::new("t.pkl")).unwrap();
        let Value::Dict(d) = v else { panic!("{v:?}") };
        assert_eq!(d[0], (Value::Str("a".into()), Value::Int(1)));
        assert_eq!(
            d[1].1,
            Value::List(Rc::new(vec![Value::Float(1.5), Value::Bool(true)]))
        );
    }

    #[test]
    fn unpickle_truncated_errors_not_panics() {
        let b = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(G?\xf8\x00\x00\x00\x00\x00\x00\x88eu.";
        for n in 0..b.len() {
            assert!(unpickle(&b[..n], Path::new("t.pkl")).is_err());
        }
    }
}
