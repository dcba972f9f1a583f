//! Generators of bad (and sometimes good) `POST /tareas` requests.
//!
//! Bodies: random bytes; task-like objects whose members are drawn from
//! right and wrong keys, types and lengths (duplicates, unknown keys, huge
//! numbers, strings at and over the limits, NUL and surrogate escapes,
//! whitespace-only titles); those objects truncated, with random bytes
//! spliced in (invalid UTF-8, raw NULs), or padded past the body limit;
//! deep nesting in every place; arbitrary JSON values. Headers: right,
//! wrong, odd-cased, parameterised, missing and random content types;
//! missing, fresh, reused, empty, over-long and non-ASCII Idempotency-Keys.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::model::BODY_LIMIT;

/// One generated request.
#[derive(Debug, Clone)]
pub struct Case {
    /// The Content-Type header's bytes, if sent.
    pub content_type: Option<Vec<u8>>,
    /// The Idempotency-Key header's bytes, if sent.
    pub key: Option<Vec<u8>>,
    /// The body.
    pub body: Vec<u8>,
    /// Whether Content-Length is sent (otherwise the body is streamed, or
    /// chunked over TCP).
    pub declare_length: bool,
}

pub fn case() -> impl Strategy<Value = Case> {
    (content_type(), key(), body(), any::<bool>()).prop_map(
        |(content_type, key, body, declare_length)| Case {
            content_type,
            key,
            body,
            declare_length,
        },
    )
}

/// Bytes a header value may hold (what `http::HeaderValue` accepts).
fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(
        prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff],
        0..max,
    )
}

fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    let fixed = |s: &'static str| Just(Some(s.as_bytes().to_vec()));
    prop_oneof![
        40 => fixed("application/json"),
        6 => fixed("application/json; charset=utf-8"),
        1 => fixed("APPLICATION/Json"),
        1 => fixed("  application/json ;"),
        1 => fixed("application/problem+json"),
        1 => fixed("text/plain"),
        1 => fixed("application/x-www-form-urlencoded"),
        1 => fixed("application/jsonx"),
        1 => fixed("text/json"),
        1 => fixed("json"),
        1 => fixed(""),
        2 => Just(None),
        1 => header_bytes(40).prop_map(Some),
    ]
}

fn key() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        8 => Just(None),
        3 => "[a-zA-Z0-9_-]{1,40}".prop_map(|k| Some(k.into_bytes())),
        2 => prop::sample::select(vec!["reused-1", "reused-2", " reused-1 "]).prop_map(|k| Some(k.as_bytes().to_vec())),
        1 => (201usize..400).prop_map(|n| Some(vec![b'k'; n])),
        1 => prop::sample::select(vec!["", " ", "a b", "clé", "tab\there"]).prop_map(|k| Some(k.as_bytes().to_vec())),
        1 => header_bytes(60).prop_map(Some),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => vec(any::<u8>(), 0..300),
        8 => object().prop_map(String::into_bytes),
        2 => (object(), vec(any::<u8>(), 1..4), any::<Index>()).prop_map(|(text, junk, at)| {
            let mut bytes = text.into_bytes();
            let at = at.index(bytes.len() + 1);
            bytes.splice(at..at, junk);
            bytes
        }),
        1 => (object(), any::<Index>()).prop_map(|(text, at)| {
            let bytes = text.into_bytes();
            bytes[..at.index(bytes.len())].to_vec()
        }),
        2 => deep(),
        2 => any_json().prop_map(String::into_bytes),
        1 => oversized(),
        1 => (object(), prop::sample::select(vec!["\u{feff}", "\0", " \n\t\r", "[", "]", "{}"]), any::<bool>())
            .prop_map(|(text, extra, before)| if before { format!("{extra}{text}") } else { format!("{text}{extra}") }.into_bytes()),
    ]
}

/// A JSON object (or something close to one) made of task-like members.
fn object() -> impl Strategy<Value = String> {
    (vec(member(), 0..6), any::<bool>(), ws()).prop_map(|(mut members, with_titulo, pad)| {
        if with_titulo && !members.iter().any(|m| m.starts_with("\"titulo\"")) {
            members.insert(0, "\"titulo\":\"una tarea\"".into());
        }
        format!("{pad}{{{pad}{}{pad}}}{pad}", members.join(","))
    })
}

fn ws() -> impl Strategy<Value = String> {
    prop_oneof![4 => Just(String::new()), 1 => "[ \t\r\n]{1,3}"]
}

