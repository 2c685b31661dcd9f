//! Python literals (numbers, strings, `True`/`False`/`None`, lists, tuples, dicts) as
//! JSON, for dataset rows that wrote test arguments with `repr` instead of JSON.

use serde_json::{Map, Number, Value};

/// `text` as one Python literal, or None when it is not exactly one. Tuples become
/// lists; dict keys become strings, as in JSON.
pub(crate) fn parse(text: &str) -> Option<Value> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    let v = p.value()?;
    p.space();
    (p.i == p.s.len()).then_some(v)
}

/// Deeper nesting than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn space(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.space();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.space();
        match *self.s.get(self.i)? {
            b'[' => self.sequence(b']'),
            b'(' => self.sequence(b')'),
            b'{' => self.dict(),
            b'\'' | b'"' => self.string().map(Value::String),
            b'-' | b'+' | b'.' | b'0'..=b'9' => self.number(),
            _ => self.word(),
        }
    }

    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Option<Value>) -> Option<Value> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn sequence(&mut self, close: u8) -> Option<Value> {
        self.nested(|p| {
            p.i += 1;
            let mut items = Vec::new();
            loop {
                if p.eat(close) {
                    return Some(Value::Array(items));
                }
                items.push(p.value()?);
                if !p.eat(b',') {
                    return p.eat(close).then_some(Value::Array(items));
                }
            }
        })
    }

    fn dict(&mut self) -> Option<Value> {
        self.nested(|p| {
            p.i += 1;
            let mut map = Map::new();
            loop {
                if p.eat(b'}') {
                    return Some(Value::Object(map));
                }
                let key = match p.value()? {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => if b { "True" } else { "False" }.to_string(),
                    _ => return None,
                };
                if !p.eat(b':') {
                    return None;
                }
                map.insert(key, p.value()?);
                if !p.eat(b',') {
                    return p.eat(b'}').then_some(Value::Object(map));
                }
            }
        })
    }

    fn string(&mut self) -> Option<String> {
        let quote = self.s[self.i];
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.i)?;
            self.i += 1;
            match c {
                c if c == quote => return String::from_utf8(out).ok(),
                b'\n' => return None,
                b'\\' => {
                    let e = *self.s.get(self.i)?;
                    self.i += 1;
                    let simple = match e {
                        b'n' => Some(b'\n'),
                        b't' => Some(b'\t'),
                        b'r' => Some(b'\r'),
                        b'0' => Some(0),
                        b'\\' | b'\'' | b'"' => Some(e),
                        _ => None,
                    };
                    if let Some(b) = simple {
                        out.push(b);
                        continue;
                    }
                    let width = match e {
                        b'x' => 2,
                        b'u' => 4,
                        b'U' => 8,
                        _ => return None,
                    };
                    let hex = std::str::from_utf8(self.s.get(self.i..self.i + width)?).ok()?;
                    self.i += width;
                    let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c => out.push(c),
            }
        }
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.' | b'_'))
        {
            self.i += 1;
        }
        let t: String = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .replace('_', "");
        if let Ok(n) = t.parse::<i64>() {
            return Some(Value::Number(n.into()));
        }
        if t.bytes()
            .all(|c| c.is_ascii_digit() || c == b'-' || c == b'+')
        {
            // An integer too big for JSON's usual range: keep it exact as a float would not.
            return None;
        }
        let f = t.parse::<f64>().ok().filter(|f| f.is_finite())?;
        Number::from_f64(f).map(Value::Number)
    }

    fn word(&mut self) -> Option<Value> {
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            self.i += 1;
        }
        match &self.s[start..self.i] {
            b"True" => Some(Value::Bool(true)),
            b"False" => Some(Value::Bool(false)),
            b"None" => Some(Value::Null),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals() {
        assert_eq!(parse("[1, 2.5, -3]"), Some(json!([1, 2.5, -3])));
        assert_eq!(
            parse("('a', \"b\\n\", True, None)"),
            Some(json!(["a", "b\n", true, null]))
        );
        assert_eq!(
            parse("{'x': [1], 2: 'y'}"),
            Some(json!({"x": [1], "2": "y"}))
        );
        assert_eq!(parse(" [] "), Some(json!([])));
        assert_eq!(parse("'\\u00e9\\x41'"), Some(json!("éA")));
        assert_eq!(parse("0"), Some(json!(0)));
    }

    #[test]
    fn not_literals() {
        for s in [
            "abba",
            "Across the rivers",
            "[1, 2",
            "1 2",
            "'open",
            "f(1)",
            "",
            "[1,]x",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
        assert_eq!(parse(&"[".repeat(500)), None);
    }
}
