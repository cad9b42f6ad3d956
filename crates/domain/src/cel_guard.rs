//! CEL expressions compiled within limits and evaluated within a budget: the
//! one way CEL written by pack authors (validation rules) and by API callers
//! (journey criteria) becomes something that runs.
//!
//! The `cel` crate parses and evaluates by recursion over the expression: a
//! chain of a few thousand `+` overflows any thread's stack, and the process
//! aborts; nested `all()`/`exists()` over content lists multiply into minutes
//! of work. So:
//!
//! - [`compile`] first scans the text without parsing it (no recursion, string
//!   literals and comments skipped) and refuses it when it is longer than
//!   [`MAX_CHARS`] characters, nests brackets deeper than [`MAX_NESTING`], or
//!   has more than [`MAX_CHAIN`] operators in one chain. Only then does the
//!   parser see it; the parsed expression is refused when it is deeper than
//!   [`MAX_DEPTH`] or nests more than [`MAX_LOOPS`] comprehension macros
//!   (`all`, `exists`, `exists_one`, `map`, `filter`) inside one another.
//! - [`evaluate`] charges every iteration of a comprehension (the size of its
//!   body in expression nodes) to a budget of [`MAX_STEPS`], and stops the
//!   expression with [`ExprError::OverBudget`] once it is spent.
//! - Both run on a few dedicated threads with a [`STACK`]-byte stack, never on
//!   the caller's: the limits above are what make that stack enough, and the
//!   caller (an async worker, a test thread) may have a small one. At most half
//!   the machine's cores (and at most 4) run CEL at once; a caller waits at
//!   most [`WAIT`] for its turn.
//!
//! The limits are generous for hand-written expressions: the longest built-in
//! rule is 316 characters, with 7 operators and brackets 2 deep.
//!
//! ```
//! use waymark_domain::cel_guard::{compile, evaluate, ExprError};
//!
//! let rule = compile("size(content.name) < 3 && content.kind == 'brief'").unwrap();
//! let content = cel::Value::from(std::collections::HashMap::from([
//!     ("name".to_owned(), cel::Value::from("Al")),
//!     ("kind".to_owned(), cel::Value::from("brief")),
//! ]));
//! assert_eq!(evaluate(&rule, vec![("content", content)]), Ok(cel::Value::Bool(true)));
//!
//! let chain = vec!["1"; 5_000].join(" + ");
//! let e = compile(&chain).unwrap_err();
//! assert!(matches!(e, ExprError::LongChain { .. }));
//! assert_eq!(e.position(), Some((1, 259)));
//! ```

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use cel::common::ast::{CallExpr, EntryExpr, Expr, LiteralValue, SourceInfo};
use cel::common::types::CelInt;
use cel::common::value::CowVal;
use cel::parser::Parser;
use cel::{Context, Env, ExecutionError, FunctionContext, IdedExpr, Value as Cel};

/// Most characters in one expression.
pub const MAX_CHARS: usize = 4_096;
/// Most brackets (`(`, `[`, `{`, calls included) open at once.
pub const MAX_NESTING: usize = 16;
/// Most binary operators (`+`, `&&`, `==`, `in`, ...) and `?` in one chain:
/// between two commas of the same brackets.
pub const MAX_CHAIN: usize = 64;
/// Most levels of the parsed expression, from its root to its deepest leaf
/// (`a.b.c` is three levels, `a + b` two).
pub const MAX_DEPTH: usize = 100;
/// Most comprehension macros (`all`, `exists`, `exists_one`, `map`, `filter`)
/// nested in the body of one another.
pub const MAX_LOOPS: usize = 3;
/// The evaluation budget: every iteration of a comprehension costs the number
/// of expression nodes its body evaluates (`l.all(x, x > 0)` costs 8 per item).
/// Half a million steps is a few tens of milliseconds of work in an optimised
/// build: room for a loop over 50,000 items, or two nested over 200 each.
pub const MAX_STEPS: u64 = 500_000;
/// The stack of the threads CEL runs on. The worst expressions the limits let
/// through need under 4 MiB to parse and evaluate in an unoptimised build, a
/// small part of that optimised: a wide margin. Untouched stack costs nothing.
pub const STACK: usize = 32 << 20;
/// The longest a caller waits for a CEL thread to compile or evaluate its
/// expression before giving up with [`ExprError::Busy`].
pub const WAIT: Duration = Duration::from_secs(10);

/// The longest a [`batch`] may take.
pub const BATCH_WAIT: Duration = Duration::from_secs(120);