fn member() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        6 => Just("titulo".to_owned()),
        3 => Just("descripcion".to_owned()),
        3 => Just("completada".to_owned()),
        3 => Just("cliente".to_owned()),
        1 => prop::sample::select(vec!["id", "Titulo", "titulo ", "creada_en", "idempotency_key", ""]).prop_map(str::to_owned),
        1 => "[a-z]{1,8}",
    ];
    (name, value()).prop_map(|(name, value)| format!("\"{}\":{value}", escape(&name)))
}

/// A member value: any JSON type, with strings and numbers that stress limits.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => string(),
        2 => prop::sample::select(vec![
            "0", "-1", "1.5", "-0", "1e999", "-1e999", "123456789012345678901234567890",
            "1.7976931348623157e309", "0.0000000000000000000000001e-400", "18446744073709551616",
        ]).prop_map(str::to_owned),
        2 => prop::sample::select(vec!["true", "false", "null"]).prop_map(str::to_owned),
        1 => Just("[]".to_owned()),
        1 => Just("{}".to_owned()),
        1 => any_json(),
        1 => (1usize..300).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n))),
    ]
}

/// A JSON string literal: ordinary text, lengths around the limits,
/// whitespace, escapes (NUL, paired and lone surrogates), or a huge one.
fn string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => "[a-zA-Z0-9 ,.:]{1,12}".prop_map(|s| s),
        2 => prop::sample::select(vec!["ñ", "🦀", "漢", "é", " ", "\t", "\u{a0}", "\u{3000}", "\u{200b}", "]", "[", "{", "}"]).prop_map(escape),
        2 => prop::sample::select(vec![
            "\\u0000", "\\n", "\\\"", "\\\\", "\\/", "\\ud83d\\ude00", "\\ud800", "\\udc00", "\\u00f1", "\\t",
        ]).prop_map(str::to_owned),
    ];
    prop_oneof![
        6 => vec(piece, 0..6).prop_map(|p| format!("\"{}\"", p.concat())),
        3 => (prop::sample::select(vec![0usize, 1, 99, 100, 101, 199, 200, 201, 1999, 2000, 2001]),
              prop::sample::select(vec!["a", "ñ", "🦀", " "]))
            .prop_map(|(n, c)| format!("\"{}\"", c.repeat(n))),
        1 => (" x ", "[ \t\n]{0,3}").prop_map(|(core, pad)| format!("\"{}{core}{}\"", escape(&pad), escape(&pad))),
        1 => (5_000usize..60_000).prop_map(|n| format!("\"{}\"", "x".repeat(n))),
    ]
}

fn escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).expect("a string serializes");
    quoted[1..quoted.len() - 1].to_owned()
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        ".{0,10}"
            .prop_map(|s| escape(&s))
            .prop_map(|s| format!("\"{s}\"")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(|items| format!("[{}]", items.join(","))),
            vec(("[a-z]{0,6}", inner), 0..6).prop_map(|members| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// Nesting from a little to far past any parser's recursion limit, at the
/// top, under `titulo`, or under an unknown key; closed or not.
fn deep() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![1usize..200, 200usize..20_000],
        prop::sample::select(vec!["[", "{\"a\":"]),
        0..3usize,
        any::<bool>(),
    )
        .prop_map(|(depth, open, place, closed)| {
            let close = if open == "[" { "]" } else { "}" };
            let inner = format!(
                "{}1{}",
                open.repeat(depth),
                if closed {
                    close.repeat(depth)
                } else {
                    String::new()
                }
            );
            match place {
                0 => inner,
                1 => format!("{{\"titulo\":{inner}}}"),
                _ => format!("{{\"titulo\":\"a\",\"otro\":{inner}}}"),
            }
            .into_bytes()
        })
}

/// Bodies just under and over the limit: a valid task padded with spaces
/// or a long description.
fn oversized() -> impl Strategy<Value = Vec<u8>> {
    (BODY_LIMIT - 64..BODY_LIMIT + 4096, any::<bool>()).prop_map(|(len, in_string)| {
        let head = "{\"titulo\":\"grande\",\"descripcion\":\"";
        let mut text = String::with_capacity(len + 8);
        if in_string {
            text.push_str(head);
            while text.len() + 2 < len {
                text.push('d');
            }
            text.push_str("\"}");
        } else {
            text.push_str("{\"titulo\":\"grande\"}");
            while text.len() < len {
                text.push(' ');
            }
        }
        text.into_bytes()
    })
}
