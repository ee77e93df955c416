//! The SCIM filter parser (winnow). Errors carry the byte offset where parsing stopped
//! and what was expected there.

use winnow::ascii::{Caseless, digit1, space0, space1};
use winnow::combinator::{
    alt, cut_err, delimited, eof, opt, preceded, repeat, separated, terminated,
};
use winnow::error::{ContextError, ErrMode, StrContext, StrContextValue};
use winnow::prelude::*;
use winnow::stream::Stream;
use winnow::token::{any, one_of, take_while};

use super::{AttrPath, Filter, Op, Value};

/// Why a filter did not parse: where (byte offset), what was expected, and the text there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {offset}: expected {expected}, found {found}")]
pub struct ParseError {
    pub offset: usize,
    pub expected: String,
    /// The input from the error on (shortened), or "end of filter".
    pub found: String,
}

/// Deepest nesting of parentheses, `not` and value paths accepted (bounds recursion on
/// hostile input).
const MAX_DEPTH: usize = 64;

type Input<'a> = winnow::Stateful<&'a str, usize>;

/// Parses a whole filter.
pub fn parse(text: &str) -> Result<Filter, ParseError> {
    let input = Input {
        input: text,
        state: 0,
    };
    delimited(space0, filter, space0).parse(input).map_err(|e| {
        let offset = e.offset();
        let ctx: &ContextError = e.inner();
        let expected: Vec<String> = ctx
            .context()
            .filter_map(|c| match c {
                StrContext::Expected(v) => Some(match v {
                    StrContextValue::Description(d) => d.to_string(),
                    other => other.to_string(),
                }),
                StrContext::Label(l) => Some(l.to_string()),
                _ => None,
            })
            .collect();
        let rest = text.get(offset..).unwrap_or("");
        ParseError {
            offset,
            // Contexts nest outwards: the first is the most precise.
            expected: expected
                .into_iter()
                .next()
                .unwrap_or_else(|| "the end of the filter".into()),
            found: if rest.is_empty() {
                "the end of the filter".into()
            } else {
                format!("{:?}", rest.chars().take(24).collect::<String>())
            },
        }
    })
}

fn expected(what: &'static str) -> StrContext {
    StrContext::Expected(StrContextValue::Description(what))
}

fn filter(i: &mut Input<'_>) -> ModalResult<Filter> {
    i.state += 1;
    if i.state > MAX_DEPTH {
        return Err(cut("at most 64 levels of nesting"));
    }
    let out = or_expr(i);
    i.state -= 1;
    out
}

/// A keyword after a space (`and`, `or`), case-insensitive, followed by a space or the
/// end (so a dangling `and` is reported where its right-hand side is missing).
fn keyword<'a>(word: &'static str) -> impl Parser<Input<'a>, (), ErrMode<ContextError>> {
    (space1, Caseless(word), alt((space1.void(), eof.void()))).void()
}

fn or_expr(i: &mut Input<'_>) -> ModalResult<Filter> {
    let first = and_expr(i)?;
    let rest: Vec<Filter> =
        repeat(0.., preceded(keyword("or"), cut_err(and_expr))).parse_next(i)?;
    Ok(rest
        .into_iter()
        .fold(first, |a, b| Filter::Or(Box::new(a), Box::new(b))))
}

fn and_expr(i: &mut Input<'_>) -> ModalResult<Filter> {
    let first = unary(i)?;
    let rest: Vec<Filter> = repeat(0.., preceded(keyword("and"), cut_err(unary))).parse_next(i)?;
    Ok(rest
        .into_iter()
        .fold(first, |a, b| Filter::And(Box::new(a), Box::new(b))))
}

fn group(i: &mut Input<'_>) -> ModalResult<Filter> {
    let close = ')'.context(expected("\")\""));
    preceded(('(', space0), cut_err(terminated(filter, (space0, close)))).parse_next(i)
}

fn unary(i: &mut Input<'_>) -> ModalResult<Filter> {
    alt((
        preceded(
            (Caseless("not"), space0),
            group.context(expected("\"(\" after not")),
        )
        .map(|f| Filter::Not(Box::new(f))),
        group,
        attr_exp,
    ))
    .context(expected("an attribute, \"not\" or \"(\""))
    .parse_next(i)
}

fn attr_name<'a>(i: &mut Input<'a>) -> ModalResult<&'a str> {
    (
        one_of(|c: char| c.is_ascii_alphabetic()),
        take_while(0.., |c: char| {
            c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '$'
        }),
    )
        .take()
        .parse_next(i)
}

fn attr_path(i: &mut Input<'_>) -> ModalResult<AttrPath> {
    // A schema URI prefix runs up to the last ':' before the name (`urn:a:b:User:name`).
    let checkpoint = i.checkpoint();
    let token: &str = take_while(0.., |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '-' | '_' | '$')
    })
    .parse_next(i)?;
    let uri = match token.rfind(':') {
        Some(at) if token.len() > 4 && token[..4].eq_ignore_ascii_case("urn:") => {
            i.reset(&checkpoint);
            let prefix: &str = take_while(at..=at, |_| true).parse_next(i)?;
            ':'.parse_next(i)?;
            Some(prefix.to_string())
        }
        _ => {
            i.reset(&checkpoint);
            None
        }
    };
    let name = attr_name.parse_next(i)?;
    let sub = opt(preceded(
        '.',
        cut_err(attr_name.context(expected("a sub-attribute name"))),
    ))
    .parse_next(i)?;
    Ok(AttrPath {
        uri,
        name: name.to_string(),
        sub: sub.map(str::to_string),
    })
}