std::thread_local! {
    /// Set on the CEL threads: an evaluation asked for there (inside a
    /// [`batch`]) runs at once instead of queueing behind itself.
    static ON_CEL_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Why an expression was refused, or stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExprError {
    /// The text is empty or only blanks.
    #[error("the expression is empty")]
    Empty,
    /// Longer than [`MAX_CHARS`]; `at` is the first character over.
    #[error(
        "the expression is {chars} characters long, more than {MAX_CHARS}; split it into smaller ones"
    )]
    TooLong { chars: usize, at: (usize, usize) },
    /// A bracket opened while [`MAX_NESTING`] were already open.
    #[error(
        "brackets are nested more than {MAX_NESTING} deep; flatten the expression or split it into smaller ones"
    )]
    TooNested { at: (usize, usize) },
    /// The operator that made a chain longer than [`MAX_CHAIN`].
    #[error(
        "more than {MAX_CHAIN} operators in one chain (like a + b + c or a && b && c); split it into smaller ones"
    )]
    LongChain { at: (usize, usize) },
    /// The parsed expression is deeper than [`MAX_DEPTH`].
    #[error(
        "the expression is {depth} levels deep, more than {MAX_DEPTH}; split it into smaller ones"
    )]
    TooDeep {
        depth: usize,
        at: Option<(usize, usize)>,
    },
    /// More than [`MAX_LOOPS`] comprehension macros nested in one another.
    #[error(
        "more than {MAX_LOOPS} of all, exists, exists_one, map and filter are nested in one another; \
         nest fewer of them"
    )]
    TooManyLoops { at: Option<(usize, usize)> },
    /// Not valid CEL: the parser's first complaint.
    #[error("{message}")]
    Syntax {
        message: String,
        at: Option<(usize, usize)>,
    },
    /// The evaluation spent its [`MAX_STEPS`] and was stopped.
    #[error(
        "stopped after {MAX_STEPS} evaluation steps: the expression would take too long on this \
         content; iterate over fewer items, or nest fewer all, exists, map and filter"
    )]
    OverBudget,
    /// The expression failed while running (a missing field, a wrong type).
    #[error("{0}")]
    Runtime(ExecutionError),
    /// No CEL thread took the work within [`WAIT`].
    #[error("the expression was not run: the CEL threads are busy; try again")]
    Busy,
    /// The CEL thread running the expression failed unexpectedly.
    #[error("the expression was not run: the evaluator failed on it")]
    Crashed,
}

impl ExprError {
    /// Where in the expression (1-based line and column, in characters), when
    /// known.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            ExprError::TooLong { at, .. }
            | ExprError::TooNested { at }
            | ExprError::LongChain { at } => Some(*at),
            ExprError::TooDeep { at, .. }
            | ExprError::TooManyLoops { at }
            | ExprError::Syntax { at, .. } => *at,
            _ => None,
        }
    }

    /// Whether the expression is valid CEL refused (or stopped) only for its
    /// size or its cost.
    pub fn over_limit(&self) -> bool {
        matches!(
            self,
            ExprError::TooLong { .. }
                | ExprError::TooNested { .. }
                | ExprError::LongChain { .. }
                | ExprError::TooDeep { .. }
                | ExprError::TooManyLoops { .. }
                | ExprError::OverBudget
        )
    }

    /// The message with its position in front: `line 1, column 258: more
    /// than 64 operators ...`.
    pub fn located(&self) -> String {
        match self.position() {
            Some((line, column)) => format!("line {line}, column {column}: {self}"),
            None => self.to_string(),
        }
    }
}

/// An expression that passed every limit, ready to [`evaluate`]. Cheap to clone.
#[derive(Clone)]
pub struct Compiled {
    source: Arc<str>,
    ast: Arc<IdedExpr>,
}

impl Compiled {
    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Compiled").field(&self.source).finish()
    }
}

/// Checks `text` against the limits and parses it (see the module
/// documentation).
pub fn compile(text: &str) -> Result<Compiled, ExprError> {
    if text.trim().is_empty() {
        return Err(ExprError::Empty);
    }
    scan(text)?;
    let source: Arc<str> = Arc::from(text);
    let parsed = {
        let source = Arc::clone(&source);
        run(move || parse(&source))??
    };
    Ok(Compiled {
        source,
        ast: Arc::new(parsed),
    })
}

/// Evaluates `expr` with these variables, within [`MAX_STEPS`].
///
/// A run-time failure is [`ExprError::Runtime`]; an evaluation that spent its
/// budget is [`ExprError::OverBudget`], whatever it would have answered.
pub fn evaluate(expr: &Compiled, variables: Vec<(&'static str, Cel)>) -> Result<Cel, ExprError> {
    let ast = Arc::clone(&expr.ast);
    run(move || {
        let spent = Arc::new(AtomicU64::new(0));
        let mut context = Context::with_env(Arc::clone(env()));
        for (name, value) in variables {
            context.add_variable_from_value(name, value);
        }
        for (name, charge) in [(CHARGE_RANGE, Charge::Range), (CHARGE_STEP, Charge::Step)] {
            if context
                .add_function(name, charge.function(Arc::clone(&spent)))
                .is_err()
            {
                return Err(ExprError::Crashed);
            }
        }
        let result = Cel::resolve(&ast, &context);
        // An error in a loop body may be absorbed (`error || true` is true):
        // a spent budget is reported whatever the expression answered.
        if spent.load(Ordering::Relaxed) > MAX_STEPS {
            return Err(ExprError::OverBudget);
        }
        result.map_err(ExprError::Runtime)
    })?
}

/// JSON to CEL, for the variables of an expression: `null`, booleans and
/// strings as they are; integers that fit an `i64` are `int`, other numbers
/// `double`; arrays are lists and objects maps with string keys.
pub fn from_json(v: &serde_json::Value) -> Cel {
    use serde_json::Value;
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cel::Int(i),
            None => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::from(s.as_str()),
        Value::Array(items) => Cel::from(items.iter().map(from_json).collect::<Vec<_>>()),
        Value::Object(map) => Cel::from(
            map.iter()
                .map(|(k, v)| (k.clone(), from_json(v)))
                .collect::<std::collections::HashMap<String, Cel>>(),
        ),
    }
}

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

