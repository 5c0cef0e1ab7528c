//! What the detectors ask of expressions and statements: block values, arithmetic, calls
//! out, conditions, taint, and where an expression starts.

use super::*;

pub(super) fn is_block_value(e: &Expression) -> bool {
    is_member(e, "block", "timestamp")
        || is_member(e, "block", "number")
        || is_member(e, "block", "difficulty")
        || is_member(e, "block", "prevrandao")
        || is_member(e, "block", "coinbase")
        || matches!(e, Expression::Variable(v) if v.name == "now")
        || matches!(called_name(e), Some("blockhash"))
        || matches!(called_member(e), Some(("blockhash", r)) if matches!(r, Expression::Variable(v) if v.name == "block"))
}

pub(super) fn is_arith(e: &Expression) -> bool {
    matches!(
        e,
        Expression::Add(..) | Expression::Subtract(..) | Expression::Multiply(..)
    )
}

/// Amounts the function sends as ether: the contract's balance bounds them, so adding them up
/// cannot overflow (subtracting them can still underflow).
pub(super) fn sent_amounts(body: &Statement) -> Vec<String> {
    let mut out = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::FunctionCall(_, callee, args) = e
            && let (Expression::MemberAccess(_, _, m), [amount]) =
                (callee.as_ref(), args.as_slice())
            && matches!(m.name.as_str(), "transfer" | "send" | "value")
        {
            out.extend(root_name(amount).map(str::to_string));
        }
    });
    out
}

/// Names whose values any caller chooses, unbounded: the parameters of a function anyone can
/// call (an owner-only or internal function's inputs are trusted) and the locals computed from
/// them (in source order), less those the function bounds — an upper bound in a comparison
/// (`require(v <= limit)`, `require(balance >= v)`), a local checked after its arithmetic
/// (`c = a * b; assert(c / a == b)`).
pub(super) fn tainted_names(f: &Function, body: &Statement) -> Vec<String> {
    if !f.exposed || guarded(f, body) {
        return Vec::new();
    }
    let mut names = f.params.clone();
    walk_stmt(body, &mut |st| {
        if let Statement::VariableDefinition(_, decl, Some(init)) = st
            && let Some(n) = &decl.name
            && carries(init, &names)
        {
            names.push(n.name.clone());
        }
    });
    let mut safe: Vec<String> = Vec::new();
    walk_stmt_exprs(body, &mut |e| match e {
        Expression::Less(_, small, _)
        | Expression::LessEqual(_, small, _)
        | Expression::More(_, _, small)
        | Expression::MoreEqual(_, _, small) => {
            safe.extend(root_name(small).map(str::to_string));
        }
        Expression::Equal(_, a, b) => {
            for side in [a, b] {
                walk_expr(side, &mut |x| {
                    if let Expression::Variable(v) = x
                        && !f.params.contains(&v.name)
                    {
                        safe.push(v.name.clone());
                    }
                });
            }
        }
        _ => {}
    });
    names.retain(|n| !safe.contains(n));
    names
}

/// Whether the value of `e` comes from one of `names`: the name itself, arithmetic, casts and
/// conditionals over it, or a member or element *of* it (an index into another array does not
/// make the element the caller's).
pub(super) fn carries(e: &Expression, names: &[String]) -> bool {
    match e {
        Expression::Variable(v) => names.contains(&v.name),
        Expression::Add(_, a, b)
        | Expression::Subtract(_, a, b)
        | Expression::Multiply(_, a, b)
        | Expression::Divide(_, a, b)
        | Expression::Modulo(_, a, b)
        | Expression::Power(_, a, b)
        | Expression::ShiftLeft(_, a, b)
        | Expression::ConditionalOperator(_, _, a, b) => carries(a, names) || carries(b, names),
        Expression::Parenthesis(_, a)
        | Expression::ArraySubscript(_, a, _)
        | Expression::MemberAccess(_, a, _) => carries(a, names),
        // A type conversion `uint256(x)` keeps the value.
        Expression::FunctionCall(_, callee, args)
            if matches!(callee.as_ref(), Expression::Type(..)) =>
        {
            args.iter().any(|a| carries(a, names))
        }
        _ => false,
    }
}

/// An arithmetic expression with an operand the caller chooses (what a caller can push to wrap).
pub(super) fn risky_arith(tainted: &[String], e: &Expression) -> bool {
    let (Expression::Add(_, a, b) | Expression::Subtract(_, a, b) | Expression::Multiply(_, a, b)) =
        e
    else {
        return false;
    };
    let input = |x: &Expression| carries(x, tainted);
    // Constants and msg.value on one side of an addition do not wrap in practice.
    let small = |x: &Expression| {
        matches!(
            x,
            Expression::NumberLiteral(..) | Expression::HexNumberLiteral(..)
        ) || is_member(x, "msg", "value")
            || is_time(x)
    };
    match e {
        Expression::Add(..) => (input(a) || input(b)) && !small(a) && !small(b),
        _ => input(a) || input(b),
    }
}

pub(super) fn is_time(e: &Expression) -> bool {
    is_member(e, "block", "timestamp") || matches!(e, Expression::Variable(v) if v.name == "now")
}

