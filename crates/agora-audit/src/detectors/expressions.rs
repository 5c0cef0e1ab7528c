//! The expression detectors: tx.origin, weak randomness, timestamps, overflow, delegatecall,
//! hash solutions and the other patterns seen in one expression.

use super::*;
use std::collections::BTreeMap;

/// The block-time tests `f` makes as a lock built for one account: `f` is a function anyone
/// may call, with no modifier, parameter or value, of a contract no other inherits from; its body
/// is straight-line code that writes nothing, calls only `require`/`assert`, conversions, views
/// returning what a constructor set, and, on contracts a constructor set, `balanceOf` and
/// payments, all to one account a constructor set. What it excuses are the conditions of its
/// top-level `require`s. Anything else (a branch, a loop, a second payee, a call it does not
/// know, assembly, `try`, a tuple) and it excuses nothing.
fn lock_release_tests(
    mods: &super::calls::ContractIndex<'_>,
    f: &Function,
    body: &Statement,
    locals: &BTreeSet<String>,
) -> Vec<Loc> {
    // (A contract may declare its own `require`: then the word means its code.)
    if !f.exposed
        || f.ty != FunctionTy::Function
        || !f.modifiers.is_empty()
        || f.arity != 0
        || f.payable
        || f.view
        || !mods.knows_built()
        || mods.declares("require")
        || mods.declares("assert")
    {
        return Vec::new();
    }
    let mut plain = true;
    walk_stmt(body, &mut |st| {
        plain &= match st {
            Statement::Block { .. } | Statement::Expression(..) | Statement::Emit(..) => true,
            Statement::VariableDefinition(_, decl, Some(_)) => decl.storage.is_none(),
            _ => false,
        };
    });
    if !plain {
        return Vec::new();
    }
    let built = |x: &Expression| built_value(mods, locals, x, false);
    let mut known = true;
    let mut payees: Vec<String> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if !known {
            return;
        }
        if written(e).is_some()
            || matches!(
                e,
                Expression::NamedFunctionCall(..) | Expression::FunctionCallBlock(..)
            )
        {
            known = false;
        }
        let Expression::FunctionCall(_, callee, args) = e else {
            return;
        };
        known &= match (callee.as_ref(), args.len()) {
            (Expression::Variable(v), _) if v.name == "require" || v.name == "assert" => true,
            (Expression::Type(..), 1) => true,
            (Expression::Variable(v), 1) if v.name == "payable" => true,
            (Expression::Variable(g), 0) => !locals.contains(&g.name) && mods.built_getter(&g.name),
            (Expression::MemberAccess(_, recv, m), n) if built(recv) => {
                match (m.name.as_str(), n) {
                    ("balanceOf", 1) => true,
                    ("transfer" | "send" | "sendValue", 1) => {
                        payees.push(converted(recv).to_string());
                        true
                    }
                    ("transfer" | "safeTransfer", 2) if built(&args[0]) => {
                        payees.push(converted(&args[0]).to_string());
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        };
    });
    payees.sort();
    payees.dedup();
    if !known || payees.len() != 1 {
        return Vec::new();
    }
    top_statements(body)
        .iter()
        .filter_map(|st| match st {
            Statement::Expression(_, Expression::FunctionCall(_, callee, args))
                if matches!(callee.as_ref(), Expression::Variable(v) if v.name == "require") =>
            {
                args.first().map(expr_loc)
            }
            _ => None,
        })
        .collect()
}

/// A value fixed when the contract was built: a literal, a state variable only a constructor
/// writes, a view returning one, or arithmetic on them; with `time`, the block time too.
fn built_value(
    mods: &super::calls::ContractIndex<'_>,
    locals: &BTreeSet<String>,
    x: &Expression,
    time: bool,
) -> bool {
    match converted(x) {
        Expression::NumberLiteral(..)
        | Expression::HexNumberLiteral(..)
        | Expression::RationalNumberLiteral(..) => true,
        Expression::Variable(v) => !locals.contains(&v.name) && mods.set_when_built(&v.name),
        Expression::FunctionCall(_, g, args) if args.is_empty() => {
            matches!(g.as_ref(), Expression::Variable(g)
                if !locals.contains(&g.name) && mods.built_getter(&g.name))
        }
        Expression::Add(_, a, b)
        | Expression::Subtract(_, a, b)
        | Expression::Multiply(_, a, b)
        | Expression::Divide(_, a, b) => {
            built_value(mods, locals, a, time) && built_value(mods, locals, b, time)
        }
        y => time && is_time(y),
    }
}

/// tx.origin comparisons, block values as entropy, timestamp comparisons, unchecked arithmetic.
pub(super) fn expressions(
    out: &mut Out<'_, '_>,
    mods: &super::calls::ContractIndex<'_>,
    c: &Contract,
    f: &Function,
    body: &Statement,
) {
    // A math library (`using SafeMath for uint256`) checks the operations written through it;
    // an operator on a narrow integer is never one of them.
    let narrow = |x: &Expression| root_name(x).is_some_and(|n| c.narrow_vars.contains_key(n));
    let wraps = |x: &Expression| out.src().before_08 && (!c.safe_math || narrow(x));
    let before_08 = out.src().before_08 && !c.safe_math;
    let tainted = tainted_names(f, body);
    let sent = sent_amounts(body);
    // Entries a subtraction moves value out of: `balances[from] -= v; balances[to] += v;`
    // moves value between entries of one mapping and cannot create an overflow the total
    // supply does not already have.
    let mut debited: Vec<(String, String)> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::AssignSubtract(_, lhs, rhs) = e
            && let (Some(l), Some(r)) = (root_name(lhs), root_name(rhs))
        {
            debited.push((l.to_string(), r.to_string()));
        }
    });
    let moved = |lhs: &Expression, rhs: &Expression| {
        matches!((root_name(lhs), root_name(rhs)), (Some(l), Some(r))
            if debited.iter().any(|(dl, dr)| dl == l && dr == r))
    };
    // Names compared in an order test anywhere in the function: a subtraction from them is
    // taken as checked (`require(balance >= amount); balance -= amount;`).
    let mut bounded: Vec<String> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::Less(_, a, b)
        | Expression::More(_, a, b)
        | Expression::LessEqual(_, a, b)
        | Expression::MoreEqual(_, a, b) = e
        {
            if !is_arith(a) && !is_arith(b) {
                bounded.extend(root_name(a).map(str::to_string));
                bounded.extend(root_name(b).map(str::to_string));
            }
            // The overflow check itself: `x + y >= x` (or `>`, either way round).
            for (sum, other) in [(a, b), (b, a)] {
                if let Expression::Add(_, x, y) = sum.as_ref()
                    && let Some(o) = root_name(other)
                    && (root_name(x) == Some(o) || root_name(y) == Some(o))
                {
                    bounded.push(o.to_string());
                }
            }
        }
    });
    // A value, or either operand of an arithmetic expression, compared somewhere in the function.
    let checked = |x: &Expression| {
        let is_bounded =
            |y: &Expression| root_name(y).is_some_and(|n| bounded.iter().any(|b| b == n));
        match x {
            Expression::Add(_, a, b)
            | Expression::Subtract(_, a, b)
            | Expression::Multiply(_, a, b) => is_bounded(a) || is_bounded(b),
            other => is_bounded(other),
        }
    };
    // Locals that hold a block value (`bytes32 answer = blockhash(n);`), where they are set,
    // and every local's name.
    let mut from_block: Vec<String> = Vec::new();
    let mut from_block_at: Vec<Loc> = Vec::new();
    let mut locals: BTreeSet<String> = BTreeSet::new();
    walk_stmt(body, &mut |st| {
        if let Statement::VariableDefinition(loc, decl, init) = st
            && let Some(n) = &decl.name
        {
            locals.insert(n.name.clone());
            if init.as_ref().is_some_and(|i| contains(i, &is_block_value)) {
                from_block.push(n.name.clone());
                from_block_at.push(*loc);
            }
        }
    });
    // A function whose name says it draws random numbers: every block value in it is entropy.
    let lname = f.name.to_ascii_lowercase();
    let random_fn = lname.starts_with("rand") || lname.contains("random") || lname.contains("seed");
    // `cond ? x : y` that picks the later of two times computes, it does not decide.
    let mut picks: Vec<Loc> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::ConditionalOperator(_, cond, x, y) = e
            && (is_time(x) || is_time(y))
        {
            picks.push(expr_loc(cond));
        }
    });
    // The block time against one account's own deadline (`now > lockTime[msg.sender]`,
    // `now > acc.unlockTime`): a miner can move one lock by seconds, which decides nothing.
    // The same for one item's schedule looked up by the key the caller names
    // (`getTimestamp(id)`, `proposalEta(proposalId)`), directly or through a local set from it.
    // A key the caller names: a parameter, or the caller itself.
    let key = |a: &Expression| {
        is_param(f, a)
            || is_member(a, "msg", "sender")
            || matches!(called_name(a), Some("_msgSender"))
    };
    // A view of this contract (`getTimestamp`), asked about keys the caller names.
    let getter = |name: &str| mods.is_view(name);
    let lookup = |y: &Expression| match y {
        Expression::ArraySubscript(_, _, Some(k)) => key(k),
        Expression::MemberAccess(_, base, _) => {
            matches!(base.as_ref(), Expression::Variable(v) if locals.contains(&v.name))
        }
        Expression::FunctionCall(_, callee, args) => {
            matches!(callee.as_ref(), Expression::Variable(g) if getter(&g.name))
                && !args.is_empty()
                && args.iter().all(key)
        }
        _ => false,
    };
    let mut scheduled: BTreeSet<String> = BTreeSet::new();
    walk_stmt(body, &mut |st| {
        if let Statement::VariableDefinition(_, decl, Some(init)) = st
            && let Some(n) = &decl.name
            && contains(init, &lookup)
            && !contains(init, &is_time)
        {
            scheduled.insert(n.name.clone());
        }
    });
    let per_account = |x: &Expression| {
        contains(x, &|y| {
            lookup(y) || matches!(y, Expression::Variable(v) if scheduled.contains(&v.name))
        })
    };
    // The block time against a deadline the caller passes (`block.timestamp > deadline` in a
    // permit, `req.deadline` in a forwarded call): the caller chose it, and seconds of drift only
    // decide whether the caller's own call is still on time.
    let callers_deadline = |x: &Expression| {
        !contains(x, &is_time)
            && contains(
                x,
                &|y| matches!(y, Expression::Variable(v) if f.params.contains(&v.name)),
            )
    };
    // The block time against a time fixed when the contract was built, required before a
    // function whose caller chooses nothing pays the one account fixed then (OpenZeppelin's
    // `TokenTimelock.release`): the contract is one account's lock, as `lockTime[msg.sender]` is,
    // and seconds of drift only move when that account is paid. Reported for information only.
    // Asked once, on the first test.
    let release = std::cell::OnceCell::new();
    let lock_release = |loc: &Loc, x: &Expression, y: &Expression| {
        release
            .get_or_init(|| lock_release_tests(mods, f, body, &locals))
            .contains(loc)
            && built_value(mods, &locals, x, true)
            && built_value(mods, &locals, y, true)
    };
    let block_derived = |x: &Expression| {
        contains(x, &|y| {
            is_block_value(y)
                || matches!(y, Expression::Variable(v) if from_block.contains(&v.name))
        })
    };
    let mut hits: Vec<(&Detector, Loc, String)> = Vec::new();
    walk_stmt_exprs(body, &mut |e| match e {
        Expression::Equal(loc, a, b) | Expression::NotEqual(loc, a, b) => {
            // `msg.sender == tx.origin` asks whether the caller is an account, not who it is.
            let origin = |x: &Expression, y: &Expression| {
                is_member(x, "tx", "origin") && !is_member(y, "msg", "sender")
            };
            if origin(a, b) || origin(b, a) {
                hits.push((&TX_ORIGIN, *loc, "authorization by tx.origin".into()));
            }
            if is_time(a) || is_time(b) {
                hits.push((&TIMESTAMP, *loc, "equality test on the block time".into()));
            } else if !f.view && (block_derived(a) || block_derived(b)) {
                // (A view decides nothing: `require(clock() == block.number)` checks a clock.)
                // A guess compared with a block hash or number: the answer is public.
                hits.push((
                    &WEAK_RANDOMNESS,
                    *loc,
                    "a guess compared with a block value".into(),
                ));
            }
        }
        Expression::Less(loc, a, b)
        | Expression::More(loc, a, b)
        | Expression::LessEqual(loc, a, b)
        | Expression::MoreEqual(loc, a, b)
            if (contains(a, &is_time) || contains(b, &is_time))
                && !picks.contains(loc)
                && !per_account(a)
                && !per_account(b)
                && !callers_deadline(a)
                && !callers_deadline(b) =>
        {
            if lock_release(loc, a, b) {
                hits.push((
                    &TIMESTAMP_LOCK,
                    *loc,
                    "the block time against a release time fixed at construction, before paying the one account fixed then".into(),
                ));
            } else {
                hits.push((
                    &TIMESTAMP,
                    *loc,
                    "a decision depends on the block time".into(),
                ));
            }
        }
        Expression::MemberAccess(loc, _, _)
            if is_member(e, "block", "blockhash") || is_member(e, "msg", "gas") =>
        {
            hits.push((
                &DEPRECATED,
                *loc,
                "`block.blockhash` and `msg.gas` are deprecated: use blockhash() and gasleft()"
                    .into(),
            ));
        }
        Expression::FunctionCall(loc, _, _)
            if matches!(called_member(e), Some(("callcode", _))) =>
        {
            hits.push((
                &DEPRECATED,
                *loc,
                "`callcode` is deprecated: use delegatecall".into(),
            ));
        }
        Expression::Modulo(loc, a, _) if block_derived(a) => {
            hits.push((
                &WEAK_RANDOMNESS,
                *loc,
                "a block value used as a random number".into(),
            ));
            if contains(a, &is_time) {
                hits.push((
                    &TIMESTAMP,
                    *loc,
                    "the block time used as a random number".into(),
                ));
            }
        }
        // A hash of block values turned into a number (`uint(keccak256(block.timestamp))`); a
        // hash kept as bytes is an identifier.
        Expression::FunctionCall(loc, callee, args)
            if matches!(callee.as_ref(), Expression::Type(..))
                && args
                    .iter()
                    .any(|a| contains(a, &is_hash_call) && block_derived(a)) =>
        {
            hits.push((
                &WEAK_RANDOMNESS,
                *loc,
                "a hash of block values used as a random number".into(),
            ));
            if args.iter().any(|a| contains(a, &is_time)) {
                hits.push((
                    &TIMESTAMP,
                    *loc,
                    "the block time used as a random number".into(),
                ));
            }
        }
        // A block hash, or the difficulty (prevrandao), has no use but entropy.
        _ if is_block_hash(e)
            || is_member(e, "block", "difficulty")
            || is_member(e, "block", "prevrandao") =>
        {
            hits.push((
                &WEAK_RANDOMNESS,
                expr_loc(e),
                "a block hash or the difficulty used as a source of randomness".into(),
            ));
        }
        _ if random_fn && is_block_value(e) => {
            hits.push((
                &WEAK_RANDOMNESS,
                expr_loc(e),
                format!("`{}` draws its randomness from block values", f.name),
            ));
        }
        Expression::AssignSubtract(loc, lhs, rhs)
            if before_08
                && !f.view
                && !checked(lhs)
                && carries(rhs, &tainted)
                && root_name(lhs).is_some_and(|n| c.state_vars.contains(n)) =>
        {
            hits.push((
                &OVERFLOW,
                *loc,
                "unchecked subtraction from a state variable".into(),
            ));
        }
        // Adding msg.value cannot overflow: all the ether there is fits in 256 bits many times.
        // An amount the caller chooses, added to state nothing bounds.
        Expression::AssignAdd(loc, lhs, rhs) | Expression::AssignMultiply(loc, lhs, rhs)
            if wraps(lhs)
                && !f.view
                && !is_member(rhs, "msg", "value")
                && carries(rhs, &tainted)
                && !root_name(rhs).is_some_and(|n| sent.iter().any(|s| s == n))
                && !checked(lhs)
                && !moved(lhs, rhs)
                && root_name(lhs).is_some_and(|n| c.state_vars.contains(n)) =>
        {
            hits.push((
                &OVERFLOW,
                *loc,
                "unchecked arithmetic on a state variable".into(),
            ));
        }
        Expression::MoreEqual(loc, a, b)
            if before_08
                && matches!(a.as_ref(), Expression::Subtract(..))
                && matches!(b.as_ref(), Expression::NumberLiteral(_, n, _, _) if n == "0") =>
        {
            hits.push((
                &OVERFLOW,
                *loc,
                "`a - b >= 0` is always true for unsigned integers: the subtraction wraps".into(),
            ));
        }
        Expression::Assign(_, lhs, rhs)
            if wraps(lhs)
                && !f.view
                && root_name(lhs).is_some_and(|n| c.state_vars.contains(n))
                && risky_arith(&tainted, rhs)
                && !(matches!(rhs.as_ref(), Expression::Subtract(..)) && checked(rhs)) =>
        {
            hits.push((
                &OVERFLOW,
                expr_loc(rhs),
                "unchecked arithmetic stored in state".into(),
            ));
        }
        _ => {}
    });
    // From 0.8, arithmetic wraps only inside `unchecked { }`: flag what inputs reach there.
    if !out.src().before_08 && !f.view {
        walk_stmt(body, &mut |st| {
            if let Statement::Block {
                unchecked: true, ..
            } = st
            {
                walk_stmt_exprs(st, &mut |e| {
                    let arith = match e {
                        Expression::AssignAdd(_, lhs, rhs)
                        | Expression::AssignSubtract(_, lhs, rhs)
                        | Expression::AssignMultiply(_, lhs, rhs) => {
                            root_name(lhs).is_some_and(|n| c.state_vars.contains(n))
                                && !checked(lhs)
                                && !checked(rhs)
                                // What no caller chooses (constants, internal values) is
                                // deliberate.
                                && carries(rhs, &tainted)
                        }
                        other => risky_arith(&tainted, other) && !checked(other),
                    };
                    if arith {
                        hits.push((
                            &OVERFLOW,
                            expr_loc(e),
                            "arithmetic on inputs inside `unchecked`".into(),
                        ));
                    }
                });
            }
        });
    }
    // A constant that certainly wraps: a local set to a number, then moved past its type's
    // range by a number (`uint8 x = 0; x = x - 10;`), before 0.8 or inside `unchecked`.
    if !f.view {
        for (loc, m) in constant_wraps(body, out.src().before_08) {
            hits.push((&OVERFLOW, loc, m));
        }
    }
    // A local computed from inputs by unchecked arithmetic.
    if before_08 && !f.view {
        walk_stmt(body, &mut |st| {
            if let Statement::VariableDefinition(_, _, Some(init)) = st
                && risky_arith(&tainted, init)
                && !(matches!(init, Expression::Subtract(..)) && checked(init))
            {
                hits.push((
                    &OVERFLOW,
                    expr_loc(init),
                    "unchecked arithmetic on inputs".into(),
                ));
            }
        });
    }
    // A local set from a block value, when that value is used as randomness: its definition too.
    if hits.iter().any(|(d, _, _)| d.id == WEAK_RANDOMNESS.id) {
        for (name, loc) in from_block.iter().zip(&from_block_at) {
            let mut used = false;
            walk_stmt_exprs(body, &mut |e| {
                if let Expression::Modulo(_, a, _) = e {
                    used |= contains(
                        a,
                        &|y| matches!(y, Expression::Variable(v) if &v.name == name),
                    );
                }
                if let Expression::FunctionCall(_, _, args) = e
                    && is_hash_call(e)
                {
                    used |= args.iter().any(|a| {
                        contains(
                            a,
                            &|y| matches!(y, Expression::Variable(v) if &v.name == name),
                        )
                    });
                }
            });
            if used {
                hits.push((
                    &WEAK_RANDOMNESS,
                    *loc,
                    format!("`{name}` holds a block value that becomes randomness"),
                ));
            }
        }
    }
    for (d, loc, m) in hits {
        out.at(d, &loc, m);
    }
}