// ---------------------------------------------------------------------------
// The scan before parsing
// ---------------------------------------------------------------------------

/// Characters with their line and column.
struct Cursor {
    chars: Vec<char>,
    i: usize,
    line: usize,
    column: usize,
}

impl Cursor {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.i + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn at(&self) -> (usize, usize) {
        (self.line, self.column)
    }

    /// Skips a string literal starting at its opening quote.
    fn string(&mut self, raw: bool) {
        let Some(quote) = self.bump() else { return };
        let triple = self.peek(0) == Some(quote) && self.peek(1) == Some(quote);
        if triple {
            self.bump();
            self.bump();
        }
        while let Some(c) = self.bump() {
            match c {
                '\\' if !raw => {
                    self.bump();
                }
                '\n' if !triple => return,
                c if c == quote => {
                    if !triple {
                        return;
                    }
                    if self.peek(0) == Some(quote) && self.peek(1) == Some(quote) {
                        self.bump();
                        self.bump();
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// Skips a number: `12`, `0x1F`, `1.5e-3`, `7u`, `.5`.
    fn number(&mut self) {
        let digits = |c: &mut Cursor, hex: bool| {
            while c
                .peek(0)
                .is_some_and(|d| d.is_ascii_digit() || (hex && d.is_ascii_hexdigit()))
            {
                c.bump();
            }
        };
        if self.peek(0) == Some('0') && matches!(self.peek(1), Some('x' | 'X')) {
            self.bump();
            self.bump();
            digits(self, true);
        } else {
            digits(self, false);
            if self.peek(0) == Some('.') && self.peek(1).is_some_and(|d| d.is_ascii_digit()) {
                self.bump();
                digits(self, false);
            }
            let exponent = matches!(self.peek(0), Some('e' | 'E'))
                && match self.peek(1) {
                    Some('+' | '-') => self.peek(2).is_some_and(|d| d.is_ascii_digit()),
                    d => d.is_some_and(|d| d.is_ascii_digit()),
                };
            if exponent {
                self.bump();
                if matches!(self.peek(0), Some('+' | '-')) {
                    self.bump();
                }
                digits(self, false);
            }
        }
        if matches!(self.peek(0), Some('u' | 'U')) {
            self.bump();
        }
    }
}

/// Refuses, without parsing, text over [`MAX_CHARS`], [`MAX_NESTING`] or
/// [`MAX_CHAIN`], at the first character over the limit. Runs in one pass
/// with no recursion, whatever the text.
fn scan(text: &str) -> Result<(), ExprError> {
    let mut cur = Cursor {
        chars: text.chars().take(MAX_CHARS + 1).collect(),
        i: 0,
        line: 1,
        column: 1,
    };
    // Operators counted in the current chain of each open bracket (the first
    // entry is the text outside any).
    let mut chains: Vec<usize> = vec![0];
    // Whether the last token ends an operand: then `-` is binary, not a sign.
    let mut after_operand = false;
    while let Some(c) = cur.peek(0) {
        if cur.i >= MAX_CHARS {
            return Err(ExprError::TooLong {
                chars: text.chars().count(),
                at: cur.at(),
            });
        }
        let at = cur.at();
        let two = (c, cur.peek(1).unwrap_or(' '));
        let operator = match two {
            ('&', '&') | ('|', '|') | ('=', '=') | ('!', '=') | ('<', '=') | ('>', '=') => {
                cur.bump();
                cur.bump();
                true
            }
            ('<' | '>' | '+' | '*' | '%' | '?', _) => {
                cur.bump();
                true
            }
            ('/', '/') => {
                while cur.peek(0).is_some_and(|c| c != '\n') {
                    cur.bump();
                }
                continue;
            }
            ('/', _) => {
                cur.bump();
                true
            }
            ('-', _) => {
                cur.bump();
                after_operand
            }
            _ => false,
        };
        if operator {
            count(&mut chains, at)?;
            after_operand = false;
            continue;
        }
        if matches!(two.0, '-') {
            // A sign.
            continue;
        }
        match c {
            c if c.is_whitespace() => {
                cur.bump();
            }
            '"' | '\'' => {
                cur.string(false);
                after_operand = true;
            }
            '`' => {
                cur.bump();
                while cur.peek(0).is_some_and(|c| c != '`' && c != '\n') {
                    cur.bump();
                }
                cur.bump();
                after_operand = true;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = cur.i;
                while cur
                    .peek(0)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    cur.bump();
                }
                let word: String = cur.chars[start..cur.i].iter().collect();
                let prefix = word.len() <= 2 && word.chars().all(|c| "rRbB".contains(c));
                if prefix && matches!(cur.peek(0), Some('"' | '\'')) {
                    cur.string(word.contains(['r', 'R']));
                    after_operand = true;
                } else if word == "in" {
                    count(&mut chains, at)?;
                    after_operand = false;
                } else {
                    after_operand = true;
                }
            }
            c if c.is_ascii_digit() => {
                cur.number();
                after_operand = true;
            }
            '.' if !after_operand && cur.peek(1).is_some_and(|d| d.is_ascii_digit()) => {
                cur.number();
                after_operand = true;
            }
            '(' | '[' | '{' => {
                if chains.len() > MAX_NESTING {
                    return Err(ExprError::TooNested { at });
                }
                chains.push(0);
                cur.bump();
                after_operand = false;
            }
            ')' | ']' | '}' => {
                if chains.len() > 1 {
                    chains.pop();
                }
                cur.bump();
                after_operand = true;
            }
            ',' => {
                if let Some(chain) = chains.last_mut() {
                    *chain = 0;
                }
                cur.bump();
                after_operand = false;
            }
            _ => {
                // `.`, `:`, `!` and anything the parser will refuse.
                cur.bump();
                after_operand = false;
            }
        }
    }
    if cur.chars.len() > MAX_CHARS {
        // A string literal ran over the limit.
        let mut at = (1, 1);
        for c in &cur.chars[..MAX_CHARS] {
            at = if *c == '\n' {
                (at.0 + 1, 1)
            } else {
                (at.0, at.1 + 1)
            };
        }
        return Err(ExprError::TooLong {
            chars: text.chars().count(),
            at,
        });
    }
    Ok(())
}

/// Counts one more operator in the innermost chain.
fn count(chains: &mut [usize], at: (usize, usize)) -> Result<(), ExprError> {
    if let Some(chain) = chains.last_mut() {
        *chain += 1;
        if *chain > MAX_CHAIN {
            return Err(ExprError::LongChain { at });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Parsing, the checks of the parsed expression, and the budget
// ---------------------------------------------------------------------------

/// The function wrapped around the range of a comprehension that runs over
/// all of it (`map`, `filter`, `exists_one`): charges the range's size times
/// the cost of one iteration before the loop starts. Names starting with `@`
/// cannot be written in CEL, so an expression can neither call nor replace it.
const CHARGE_RANGE: &str = "@charge_range";
/// The function wrapped around the loop condition of a comprehension that may
/// stop early (`all`, `exists`): charges one iteration each time it is checked.
const CHARGE_STEP: &str = "@charge_step";

/// Parses `source`, which passed [`scan`], and checks and instruments the
/// result. Runs on a CEL thread.
fn parse(source: &str) -> Result<IdedExpr, ExprError> {
    let (mut ast, info) =
        Parser::new()
            .parse_with_source_info(source)
            .map_err(|e| match e.errors.first() {
                Some(first) => ExprError::Syntax {
                    message: first.msg.clone(),
                    at: usize::try_from(first.pos.0)
                        .ok()
                        .zip(usize::try_from(first.pos.1).ok())
                        .filter(|&(line, column)| line > 0 && column > 0),
                },
                None => ExprError::Syntax {
                    message: e.to_string(),
                    at: None,
                },
            })?;
    check_shape(&ast, &info)?;
    let mut next_id = max_id(&ast) + 1;
    instrument(&mut ast, &mut next_id);
    Ok(ast)
}

/// The children of a node, each with whether it runs once per iteration of
/// the node (the condition and step of a comprehension).
fn children(expr: &Expr) -> Vec<(&IdedExpr, bool)> {
    match expr {
        Expr::Call(call) => call
            .target
            .iter()
            .map(|t| &**t)
            .chain(&call.args)
            .map(|e| (e, false))
            .collect(),
        Expr::Comprehension(c) => vec![
            (&c.iter_range, false),
            (&c.accu_init, false),
            (&c.loop_cond, true),
            (&c.loop_step, true),
            (&c.result, false),
        ],
        Expr::List(list) => list.elements.iter().map(|e| (e, false)).collect(),
        Expr::Map(map) => entries(&map.entries),
        Expr::Struct(s) => entries(&s.entries),
        Expr::Select(select) => vec![(&*select.operand, false)],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => vec![],
    }
}

fn entries(entries: &[cel::common::ast::IdedEntryExpr]) -> Vec<(&IdedExpr, bool)> {
    entries
        .iter()
        .flat_map(|entry| match &entry.expr {
            EntryExpr::MapEntry(e) => vec![(&e.key, false), (&e.value, false)],
            EntryExpr::StructField(f) => vec![(&f.value, false)],
        })
        .collect()
}

/// Refuses an expression deeper than [`MAX_DEPTH`] or with more than
/// [`MAX_LOOPS`] nested comprehensions. Walks with its own stack: the tree
/// may be deep.
fn check_shape(root: &IdedExpr, info: &SourceInfo) -> Result<(), ExprError> {
    let mut deepest = 0;
    let mut first_too_deep = None;
    // (node, depth, comprehensions whose body holds it)
    let mut stack = vec![(root, 1usize, 0usize)];
    while let Some((node, depth, loops)) = stack.pop() {
        deepest = deepest.max(depth);
        if depth == MAX_DEPTH + 1 && first_too_deep.is_none() {
            first_too_deep = Some(node.id);
        }
        if matches!(node.expr, Expr::Comprehension(_)) && loops + 1 > MAX_LOOPS {
            return Err(ExprError::TooManyLoops {
                at: position_of(info, node.id),
            });
        }
        for (child, per_iteration) in children(&node.expr) {
            stack.push((child, depth + 1, loops + usize::from(per_iteration)));
        }
    }
    match first_too_deep {
        Some(id) => Err(ExprError::TooDeep {
            depth: deepest,
            at: position_of(info, id),
        }),
        None => Ok(()),
    }
}

/// The 1-based line and column where node `id` starts.
fn position_of(info: &SourceInfo, id: u64) -> Option<(usize, usize)> {
    let (start, _) = info.offset_for(id)?;
    let mut line = 1;
    let mut column = 1;
    for (i, c) in info.source.chars().enumerate() {
        if i == start as usize {
            return Some((line, column));
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    None
}

fn max_id(root: &IdedExpr) -> u64 {
    let mut max = root.id;
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        max = max.max(node.id);
        stack.extend(children(&node.expr).into_iter().map(|(c, _)| c));
    }
    max
}

fn size(root: &IdedExpr) -> u64 {
    let mut n = 0;
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        n += 1;
        stack.extend(children(&node.expr).into_iter().map(|(c, _)| c));
    }
    n
}

/// Wraps every comprehension so that it charges the budget: its range in
/// [`CHARGE_RANGE`] when it always runs to the end (a literal condition),
/// its condition in [`CHARGE_STEP`] otherwise. The expression is at most
/// [`MAX_DEPTH`] deep here.
fn instrument(node: &mut IdedExpr, next_id: &mut u64) {
    if let Expr::Comprehension(c) = &mut node.expr {
        let cost = 1 + size(&c.loop_cond) + size(&c.loop_step);
        let (slot, function) = if matches!(c.loop_cond.expr, Expr::Literal(_)) {
            (&mut c.iter_range, CHARGE_RANGE)
        } else {
            (&mut c.loop_cond, CHARGE_STEP)
        };
        let inner = std::mem::take(slot);
        let cost = IdedExpr {
            id: take_id(next_id),
            expr: Expr::Literal(LiteralValue::Int(
                i64::try_from(cost).unwrap_or(i64::MAX).into(),
            )),
        };
        *slot = IdedExpr {
            id: take_id(next_id),
            expr: Expr::Call(CallExpr {
                func_name: function.to_owned(),
                target: None,
                args: vec![inner, cost],
            }),
        };
    }
    match &mut node.expr {
        Expr::Call(call) => {
            if let Some(t) = &mut call.target {
                instrument(t, next_id);
            }
            for a in &mut call.args {
                instrument(a, next_id);
            }
        }
        Expr::Comprehension(c) => {
            for e in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                instrument(e, next_id);
            }
        }
        Expr::List(list) => {
            for e in &mut list.elements {
                instrument(e, next_id);
            }
        }
        Expr::Map(cel::common::ast::MapExpr { entries })
        | Expr::Struct(cel::common::ast::StructExpr { entries, .. }) => {
            for entry in entries {
                match &mut entry.expr {
                    EntryExpr::MapEntry(e) => {
                        instrument(&mut e.key, next_id);
                        instrument(&mut e.value, next_id);
                    }
                    EntryExpr::StructField(f) => instrument(&mut f.value, next_id),
                }
            }
        }
        Expr::Select(select) => instrument(&mut select.operand, next_id),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn take_id(next: &mut u64) -> u64 {
    let id = *next;
    *next += 1;
    id
}

/// The two charging functions: each takes the wrapped value and the cost of
/// one iteration, charges, and answers the value unchanged.
#[derive(Clone, Copy)]
enum Charge {
    Range,
    Step,
}

/// A function as the `cel` crate calls it.
type Native = Box<
    dyn for<'context, 'call> Fn(
            &mut FunctionContext<'context, 'call>,
        ) -> Result<CowVal<'context, 'call>, ExecutionError>
        + Send
        + Sync,
>;

impl Charge {
    fn function(self, spent: Arc<AtomicU64>) -> Native {
        Box::new(move |ftx| {
            let mut args = std::mem::take(&mut ftx.args);
            let (Some(cost), Some(value)) = (args.pop(), args.pop()) else {
                return Err(ExecutionError::invalid_argument_count(2, 0));
            };
            let cost = cost
                .downcast_ref::<CelInt>()
                .map_or(1, |c| u64::try_from(*c.inner()).unwrap_or(1));
            let iterations = match self {
                Charge::Step => 1,
                Charge::Range => value
                    .as_sizer()
                    .map_or(1, |s| u64::try_from(*s.size().inner()).unwrap_or(1)),
            };
            let amount = iterations.saturating_mul(cost).min(MAX_STEPS + 1);
            let total = spent.fetch_add(amount, Ordering::Relaxed) + amount;
            if total > MAX_STEPS {
                // Keep it over for the rest of the run.
                spent.store(MAX_STEPS + 1, Ordering::Relaxed);
                return Err(ExecutionError::function_error(
                    "budget",
                    ExprError::OverBudget,
                ));
            }
            Ok(value)
        })
    }
}

// ---------------------------------------------------------------------------
// The CEL threads
// ---------------------------------------------------------------------------

type Job = Box<dyn FnOnce() + Send>;

/// How many CEL threads: half the cores, between 1 and 4.
fn thread_count() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get().div_ceil(2))
        .clamp(1, 4)
}

/// The queue of the CEL threads, started on first use; `None` when not one
/// could be started.
fn queue() -> Option<&'static mpsc::Sender<Job>> {
    static QUEUE: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (send, receive) = mpsc::channel::<Job>();
            let receive = Arc::new(Mutex::new(receive));
            let mut started = 0;
            for i in 0..thread_count() {
                let receive = Arc::clone(&receive);
                let spawned = std::thread::Builder::new()
                    .name(format!("cel-{i}"))
                    .stack_size(STACK)
                    .spawn(move || {
                        ON_CEL_THREAD.set(true);
                        loop {
                            let job = receive
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .recv();
                            let Ok(job) = job else { return };
                            // A panic drops the job's reply: its caller gets
                            // `Crashed`, and the thread goes on.
                            let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                        }
                    });
                started += usize::from(spawned.is_ok());
            }
            (started > 0).then_some(send)
        })
        .as_ref()
}

/// Runs `work` on one CEL thread, waiting at most [`BATCH_WAIT`]: every
/// [`evaluate`] (and [`compile`]) it makes runs there at once, each isolated
/// from the others' panics, instead of crossing threads. For many evaluations
/// in a row (a rules run over thousands of clients); call it off the async
/// workers, since it blocks until `work` is done.
pub fn batch<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Result<R, ExprError> {
    run_within(work, BATCH_WAIT)
}

/// Runs `work` on a CEL thread and waits (at most [`WAIT`]) for its answer;
/// on a CEL thread already (inside a [`batch`]), runs it there.
fn run<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Result<R, ExprError> {
    if ON_CEL_THREAD.get() {
        return std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(|_| ExprError::Crashed);
    }
    run_within(work, WAIT)
}

fn run_within<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
    wait: Duration,
) -> Result<R, ExprError> {
    let queue = queue().ok_or(ExprError::Busy)?;
    let (reply, answer) = mpsc::sync_channel(1);
    let deadline = Instant::now() + wait;
    let job: Job = Box::new(move || {
        // The caller has stopped waiting: the work would be thrown away.
        if Instant::now() < deadline {
            let _ = reply.send(work());
        }
    });
    queue.send(job).map_err(|_| ExprError::Busy)?;
    answer.recv_timeout(wait).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => ExprError::Busy,
        mpsc::RecvTimeoutError::Disconnected => ExprError::Crashed,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn a_batch_evaluates_in_place_with_the_same_answers_and_limits() {
        let expr = compile("x * 2 > 10").unwrap();
        let alone: Vec<bool> = (0..20)
            .map(|x| evaluate(&expr, vec![("x", Cel::Int(x))]).unwrap() == Cel::Bool(true))
            .collect();
        let together = batch(move || {
            (0..20)
                .map(|x| evaluate(&expr, vec![("x", Cel::Int(x))]).unwrap() == Cel::Bool(true))
                .collect::<Vec<bool>>()
        })
        .unwrap();
        assert_eq!(alone, together);
        // The budget holds inside a batch too.
        let heavy = compile("l.all(a, l.all(b, l.all(c, true)))").unwrap();
        let spent = batch(move || evaluate(&heavy, vec![("l", list(200))])).unwrap();
        assert!(matches!(spent, Err(ExprError::OverBudget)), "{spent:?}");
    }

    fn list(n: i64) -> Cel {
        Cel::from((0..n).collect::<Vec<i64>>())
    }

    fn chain(op: &str, terms: usize) -> String {
        vec!["a"; terms].join(&format!(" {op} "))
    }

    #[test]
    fn long_chains_are_refused_before_parsing_at_the_operator_over_the_limit() {
        for op in ["+", "&&", "==", "in", "?"] {
            let text = chain(op, 5_000);
            let e = compile(&text).unwrap_err();
            assert!(matches!(e, ExprError::LongChain { .. }), "{op}: {e:?}");
            // The 65th operator: after 65 terms, 64 operators and their blanks.
            assert_eq!(
                e.position(),
                Some((1, 65 + 64 * (op.len() + 2) + 2)),
                "{op}"
            );
            assert!(e.to_string().contains("more than 64 operators"), "{e}");
            assert!(e.to_string().contains("split it"), "{e}");
        }
        // Exactly at the limit, the chain passes the scan.
        assert!(compile(&chain("&&", MAX_CHAIN + 1)).is_ok());
        assert!(matches!(
            compile(&chain("&&", MAX_CHAIN + 2)),
            Err(ExprError::LongChain { .. })
        ));
        // Commas start a new chain; brackets hold their own.
        let args = format!("f({}, {})", chain("&&", 60), chain("&&", 60));
        assert!(compile(&args).is_ok());
        let nested = format!("{} && ({})", chain("&&", 60), chain("&&", 60));
        assert!(compile(&nested).is_ok());
    }

    #[test]
    fn the_scan_skips_strings_comments_and_numbers() {
        let plus = "+ ".repeat(500);
        for text in [
            format!("'{plus}' == a"),
            format!("\"{plus}\" == a"),
            format!("r'{plus}' == a"),
            format!("b\"{plus}\" == a"),
            format!("'''{plus}\n{plus}''' == a"),
            format!("'\\'{plus}' == a"),
            format!("a // {plus}\n == 1"),
        ] {
            assert!(compile(&text).is_ok(), "{text}");
        }
        // Exponents and signs are not operators.
        let signs = vec!["-1e-5"; 60].join(" + ");
        assert!(compile(&signs).is_ok());
        let negatives = format!("{} > 0", vec!["- -a"; 60].join(" * "));
        assert!(compile(&negatives).is_ok());
        // Brackets inside strings do not nest.
        assert!(compile(&format!("'{}' == a", "(".repeat(100))).is_ok());
    }

    #[test]
    fn deep_brackets_long_texts_and_deep_trees_are_refused() {
        let nested = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
        assert!(compile(&nested(MAX_NESTING)).is_ok());
        let e = compile(&nested(MAX_NESTING + 1)).unwrap_err();
        assert_eq!(e, ExprError::TooNested { at: (1, 17) });
        let e = compile(&format!("{}1", "[".repeat(10_000))).unwrap_err();
        assert!(matches!(e, ExprError::TooNested { .. }), "{e:?}");

        let long = format!("a == '{}'", "x".repeat(MAX_CHARS));
        let e = compile(&long).unwrap_err();
        assert_eq!(
            e,
            ExprError::TooLong {
                chars: MAX_CHARS + 7,
                at: (1, MAX_CHARS + 1)
            }
        );
        assert!(e.to_string().contains("4096"), "{e}");
        assert!(compile(&format!("a == '{}'", "x".repeat(MAX_CHARS - 7))).is_ok());

        // A path is not an operator chain, but it is a deep tree.
        let path = format!("a{}", ".b".repeat(MAX_DEPTH));
        let e = compile(&path).unwrap_err();
        assert!(matches!(e, ExprError::TooDeep { depth, .. } if depth == MAX_DEPTH + 1));
        assert!(compile(&format!("a{}", ".b".repeat(MAX_DEPTH - 1))).is_ok());
        // A member call chain too.
        let calls = format!("a{}", ".f()".repeat(MAX_DEPTH + 5));
        assert!(matches!(compile(&calls), Err(ExprError::TooDeep { .. })));
    }

    /// What the scan lets through to the parser, at its worst, fits the
    /// stack of the CEL threads (in this unoptimised build too): the process
    /// survives, and the deep trees are refused after parsing.
    #[test]
    fn the_worst_shapes_the_scan_lets_through_fit_the_stack() {
        let open = |n: usize, with: &str| with.repeat(n);
        let close = |n: usize| ")".repeat(n);
        let room = |used: usize| (MAX_CHARS - used) / 4;
        let shapes = [
            // Brackets at the limit around the longest path that fits.
            format!("{}a{}{}", open(15, "("), ".bc".repeat(room(40)), close(15)),
            format!("{}a{}{}", open(15, "f("), "[0]".repeat(room(60)), close(15)),
            format!("{}a{}{}", open(15, "("), ".f()".repeat(room(40)), close(15)),
            // Conditionals at the limit of a chain, in every bracket.
            format!(
                "{}1{}",
                open(15, "(a ? 1 : a ? 1 : a ? 1 : a ? 1 : "),
                close(15)
            ),
            format!("{}1", "a ? 1 : ".repeat(MAX_CHAIN)),
            // Signs and negations are not operators of a chain.
            format!("{}a", "-".repeat(MAX_CHARS - 1)),
            format!("{}a", "!".repeat(MAX_CHARS - 1)),
            format!("{}a", "- ".repeat(room(0) * 2 - 1)),
        ];
        for text in shapes {
            assert!(text.chars().count() <= MAX_CHARS, "{}", text.len());
            let result = compile(&text);
            if let Ok(expr) = result {
                let _ = evaluate(&expr, vec![("a", Cel::Bool(true))]);
            }
        }
        let path = format!("{}a{}{}", open(15, "("), ".bc".repeat(room(40)), close(15));
        assert!(matches!(compile(&path), Err(ExprError::TooDeep { .. })));
    }

    #[test]
    fn comprehensions_nest_at_most_three_deep() {
        let three = "l.all(a, l.exists(b, l.map(c, c + a + b).size() > 0))";
        assert!(compile(three).is_ok());
        let four = "l.all(a, l.exists(b, l.map(c, l.filter(d, d > c)).size() > 0))";
        let e = compile(four).unwrap_err();
        assert!(matches!(e, ExprError::TooManyLoops { .. }), "{e:?}");
        assert!(e.over_limit());
        // Chained, not nested: each range is evaluated once.
        let chained = "l.map(a, a).filter(b, b > 0).map(c, c).filter(d, d > 1).size() > 0";
        assert!(compile(chained).is_ok());
    }

    #[test]
    fn syntax_errors_say_where() {
        let e = compile("content.a ==").unwrap_err();
        assert!(matches!(e, ExprError::Syntax { .. }), "{e:?}");
        assert!(!e.over_limit());
        assert!(e.located().starts_with("line 1, column"), "{}", e.located());
        let e = compile("a &&\n  b ==").unwrap_err();
        assert_eq!(e.position().map(|p| p.0), Some(2), "{e:?}");
        assert_eq!(compile("  ").unwrap_err(), ExprError::Empty);
    }

    /// An expression at the limits: 15 brackets deep, three nested
    /// comprehensions, a chain of 60 operators, and `tail` more levels of
    /// tree on top of that chain.
    fn at_the_limits(tail: usize) -> String {
        let mut text = "l.all(a, l.exists(b, l.map(c, c + a + b).size() >= 0))".to_owned();
        for _ in 0..MAX_NESTING - 4 {
            text = format!("({text} || f || f || f)");
        }
        let sum = vec!["1"; 61].join(" + ");
        let tail = " + 1".repeat(tail);
        format!("{text} && (({sum}){tail}) > 0")
    }

    #[test]
    fn an_expression_just_under_the_limits_runs_on_a_small_stack() {
        // 38 more levels make the tree 101 deep: one too many.
        assert!(matches!(
            compile(&at_the_limits(38)),
            Err(ExprError::TooDeep { depth: 101, .. })
        ));
        let text = at_the_limits(37);
        assert!(text.chars().count() <= MAX_CHARS);
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || {
                let expr = compile(&text)?;
                evaluate(&expr, vec![("l", list(5)), ("f", Cel::Bool(false))])
            })
            .unwrap();
        assert_eq!(handle.join().unwrap(), Ok(Cel::Bool(true)));
    }

    #[test]
    fn the_budget_stops_nested_loops_over_large_lists() {
        let expr = compile("l.all(x, l.all(y, l.all(z, x + y + z >= 0)))").unwrap();
        assert_eq!(
            evaluate(&expr, vec![("l", list(300))]),
            Err(ExprError::OverBudget)
        );
        // Small lists go through.
        assert_eq!(evaluate(&expr, vec![("l", list(20))]), Ok(Cel::Bool(true)));
        // An exhausted budget is reported even where the error is absorbed.
        let absorbed = compile("l.all(x, l.all(y, l.all(z, x + y + z >= 0))) || true").unwrap();
        assert_eq!(
            evaluate(&absorbed, vec![("l", list(300))]),
            Err(ExprError::OverBudget)
        );
        let e = ExprError::OverBudget.to_string();
        assert!(e.contains("too long"), "{e}");
        // `map` over everything is charged up front.
        let map = compile("l.map(x, l.map(y, x * y)).size() > 0").unwrap();
        assert_eq!(
            evaluate(&map, vec![("l", list(2_000))]),
            Err(ExprError::OverBudget)
        );
    }

    #[test]
    fn loops_that_stop_early_are_charged_what_they_run() {
        // 100,000 items would cost 900,000 steps in full; the first decides.
        let expr = compile("l.exists(x, x == 0) && !l.all(x, x > 0)").unwrap();
        assert_eq!(
            evaluate(&expr, vec![("l", list(100_000))]),
            Ok(Cel::Bool(true))
        );
    }

    #[test]
    fn run_time_errors_come_back_as_they_are() {
        let expr = compile("content.missing == 1").unwrap();
        let content = Cel::from(HashMap::from([("a".to_owned(), Cel::Int(1))]));
        let e = evaluate(&expr, vec![("content", content)]).unwrap_err();
        assert!(
            matches!(&e, ExprError::Runtime(ExecutionError::NoSuchKey(k)) if k.as_str() == "missing"),
            "{e:?}"
        );
        assert!(!e.over_limit());
        let expr = compile("nothing > 1").unwrap();
        assert!(matches!(
            evaluate(&expr, vec![]),
            Err(ExprError::Runtime(_))
        ));
        // The charging functions are out of reach of the expression.
        assert!(compile("@charge_step(true, 1)").is_err());
    }

    #[test]
    fn compiled_expressions_cross_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Compiled>();
        shared::<ExprError>();
    }
}
