//! SCIM filters (RFC 7644 §3.4.2.2, plus PingOne's `in`): parsing into an AST, printing
//! it back, and evaluating it against attributes.
//!
//! Where it sits: the management API's `userActivities` endpoint parses its `filter`
//! parameter here and compiles the AST into a query (`reports::user_activities`). Pure
//! code: no tokio, no hyper, so it can be fuzzed (`fuzz/`) and benchmarked alone.
//!
//! Grammar, with `and` binding tighter than `or`, operators and attribute names
//! case-insensitive:
//!
//! ```text
//! filter    = or
//! or        = and *( SP "or" SP and )
//! and       = unary *( SP "and" SP unary )
//! unary     = "not" *SP "(" filter ")" / "(" filter ")" / attrExp
//! attrExp   = attrPath "[" filter "]"
//!           / attrPath SP "pr"
//!           / attrPath SP compareOp SP value
//!           / attrPath SP "in" SP ( "[" values "]" / "(" values ")" )
//! compareOp = "eq" / "ne" / "co" / "sw" / "ew" / "gt" / "ge" / "lt" / "le"
//! attrPath  = [ URI ":" ] NAME [ "." NAME ]      ; NAME = ALPHA *( ALPHA / DIGIT / "-" / "_" )
//! value     = string / number / "true" / "false" / "null"   ; JSON literals
//! ```

pub mod parse;

use std::fmt;

/// An attribute path: `[urn:...:]name[.sub]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    pub uri: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    /// Whether this path names `name` (case-insensitive, no URI, no sub-attribute).
    pub fn is(&self, name: &str) -> bool {
        self.uri.is_none() && self.sub.is_none() && self.name.eq_ignore_ascii_case(name)
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    pub const ALL: [Op; 9] = [
        Op::Eq,
        Op::Ne,
        Op::Co,
        Op::Sw,
        Op::Ew,
        Op::Gt,
        Op::Ge,
        Op::Lt,
        Op::Le,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "eq",
            Op::Ne => "ne",
            Op::Co => "co",
            Op::Sw => "sw",
            Op::Ew => "ew",
            Op::Gt => "gt",
            Op::Ge => "ge",
            Op::Lt => "lt",
            Op::Le => "le",
        }
    }
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    /// Kept as written (JSON number syntax), so printing gives it back exactly.
    Num(String),
    Bool(bool),
    Null,
}

/// A filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare(AttrPath, Op, Value),
    Present(AttrPath),
    In(AttrPath, Vec<Value>),
    /// `attr[filter]`: the filter applies to the elements of a multi-valued attribute.
    ValuePath(AttrPath, Box<Filter>),
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(uri) = &self.uri {
            write!(f, "{uri}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => {
                let quoted = serde_json::to_string(s).map_err(|_| fmt::Error)?;
                f.write_str(&quoted)
            }
            Value::Num(n) => f.write_str(n),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Null => f.write_str("null"),
        }
    }
}

/// Printed in canonical form: lower-case operators, single spaces, and parentheses only
/// where precedence needs them, so `parse(print(ast)) == ast`.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Compare(p, op, v) => write!(f, "{p} {} {v}", op.as_str()),
            Filter::Present(p) => write!(f, "{p} pr"),
            Filter::In(p, vs) => {
                write!(f, "{p} in [")?;
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Filter::ValuePath(p, inner) => write!(f, "{p}[{inner}]"),
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::And(a, b) => {
                let side = |x: &Filter, f: &mut fmt::Formatter<'_>| match x {
                    Filter::Or(..) => write!(f, "({x})"),
                    _ => write!(f, "{x}"),
                };
                side(a, f)?;
                f.write_str(" and ")?;
                // `and` is left-associative: a right-hand `and` needs its parentheses.
                match **b {
                    Filter::Or(..) | Filter::And(..) => write!(f, "({b})"),
                    _ => write!(f, "{b}"),
                }
            }
            Filter::Or(a, b) => {
                write!(f, "{a} or ")?;
                match **b {
                    Filter::Or(..) => write!(f, "({b})"),
                    _ => write!(f, "{b}"),
                }
            }
        }
    }
}

/// Attribute values a filter is evaluated against.
pub trait Resource {
    /// The value of `path` (`None`: absent).
    fn get(&self, path: &AttrPath) -> Option<Value>;
}