fn op(i: &mut Input<'_>) -> ModalResult<Op> {
    alt(Op::ALL.map(|op| Caseless(op.as_str()).value(op))).parse_next(i)
}

fn attr_exp(i: &mut Input<'_>) -> ModalResult<Filter> {
    let path = attr_path
        .context(expected("an attribute name"))
        .parse_next(i)?;
    if opt('[').parse_next(i)?.is_some() {
        let inner = cut_err(terminated(
            delimited(space0, filter, space0),
            ']'.context(expected("\"]\"")),
        ))
        .parse_next(i)?;
        return Ok(Filter::ValuePath(path, Box::new(inner)));
    }
    space1
        .context(expected("a space and an operator"))
        .parse_next(i)?;
    cut_err(
        alt((
            terminated(Caseless("pr"), boundary).map(|_| Filter::Present(path.clone())),
            preceded(
                (terminated(Caseless("in"), boundary), space1),
                cut_err(list.context(expected("a list of values"))),
            )
            .map(|vs| Filter::In(path.clone(), vs)),
            (
                terminated(op, boundary),
                preceded(
                    space1.context(expected("a space and a value")),
                    cut_err(value.context(expected("a value"))),
                ),
            )
                .map(|(op, v)| Filter::Compare(path.clone(), op, v)),
        ))
        .context(expected("an operator (eq ne co sw ew gt ge lt le pr in)")),
    )
    .parse_next(i)
}

/// The end of a word: not followed by a name character.
fn boundary(i: &mut Input<'_>) -> ModalResult<()> {
    winnow::combinator::not(one_of(|c: char| c.is_ascii_alphanumeric() || c == '_')).parse_next(i)
}

fn list(i: &mut Input<'_>) -> ModalResult<Vec<Value>> {
    let items = |i: &mut Input<'_>| -> ModalResult<Vec<Value>> {
        separated(1.., delimited(space0, value, space0), ',').parse_next(i)
    };
    alt((
        delimited('[', cut_err(items), cut_err(']'.context(expected("\"]\"")))),
        delimited('(', cut_err(items), cut_err(')'.context(expected("\")\"")))),
    ))
    .parse_next(i)
}

fn value(i: &mut Input<'_>) -> ModalResult<Value> {
    alt((
        string.map(Value::Str),
        number.map(Value::Num),
        terminated(Caseless("true"), boundary).value(Value::Bool(true)),
        terminated(Caseless("false"), boundary).value(Value::Bool(false)),
        terminated(Caseless("null"), boundary).value(Value::Null),
    ))
    .context(expected("a string, number, true, false or null"))
    .parse_next(i)
}

fn number(i: &mut Input<'_>) -> ModalResult<String> {
    (
        opt('-'),
        digit1,
        opt(('.', digit1)),
        opt((one_of(['e', 'E']), opt(one_of(['+', '-'])), digit1)),
    )
        .take()
        .map(str::to_string)
        .parse_next(i)
}

fn string(i: &mut Input<'_>) -> ModalResult<String> {
    '"'.parse_next(i)?;
    let mut out = String::new();
    loop {
        let c = cut_err(any.context(expected("a closing quote"))).parse_next(i)?;
        match c {
            '"' => return Ok(out),
            '\\' => {
                let e = cut_err(any.context(expected("an escape"))).parse_next(i)?;
                match e {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let hex = |i: &mut Input<'_>| -> ModalResult<u32> {
                            take_while(4, |c: char| c.is_ascii_hexdigit())
                                .try_map(|h| u32::from_str_radix(h, 16))
                                .parse_next(i)
                        };
                        let hi = cut_err(hex.context(expected("four hex digits"))).parse_next(i)?;
                        let code = if (0xD800..0xDC00).contains(&hi) {
                            let lo =
                                cut_err(preceded("\\u", hex).context(expected("a low surrogate")))
                                    .parse_next(i)?;
                            0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                        } else {
                            hi
                        };
                        match char::from_u32(code) {
                            Some(ch) => out.push(ch),
                            None => return Err(cut("a valid unicode escape")),
                        }
                    }
                    _ => {
                        return Err(cut(
                            "a valid escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
                        ));
                    }
                }
            }
            c if (c as u32) < 0x20 => return Err(cut("no control characters in a string")),
            c => {
                out.push(c);
                // Take the run of plain characters at once.
                let run: &str =
                    take_while(0.., |c: char| c != '"' && c != '\\' && (c as u32) >= 0x20)
                        .parse_next(i)?;
                out.push_str(run);
            }
        }
    }
}

/// A failure that stops the parse here, with what was expected.
fn cut(what: &'static str) -> ErrMode<ContextError> {
    let mut c = ContextError::new();
    c.push(expected(what));
    ErrMode::Cut(c)
}
