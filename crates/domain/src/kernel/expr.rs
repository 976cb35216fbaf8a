//! The small integer language of `ip.toml` kernel declarations: work
//! sizes, buffer sizes and computed scalars are [`Expr`]essions over the
//! input's size and the call's parameters, and [`Requirement`]s compare two
//! of them before anything runs. Evaluation is checked: an overflow or a
//! division by zero is an error for the caller, never a wrapped value.

use crate::Params;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An integer expression over the input's size in bytes (`input`) and
/// integer parameters: `+ - * / %`, parentheses, decimal literals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    text: String,
    node: Node,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Num(u64),
    Var(String),
    Bin(Box<Node>, char, Box<Node>),
}

impl Expr {
    pub fn parse(text: &str) -> Result<Expr, String> {
        let tokens = tokenize(text)?;
        let mut p = Parser { tokens, pos: 0 };
        let node = p.sum()?;
        if p.pos != p.tokens.len() {
            return Err(format!("'{text}': unexpected '{}'", p.tokens[p.pos]));
        }
        Ok(Expr {
            text: text.trim().to_string(),
            node,
        })
    }

    /// Names the expression reads, besides `input`.
    pub fn params(&self) -> Vec<&str> {
        fn walk<'a>(n: &'a Node, out: &mut Vec<&'a str>) {
            match n {
                Node::Num(_) => {}
                Node::Var(v) if v == "input" => {}
                Node::Var(v) => out.push(v),
                Node::Bin(a, _, b) => {
                    walk(a, out);
                    walk(b, out);
                }
            }
        }
        let mut v = Vec::new();
        walk(&self.node, &mut v);
        v
    }

    /// Evaluate for an input of `input` bytes and these parameters.
    pub fn eval(&self, input: u64, params: &Params) -> Result<u64, String> {
        fn go(n: &Node, input: u64, params: &Params, text: &str) -> Result<u64, String> {
            match n {
                Node::Num(v) => Ok(*v),
                Node::Var(v) if v == "input" => Ok(input),
                Node::Var(v) => match params.get(v) {
                    Some(x) => x.as_u64().ok_or_else(|| {
                        format!("parameter '{v}' must be a non-negative integer, got {x}")
                    }),
                    None => Err(format!("the parameter '{v}' is required")),
                },
                Node::Bin(a, op, b) => {
                    let (a, b) = (go(a, input, params, text)?, go(b, input, params, text)?);
                    let r = match op {
                        '+' => a.checked_add(b),
                        '-' => a.checked_sub(b),
                        '*' => a.checked_mul(b),
                        '/' => a.checked_div(b),
                        _ => a.checked_rem(b),
                    };
                    r.ok_or_else(|| {
                        format!("'{text}' does not evaluate ({a} {op} {b} overflows, goes below zero or divides by zero)")
                    })
                }
            }
        }
        go(&self.node, input, params, &self.text)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Expr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Expr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = toml_or_json_expr(d)?;
        Expr::parse(&v).map_err(serde::de::Error::custom)
    }
}

/// Expressions may be written as numbers too (`local = 64`).
fn toml_or_json_expr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum E {
        S(String),
        N(u64),
    }
    Ok(match E::deserialize(d)? {
        E::S(s) => s,
        E::N(n) => n.to_string(),
    })
}

/// Most tokens an expression may have. The parser, evaluation, comparison
/// and drop all recurse over the tree, whose depth grows with the tokens:
/// bounded, an `ip.toml` (up to 1 MiB) cannot overflow a server thread's
/// stack with `((((…` or `1+1+1…`. Real expressions have a few.
const MAX_TOKENS: usize = 256;

fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if out.len() == MAX_TOKENS {
            return Err(format!(
                "the expression is too long (over {MAX_TOKENS} numbers, names, operators and parentheses)"
            ));
        } else if "+-*/%()".contains(c) {
            out.push(c.to_string());
            chars.next();
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    s.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(s);
        } else {
            return Err(format!("'{text}': unexpected character '{c}'"));
        }
    }
    if out.is_empty() {
        return Err("the expression is empty".into());
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<String>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn sum(&mut self) -> Result<Node, String> {
        let mut left = self.product()?;
        while let Some(op @ ("+" | "-")) = self.peek() {
            let op = op.chars().next().unwrap_or('+');
            self.pos += 1;
            left = Node::Bin(Box::new(left), op, Box::new(self.product()?));
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Node, String> {
        let mut left = self.atom()?;
        while let Some(op @ ("*" | "/" | "%")) = self.peek() {
            let op = op.chars().next().unwrap_or('*');
            self.pos += 1;
            left = Node::Bin(Box::new(left), op, Box::new(self.atom()?));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<Node, String> {
        let t = self
            .peek()
            .ok_or("the expression ends too early")?
            .to_string();
        self.pos += 1;
        if t == "(" {
            let n = self.sum()?;
            if self.peek() != Some(")") {
                return Err("a ')' is missing".into());
            }
            self.pos += 1;
            return Ok(n);
        }
        if t.chars().all(|c| c.is_ascii_digit()) {
            return t
                .parse()
                .map(Node::Num)
                .map_err(|_| format!("{t} is too large"));
        }
        if t.starts_with(|c: char| c.is_ascii_lowercase())
            && t.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Ok(Node::Var(t));
        }
        Err(format!(
            "unexpected '{t}' (expressions use input, parameter names, numbers, + - * / % and parentheses)"
        ))
    }
}

/// A condition the call must meet before anything runs, e.g.
/// `filter < 3` or `width * height <= 67108864`: two expressions compared
/// with `<`, `<=`, `==`, `!=`, `>=` or `>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    text: String,
    left: Expr,
    op: &'static str,
    right: Expr,
}

impl Requirement {
    pub fn parse(text: &str) -> Result<Requirement, String> {
        for op in ["<=", ">=", "==", "!=", "<", ">"] {
            if let Some((l, r)) = text.split_once(op) {
                return Ok(Requirement {
                    text: text.trim().to_string(),
                    left: Expr::parse(l)?,
                    op,
                    right: Expr::parse(r)?,
                });
            }
        }
        Err(format!(
            "'{text}' compares nothing: write two expressions with <, <=, ==, !=, >= or >"
        ))
    }

    /// Whether a call on `input` bytes with these parameters meets it.
    pub fn check(&self, input: u64, params: &Params) -> Result<(), String> {
        let l = self.left.eval(input, params)?;
        let r = self.right.eval(input, params)?;
        let ok = match self.op {
            "<=" => l <= r,
            ">=" => l >= r,
            "==" => l == r,
            "!=" => l != r,
            "<" => l < r,
            _ => l > r,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "this call does not meet `{}` ({l} {} {r} is false)",
                self.text, self.op
            ))
        }
    }
}

impl Serialize for Requirement {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Requirement {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Requirement::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Found while fuzzing (issue 14): a deeply nested or very long expression
    // overflowed the stack (parsing, evaluating, comparing, dropping) and
    // aborted the process; an ip.toml may be 1 MiB.
    #[test]
    fn deep_or_long_expressions_are_refused_not_a_stack_overflow() {
        let deep = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        let long = format!("1{}", "+1".repeat(200_000));
        for text in [&deep, &long] {
            let e = Expr::parse(text).unwrap_err();
            assert!(e.contains("too long"), "{e}");
            assert!(Requirement::parse(&format!("{text} < 1")).is_err());
        }
        // Up to the limit they parse and evaluate.
        let most = format!("1{}", "+1".repeat(MAX_TOKENS / 2 - 1));
        let e = Expr::parse(&format!("{most} ")).unwrap();
        assert_eq!(e.eval(0, &Params::new()), Ok(MAX_TOKENS as u64 / 2));
        assert!(Expr::parse(&format!("{most}+1")).is_err());
        let nested = format!("{}1{}", "(".repeat(127), ")".repeat(127));
        assert_eq!(Expr::parse(&nested).unwrap().eval(0, &Params::new()), Ok(1));
    }
}