impl Filter {
    /// Whether `r` matches. Strings compare case-sensitively; strings that both parse as
    /// RFC 3339 date-times compare chronologically; numbers numerically.
    pub fn matches(&self, r: &dyn Resource) -> bool {
        match self {
            Filter::Compare(p, op, v) => r.get(p).is_some_and(|a| compare(&a, *op, v)),
            Filter::Present(p) => r
                .get(p)
                .is_some_and(|v| !matches!(v, Value::Null) && v != Value::Str(String::new())),
            Filter::In(p, vs) => r
                .get(p)
                .is_some_and(|a| vs.iter().any(|v| compare(&a, Op::Eq, v))),
            // Single-valued resources: the sub-filter applies to the resource itself.
            Filter::ValuePath(_, inner) => inner.matches(r),
            Filter::Not(inner) => !inner.matches(r),
            Filter::And(a, b) => a.matches(r) && b.matches(r),
            Filter::Or(a, b) => a.matches(r) || b.matches(r),
        }
    }
}

fn compare(a: &Value, op: Op, b: &Value) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Value::Str(x), Value::Str(y)) => {
            match (x.parse::<jiff::Timestamp>(), y.parse::<jiff::Timestamp>()) {
                (Ok(tx), Ok(ty)) => Some(tx.cmp(&ty)),
                _ => Some(x.as_str().cmp(y.as_str())),
            }
        }
        (Value::Num(x), Value::Num(y)) => x
            .parse::<f64>()
            .ok()
            .zip(y.parse::<f64>().ok())
            .and_then(|(x, y)| x.partial_cmp(&y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    };
    let text = |v: &Value| match v {
        Value::Str(s) => Some(s.clone()),
        _ => None,
    };
    match op {
        Op::Eq => ord == Some(Ordering::Equal),
        Op::Ne => ord != Some(Ordering::Equal),
        Op::Gt => ord == Some(Ordering::Greater),
        Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        Op::Lt => ord == Some(Ordering::Less),
        Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        Op::Co | Op::Sw | Op::Ew => match (text(a), text(b)) {
            (Some(x), Some(y)) => match op {
                Op::Co => x.contains(&y),
                Op::Sw => x.starts_with(&y),
                _ => x.ends_with(&y),
            },
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::parse::parse;
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Filter {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_seeds_filters_parse() {
        let f = p(r#"startDate gt "2019-01-01T00:00:00Z" AND EndDate lt "2019-02-31T23:59:00Z""#);
        assert_eq!(
            f.to_string(),
            r#"startDate gt "2019-01-01T00:00:00Z" and EndDate lt "2019-02-31T23:59:00Z""#
        );
        let f = p(
            r#"startDate eq "2018-02-17T09:10:12-04:00" and endDate eq "2018-02-23T09:10:12-04:00""#,
        );
        assert!(matches!(f, Filter::And(..)));
    }

    #[test]
    fn and_binds_tighter_than_or_and_parentheses_override() {
        let f = p("a pr or b pr and c pr");
        assert_eq!(f.to_string(), "a pr or b pr and c pr");
        assert!(matches!(&f, Filter::Or(_, r) if matches!(**r, Filter::And(..))));
        let g = p("(a pr or b pr) and c pr");
        assert!(matches!(&g, Filter::And(l, _) if matches!(**l, Filter::Or(..))));
        assert_eq!(g.to_string(), "(a pr or b pr) and c pr");
        let h = p("not (a eq 1) and emails[type eq \"work\" and value co \"@x\"]");
        assert_eq!(
            h.to_string(),
            "not (a eq 1) and emails[type eq \"work\" and value co \"@x\"]"
        );
    }

    #[test]
    fn every_operator_and_literal() {
        for op in Op::ALL {
            let f = p(&format!(
                "name.givenName {} \"x\"",
                op.as_str().to_uppercase()
            ));
            assert_eq!(
                f,
                Filter::Compare(
                    AttrPath {
                        uri: None,
                        name: "name".into(),
                        sub: Some("givenName".into())
                    },
                    op,
                    Value::Str("x".into())
                )
            );
        }
        assert_eq!(
            p("x in [1, \"a\", true, null]").to_string(),
            "x in [1, \"a\", true, null]"
        );
        assert_eq!(p("x IN (1,2)").to_string(), "x in [1, 2]");
        assert_eq!(p("n ge -1.5e3").to_string(), "n ge -1.5e3");
        assert_eq!(
            p(r#"s eq "q\"\\\u00e9\n""#),
            Filter::Compare(
                AttrPath {
                    uri: None,
                    name: "s".into(),
                    sub: None
                },
                Op::Eq,
                Value::Str("q\"\\é\n".into())
            )
        );
        let urn = p("urn:ietf:params:scim:schemas:core:2.0:User:userName sw \"J\"");
        assert_eq!(
            urn.to_string(),
            "urn:ietf:params:scim:schemas:core:2.0:User:userName sw \"J\""
        );
    }

    #[test]
    fn errors_name_the_position_and_what_was_expected() {
        for (text, offset, needle) in [
            ("", 0, "attribute"),
            ("startDate", 9, "operator"),
            ("startDate eq", 12, "a space"),
            ("startDate eq ", 13, "a string"),
            ("startDate zz 1", 10, "operator"),
            ("a pr and", 8, "attribute name"),
            ("a pr and ", 9, "attribute name"),
            ("a pr or", 7, "attribute name"),
            ("(a pr", 5, ")"),
            ("a eq \"open", 10, "closing quote"),
            ("a eq \"\\q\"", 8, "valid escape"),
            ("a pr b pr", 5, "the end"),
            ("not a pr", 4, "operator"),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e.offset, offset, "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
        }
        let deep = format!("{}a pr{}", "(".repeat(100), ")".repeat(100));
        assert!(parse(&deep).unwrap_err().to_string().contains("nesting"));
    }

    struct Attrs;
    impl Resource for Attrs {
        fn get(&self, path: &AttrPath) -> Option<Value> {
            match path.name.as_str() {
                "startDate" => Some(Value::Str("2018-02-17T13:10:12Z".into())),
                "n" => Some(Value::Num("5".into())),
                "empty" => Some(Value::Str(String::new())),
                _ => None,
            }
        }
    }

    #[test]
    fn evaluation_compares_dates_chronologically() {
        let yes = |s: &str| assert!(p(s).matches(&Attrs), "{s}");
        let no = |s: &str| assert!(!p(s).matches(&Attrs), "{s}");
        yes(r#"startDate eq "2018-02-17T09:10:12-04:00""#);
        yes(r#"startDate gt "2018-02-17T09:10:12Z" and n le 5"#);
        no(r#"startDate lt "2018-01-01T00:00:00Z""#);
        yes(r#"startDate sw "2018" and startDate co "T13" and startDate ew "Z""#);
        yes("n in [1, 5] and not (missing pr) and startDate pr");
        no("empty pr or missing eq 1");
    }

    fn arb_value() -> impl Strategy<Value = super::Value> {
        prop_oneof![
            "[ -~é\\n\"\\\\]{0,8}".prop_map(super::Value::Str),
            (-1000i64..1000).prop_map(|n| super::Value::Num(n.to_string())),
            any::<bool>().prop_map(super::Value::Bool),
            Just(super::Value::Null),
        ]
    }

    fn arb_path() -> impl Strategy<Value = AttrPath> {
        (
            "[a-zA-Z][a-zA-Z0-9_-]{0,6}",
            proptest::option::of("[a-z][a-zA-Z0-9]{0,4}"),
        )
            .prop_map(|(name, sub)| AttrPath {
                uri: None,
                name,
                sub,
            })
    }

    fn arb_filter() -> impl Strategy<Value = Filter> {
        let leaf = prop_oneof![
            (
                arb_path(),
                proptest::sample::select(Op::ALL.to_vec()),
                arb_value()
            )
                .prop_map(|(p, o, v)| Filter::Compare(p, o, v)),
            arb_path().prop_map(Filter::Present),
            (arb_path(), proptest::collection::vec(arb_value(), 1..4))
                .prop_map(|(p, v)| Filter::In(p, v)),
        ];
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|f| Filter::Not(Box::new(f))),
                (arb_path(), inner.clone()).prop_map(|(p, f)| Filter::ValuePath(p, Box::new(f))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            ]
        })
    }

    proptest! {
        #[test]
        fn printing_then_parsing_gives_the_same_ast(f in arb_filter()) {
            let printed = f.to_string();
            prop_assert_eq!(parse(&printed).map_err(|e| format!("{printed}: {e}")), Ok(f));
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,64}") {
            let _ = parse(&s);
        }
    }
}