pub(super) fn contains(e: &Expression, pred: &dyn Fn(&Expression) -> bool) -> bool {
    let mut found = false;
    walk_expr(e, &mut |x| found |= pred(x));
    found
}

/// `blockhash(n)` or `block.blockhash(n)`.
pub(super) fn is_block_hash(e: &Expression) -> bool {
    matches!(called_name(e), Some("blockhash"))
        || matches!(called_member(e), Some(("blockhash", r)) if matches!(r, Expression::Variable(v) if v.name == "block"))
}

pub(super) const LOW_LEVEL: &[&str] = &["call", "send", "delegatecall", "callcode"];

/// A call that hands control to another contract (and can send value). `x.call.value(v)` alone
/// only sets the value: the call is the `(…)` after it.
pub(super) fn external_call(e: &Expression) -> Option<&'static str> {
    if let Expression::FunctionCall(_, callee, _) = e
        && matches!(callee.as_ref(), Expression::MemberAccess(_, _, m) if m.name == "value" || m.name == "gas")
    {
        return None;
    }
    match called_member(e) {
        Some(("call", _)) => Some("call"),
        Some(("delegatecall", _)) => Some("delegatecall"),
        Some(("callcode", _)) => Some("callcode"),
        _ => None,
    }
}

/// Whether `body` makes an external call itself.
pub(super) fn calls_out(body: &Statement) -> bool {
    let mut found = false;
    walk_stmt_exprs(body, &mut |e| found |= external_call(e).is_some());
    found
}

pub(super) fn expr_loc(e: &Expression) -> Loc {
    use solang_parser::pt::CodeLocation;
    e.loc()
}

/// The conditions a statement tests: an `if`'s, a `require`/`assert`'s first argument.
pub(super) fn tested(s: &Statement) -> Option<&Expression> {
    match s {
        Statement::If(_, cond, _, _) => Some(cond),
        Statement::Expression(_, e) => condition_of(e),
        _ => None,
    }
}

/// The condition of a `require(...)`/`assert(...)` call.
pub(super) fn condition_of(e: &Expression) -> Option<&Expression> {
    match e {
        Expression::FunctionCall(_, callee, args) if matches!(callee.as_ref(), Expression::Variable(v) if v.name == "require" || v.name == "assert") => {
            args.first()
        }
        _ => None,
    }
}

/// `a` in `a.length`, when `a` is a state array.
pub(super) fn length_of<'e>(c: &Contract, x: &'e Expression) -> Option<&'e str> {
    match x {
        Expression::MemberAccess(_, arr, m) if m.name == "length" => {
            root_name(arr).filter(|n| c.state_arrays.contains(*n))
        }
        _ => None,
    }
}

pub(super) fn is_hash_call(e: &Expression) -> bool {
    matches!(called_name(e), Some("keccak256" | "sha256" | "ripemd160"))
}

pub(super) fn is_param(f: &Function, e: &Expression) -> bool {
    matches!(e, Expression::Variable(v) if f.params.contains(&v.name))
}

/// `new T[](n)`.
pub(super) fn is_new_array(e: &Expression) -> bool {
    matches!(e, Expression::New(..))
        || matches!(e, Expression::FunctionCall(_, callee, _) if matches!(callee.as_ref(), Expression::New(..)))
}

/// The value under type conversions: `x` in `payable(x)`, `address(x)`, `uint256(x)`.
pub(super) fn converted(e: &Expression) -> &Expression {
    match e {
        Expression::FunctionCall(_, callee, args)
            if args.len() == 1
                && (matches!(callee.as_ref(), Expression::Type(..))
                    || matches!(callee.as_ref(), Expression::Variable(v) if v.name == "payable")) =>
        {
            converted(&args[0])
        }
        Expression::Parenthesis(_, x) => converted(x),
        _ => e,
    }
}

/// What `e` writes, when it writes: its location and the target of any assignment (`=`, `+=`,
/// `|=`, …), `delete`, `++` or `--`.
pub(super) fn written(e: &Expression) -> Option<(Loc, &Expression)> {
    match e {
        Expression::Assign(loc, l, _)
        | Expression::AssignAdd(loc, l, _)
        | Expression::AssignSubtract(loc, l, _)
        | Expression::AssignMultiply(loc, l, _)
        | Expression::AssignDivide(loc, l, _)
        | Expression::AssignModulo(loc, l, _)
        | Expression::AssignOr(loc, l, _)
        | Expression::AssignAnd(loc, l, _)
        | Expression::AssignXor(loc, l, _)
        | Expression::AssignShiftLeft(loc, l, _)
        | Expression::AssignShiftRight(loc, l, _)
        | Expression::Delete(loc, l)
        | Expression::PostIncrement(loc, l)
        | Expression::PostDecrement(loc, l)
        | Expression::PreIncrement(loc, l)
        | Expression::PreDecrement(loc, l) => Some((*loc, l)),
        _ => None,
    }
}

/// The statements of a body at its top level (not under a condition or a loop).
pub(super) fn top_statements(s: &Statement) -> &[Statement] {
    match s {
        Statement::Block { statements, .. } => statements,
        other => std::slice::from_ref(other),
    }
}