/// Locals set to a number and then moved past their type's range by a number, where the
/// arithmetic wraps (everywhere before 0.8, inside `unchecked` from 0.8): the operation and
/// why. Only what certainly runs: unsigned locals narrower than 128 bits, declared with a plain
/// number (or none: 0), moved by plain numbers in straight-line code. A branch or loop, any
/// other write, or assembly makes the value unknown.
fn constant_wraps(body: &Statement, before_08: bool) -> Vec<(Loc, String)> {
    let mut known: BTreeMap<String, (u16, Option<u128>)> = BTreeMap::new();
    let mut hits = Vec::new();
    straight(body, false, before_08, &mut known, &mut hits);
    hits
}

/// A plain number, without units.
fn plain_number(e: &Expression) -> Option<u128> {
    match e {
        Expression::NumberLiteral(_, n, exp, None) if exp.is_empty() => {
            n.replace('_', "").parse::<u128>().ok()
        }
        _ => None,
    }
}

/// [`constant_wraps`] over one statement.
fn straight(
    s: &Statement,
    unchecked: bool,
    before_08: bool,
    known: &mut BTreeMap<String, (u16, Option<u128>)>,
    hits: &mut Vec<(Loc, String)>,
) {
    use solang_parser::pt::Type;
    match s {
        Statement::Block {
            statements,
            unchecked: u,
            ..
        } => {
            for st in statements {
                straight(st, unchecked || *u, before_08, known, hits);
            }
        }
        Statement::VariableDefinition(_, decl, init) => {
            if let Some(n) = &decl.name {
                let value = match init {
                    None => Some(0),
                    Some(i) => plain_number(i),
                };
                match &decl.ty {
                    Expression::Type(_, Type::Uint(bits)) if *bits < 128 => {
                        known.insert(n.name.clone(), (*bits, value));
                    }
                    _ => {
                        known.remove(&n.name);
                    }
                }
            }
        }
        Statement::Expression(_, e) => {
            let step = match e {
                Expression::Assign(loc, lhs, rhs) => match rhs.as_ref() {
                    Expression::Subtract(_, a, b) if root_name(a) == root_name(lhs) => {
                        Some((loc, lhs, b, true))
                    }
                    Expression::Add(_, a, b) if root_name(a) == root_name(lhs) => {
                        Some((loc, lhs, b, false))
                    }
                    _ => None,
                },
                Expression::AssignSubtract(loc, lhs, rhs) => Some((loc, lhs, rhs, true)),
                Expression::AssignAdd(loc, lhs, rhs) => Some((loc, lhs, rhs, false)),
                _ => None,
            };
            let target = step.and_then(|(loc, lhs, delta, minus)| {
                let Expression::Variable(v) = lhs.as_ref() else {
                    return None;
                };
                let (bits, Some(value)) = *known.get(&v.name)? else {
                    return None;
                };
                Some((loc, &v.name, bits, value, plain_number(delta)?, minus))
            });
            if let Some((loc, name, bits, value, d, minus)) = target {
                let max = (1u128 << bits) - 1;
                let next = if minus {
                    value.checked_sub(d)
                } else {
                    value.checked_add(d).filter(|v| *v <= max)
                };
                if next.is_none() && (before_08 || unchecked) {
                    hits.push((
                        *loc,
                        format!(
                            "`{name}` holds {value} and {} {d}: the result wraps around its {bits}-bit type",
                            if minus { "loses" } else { "gains" },
                        ),
                    ));
                }
                known.insert(name.clone(), (bits, next));
            } else {
                forget_written(s, known);
            }
        }
        // What runs maybe, or many times, or out of sight: its writes make values unknown.
        _ => forget_written(s, known),
    }
}

/// Marks every local that `s` writes (or, with assembly, every local) as unknown.
fn forget_written(s: &Statement, known: &mut BTreeMap<String, (u16, Option<u128>)>) {
    let mut assembly = false;
    walk_stmt(s, &mut |st| {
        assembly |= matches!(st, Statement::Assembly { .. })
    });
    if assembly {
        known.clear();
        return;
    }
    walk_stmt_exprs(s, &mut |e| {
        let Some((_, lhs)) = written(e) else { return };
        // A tuple `(a, b) = …` writes each of its names.
        walk_expr(lhs, &mut |x| {
            if let Expression::Variable(v) = x
                && let Some(k) = known.get_mut(&v.name)
            {
                k.1 = None;
            }
        });
    });
    // Locals declared inside (a loop's counter) are gone after it.
    walk_stmt(s, &mut |st| {
        if let Statement::VariableDefinition(_, decl, _) = st
            && let Some(n) = &decl.name
            && let Some(k) = known.get_mut(&n.name)
        {
            k.1 = None;
        }
    });
}
