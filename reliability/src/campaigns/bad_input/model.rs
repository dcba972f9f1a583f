//! The oracle: what the contract says a `POST /tareas` must get.
//!
//! It has its own JSON reader (RFC 8259, no depth limit, numbers of any
//! size) so that "valid JSON" is judged independently of the server's
//! parser, and it applies the contract's task rules to what it read.

use std::collections::{BTreeSet, HashMap};

/// Largest body accepted (contract: 64 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// A task as the contract normalises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub titulo: String,
    pub descripcion: Option<String>,
    pub completada: bool,
    pub cliente: Option<String>,
}

/// What a request may get: the allowed statuses, and the task a 2xx stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: BTreeSet<u16>,
    pub task: Option<Task>,
}

/// The request parts the contract talks about.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    pub content_type: Option<&'a [u8]>,
    pub idempotency_key: Option<&'a [u8]>,
    pub body: &'a [u8],
}

/// Judges a request; `keys` holds the task stored under each key so far.
pub fn judge(req: &Request<'_>, keys: &HashMap<String, Task>) -> Verdict {
    let mut allowed = BTreeSet::new();
    let media = req.content_type.map_or(Media::Other, media_type);
    if req.body.len() > BODY_LIMIT {
        allowed.insert(413);
    }
    if media != Media::Json {
        allowed.insert(415);
    }
    // A refusal for size or type stands; but `application/*+json` is JSON
    // by its suffix, which a server may accept, so the body is judged too.
    if allowed.contains(&413) || media == Media::Other {
        return Verdict {
            allowed,
            task: None,
        };
    }
    let key = req.idempotency_key.map(key_of);
    match task_of(req.body) {
        Err(statuses) => {
            allowed.extend(statuses);
            if matches!(key, Some(None)) {
                allowed.insert(400);
            }
            Verdict {
                allowed,
                task: None,
            }
        }
        Ok(task) => {
            allowed.insert(match key {
                Some(None) => 400,
                Some(Some(k)) => match keys.get(&k) {
                    Some(stored) if *stored == task => 200,
                    Some(_) => 422,
                    None => 201,
                },
                None => 201,
            });
            Verdict {
                allowed,
                task: Some(task),
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Json,
    Suffix,
    Other,
}

/// Media types are case-insensitive; parameters do not change the type.
fn media_type(value: &[u8]) -> Media {
    let text = String::from_utf8_lossy(value);
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" {
        Media::Json
    } else if essence.starts_with("application/") && essence.ends_with("+json") {
        Media::Suffix
    } else {
        Media::Other
    }
}

/// `Some(key)` for a usable Idempotency-Key (1 to 200 visible ASCII
/// characters once surrounding blanks are dropped), `None` for one that
/// must be refused with 400.
pub fn key_of(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    let key = text.trim_matches(|c| c == ' ' || c == '\t');
    (!key.is_empty() && key.len() <= 200 && key.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| key.to_owned())
}

/// The task in a body, or the statuses allowed for a body that is not one.
pub fn task_of(body: &[u8]) -> Result<Task, Vec<u16>> {
    let top = parse(body).ok_or_else(|| vec![400])?;
    // A `\uD800` with no pair is valid JSON but no Unicode string: a server
    // may call it bad JSON or a bad task.
    if top.lone_surrogate {
        return Err(vec![400, 422]);
    }
    let Shallow::Object = top.value else {
        return Err(vec![422]);
    };
    let mut seen = BTreeSet::new();
    let (mut titulo, mut descripcion, mut completada, mut cliente) = (None, None, None, None);
    for (key, value) in top.members {
        let key = key.unwrap_or_default();
        if !seen.insert(key.clone()) {
            return Err(vec![422]);
        }
        match (key.as_str(), value) {
            ("titulo", Shallow::Str(s)) => titulo = Some(s),
            ("descripcion", Shallow::Str(s)) => descripcion = Some(s),
            ("descripcion", Shallow::Null) => {}
            ("completada", Shallow::Bool(b)) => completada = Some(b),
            ("completada", Shallow::Null) => {}
            ("cliente", Shallow::Str(s)) => cliente = Some(s),
            ("cliente", Shallow::Null) => {}
            _ => return Err(vec![422]),
        }
    }
    let titulo = titulo.ok_or_else(|| vec![422])?.trim().to_owned();
    let chars = |s: &str| s.chars().count();
    if titulo.is_empty()
        || chars(&titulo) > 200
        || descripcion.as_deref().is_some_and(|d| chars(d) > 2000)
        || cliente.as_deref().is_some_and(|c| chars(c) > 100)
    {
        return Err(vec![422]);
    }
    Ok(Task {
        titulo,
        descripcion,
        completada: completada.unwrap_or(false),
        cliente,
    })
}

/// A JSON value, one level deep.
#[derive(Debug, Clone, PartialEq)]
pub enum Shallow {
    Null,
    Bool(bool),
    Number,
    Str(String),
    Array,
    Object,
}

/// A whole JSON text: its value, and the members if it is an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Top {
    pub value: Shallow,
    /// Members of a top-level object; a key is `None` if not Unicode.
    pub members: Vec<(Option<String>, Shallow)>,
    /// Whether any string anywhere has an unpaired surrogate escape.
    pub lone_surrogate: bool,
}

/// Reads `bytes` as one JSON text (RFC 8259); `None` when it is not one.
pub fn parse(bytes: &[u8]) -> Option<Top> {
    std::str::from_utf8(bytes).ok()?;
    let mut p = Parser {
        b: bytes,
        i: 0,
        lone: false,
    };
    p.ws();
    let mut members = Vec::new();
    let value = if p.peek()? == b'{' {
        p.i += 1;
        p.ws();
        if p.peek()? == b'}' {
            p.i += 1;
        } else {
            loop {
                p.ws();
                if p.peek()? != b'"' {
                    return None;
                }
                let key = p.string()?;
                p.ws();
                p.expect(b':')?;
                p.ws();
                let value = p.value()?;
                members.push((key, value));
                p.ws();
                match p.next()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        Shallow::Object
    } else {
        p.value()?
    };
    p.ws();
    (p.i == bytes.len()).then_some(Top {
        value,
        members,
        lone_surrogate: p.lone,
    })
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    lone: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A value; arrays and objects are checked without recursion.
    fn value(&mut self) -> Option<Shallow> {
        match self.peek()? {
            b'[' => self.container().map(|()| Shallow::Array),
            b'{' => self.container().map(|()| Shallow::Object),
            _ => self.scalar(),
        }
    }

    fn scalar(&mut self) -> Option<Shallow> {
        match self.peek()? {
            b'"' => Some(Shallow::Str(self.string()?.unwrap_or_default())),
            b't' => self.literal(b"true").map(|()| Shallow::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Shallow::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Shallow::Null),
            b'-' | b'0'..=b'9' => self.number().map(|()| Shallow::Number),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            (self.digits() > 0).then_some(())?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            (self.digits() > 0).then_some(())?;
        }
        Some(())
    }

    /// A string; `Some(None)` when it is valid JSON but holds an unpaired
    /// surrogate.
    fn string(&mut self) -> Option<Option<String>> {
        self.expect(b'"')?;
        let mut units: Vec<u16> = Vec::new();
        loop {
            match self.next()? {
                b'"' => break,
                b'\\' => match self.next()? {
                    b'"' => units.push(u16::from(b'"')),
                    b'\\' => units.push(u16::from(b'\\')),
                    b'/' => units.push(u16::from(b'/')),
                    b'b' => units.push(8),
                    b'f' => units.push(12),
                    b'n' => units.push(10),
                    b'r' => units.push(13),
                    b't' => units.push(9),
                    b'u' => {
                        let hex = std::str::from_utf8(self.b.get(self.i..self.i + 4)?).ok()?;
                        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return None;
                        }
                        units.push(u16::from_str_radix(hex, 16).ok()?);
                        self.i += 4;
                    }
                    _ => return None,
                },
                0..=0x1f => return None,
                first => {
                    // Copy one whole UTF-8 character (the text is valid UTF-8).
                    let len = match first {
                        0xf0.. => 4,
                        0xe0.. => 3,
                        0xc0.. => 2,
                        _ => 1,
                    };
                    let ch = std::str::from_utf8(self.b.get(self.i - 1..self.i - 1 + len)?).ok()?;
                    units.extend(ch.encode_utf16());
                    self.i += len - 1;
                }
            }
        }
        match String::from_utf16(&units) {
            Ok(s) => Some(Some(s)),
            Err(_) => {
                self.lone = true;
                Some(None)
            }
        }
    }

    /// An array or object, however deep, with an explicit stack.
    fn container(&mut self) -> Option<()> {
        let mut stack: Vec<u8> = Vec::new();
        let mut want_value = true;
        loop {
            self.ws();
            if want_value {
                match self.peek()? {
                    open @ (b'[' | b'{') => {
                        self.i += 1;
                        stack.push(open);
                        self.ws();
                        let close = if open == b'[' { b']' } else { b'}' };
                        if self.peek()? == close {
                            self.i += 1;
                            stack.pop();
                            want_value = false;
                        } else if open == b'{' {
                            self.member_key()?;
                        }
                    }
                    _ => {
                        self.scalar()?;
                        want_value = false;
                    }
                }
            } else {
                let top = *stack.last()?;
                match self.next()? {
                    b',' => {
                        if top == b'{' {
                            self.ws();
                            self.member_key()?;
                        }
                        want_value = true;
                    }
                    b']' if top == b'[' => {
                        stack.pop();
                    }
                    b'}' if top == b'{' => {
                        stack.pop();
                    }
                    _ => return None,
                }
            }
            if stack.is_empty() && !want_value {
                return Some(());
            }
        }
    }

    fn member_key(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        self.string()?;
        self.ws();
        self.expect(b':')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(text: &str) -> bool {
        parse(text.as_bytes()).is_some()
    }

    #[test]
    fn reads_json_as_the_rfc_defines_it() {
        for ok in [
            "{}",
            "[]",
            " 0 ",
            "-0",
            "1e999",
            "-12.5E+3",
            "\"\\ud83d\\ude00\"",
            "[[[[]]]]",
            "{\"a\":[1,{\"b\":null}],\"a\":true}",
            "\"\\u0000\"",
            "\"ñ🦀\"",
        ] {
            assert!(valid(ok), "{ok}");
        }
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            ".5",
            "+1",
            "NaN",
            "'a'",
            "\"\u{1}\"",
            "[1] x",
            "{\"a\" 1}",
            "\u{feff}{}",
            "[}",
            "{]",
            "\"\\x\"",
            "\"\\u12\"",
            "tru",
        ] {
            assert!(!valid(bad), "{bad:?}");
        }
        assert!(parse(b"\"\xff\"").is_none());
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(valid(&deep));
        assert!(!valid(&deep[1..]));
        assert!(parse(b"\"\\ud800\"").unwrap().lone_surrogate);
    }

    #[test]
    fn applies_the_task_rules() {
        let task = |s: &str| task_of(s.as_bytes());
        assert_eq!(task(r#"{"titulo":"  a "}"#).unwrap().titulo, "a");
        assert!(
            task(r#"{"titulo":"a","completada":null,"descripcion":null,"cliente":"c"}"#).is_ok()
        );
        for (body, status) in [
            ("{", 400),
            ("[]", 422),
            (r#"{"titulo":" "}"#, 422),
            (r#"{"titulo":"a","titulo":"a"}"#, 422),
            (r#"{"titulo":"a","x":1}"#, 422),
            (r#"{"titulo":"a","completada":1e999}"#, 422),
            (r#"{"titulo":null}"#, 422),
        ] {
            assert_eq!(task(body).unwrap_err(), vec![status], "{body}");
        }
        assert_eq!(
            task(&format!(r#"{{"titulo":"{}"}}"#, "ñ".repeat(200)))
                .unwrap()
                .titulo
                .chars()
                .count(),
            200
        );
        assert!(task(&format!(r#"{{"titulo":"{}"}}"#, "ñ".repeat(201))).is_err());
        assert_eq!(task(r#"{"titulo":"\ud800"}"#).unwrap_err(), vec![400, 422]);
    }

    #[test]
    fn judges_headers_and_keys() {
        let mut keys = HashMap::new();
        let body = br#"{"titulo":"a"}"#;
        let judge_with = |ct: Option<&[u8]>, key: Option<&[u8]>, keys: &HashMap<String, Task>| {
            judge(
                &Request {
                    content_type: ct,
                    idempotency_key: key,
                    body,
                },
                keys,
            )
            .allowed
        };
        let json: Option<&[u8]> = Some(b"Application/JSON; charset=utf-8");
        assert_eq!(judge_with(json, None, &keys), [201].into());
        assert_eq!(judge_with(Some(b"text/plain"), None, &keys), [415].into());
        assert_eq!(judge_with(None, None, &keys), [415].into());
        assert_eq!(judge_with(json, Some(b""), &keys), [400].into());
        assert_eq!(judge_with(json, Some(b"a b"), &keys), [400].into());
        keys.insert("k".into(), task_of(body).unwrap());
        assert_eq!(judge_with(json, Some(b"k"), &keys), [200].into());
        keys.insert("k".into(), task_of(br#"{"titulo":"b"}"#).unwrap());
        assert_eq!(judge_with(json, Some(b"k"), &keys), [422].into());
        let big = vec![b' '; BODY_LIMIT + 1];
        let over = judge(
            &Request {
                content_type: json,
                idempotency_key: None,
                body: &big,
            },
            &keys,
        );
        assert_eq!(over.allowed, [413].into());
    }
}
