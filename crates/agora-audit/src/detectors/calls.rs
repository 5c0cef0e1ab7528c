//! External calls: unchecked results, reentrancy, calls in loops, a failed payment that blocks
//! everyone.

use super::*;

/// A low-level call whose success flag is dropped: an expression statement that is the call, or
/// a local that takes the flag and is never read.
pub(super) fn unchecked_calls(out: &mut Out<'_, '_>, body: &Statement) {
    let mut hits = Vec::new();
    let mut kept: Vec<(Loc, String, String)> = Vec::new();
    walk_stmt(body, &mut |s| {
        if let Statement::Expression(loc, e) = s
            && let Some((m, _)) = called_member(e)
            && LOW_LEVEL.contains(&m)
        {
            hits.push((*loc, m.to_string()));
        }
        if let Statement::VariableDefinition(loc, decl, Some(e)) = s
            && let Some(n) = &decl.name
            && let Some((m, _)) = called_member(e)
            && LOW_LEVEL.contains(&m)
        {
            kept.push((*loc, n.name.clone(), m.to_string()));
        }
    });
    for (loc, name, m) in kept {
        let mut read = false;
        walk_stmt_exprs(body, &mut |e| {
            read |= matches!(e, Expression::Variable(v) if v.name == name);
        });
        if !read {
            hits.push((loc, m));
        }
    }
    for (loc, m) in hits {
        out.at(
            &UNCHECKED_CALL,
            &loc,
            format!("the result of `{m}` is not checked"),
        );
    }
}

/// State the function reads before a call and writes after it (the balance it pays out and
/// zeroes afterwards): a reentrant call sees the old value. Writes through a local storage
/// pointer (`var acc = accounts[msg.sender]; … acc.balance -= v`) are writes to state, and a
/// call to a function of the contract that calls out is a call out. State written after the
/// call but never read before it (a counter of donations) decides nothing and is not reported.
pub(super) fn reentrancy(
    out: &mut Out<'_, '_>,
    c: &Contract,
    facts: &Facts,
    f: &Function,
    body: &Statement,
) {
    // Locals that point into state: set from a state variable and written through a member or
    // an index.
    let mut from_state: Vec<(String, String)> = Vec::new();
    walk_stmt(body, &mut |st| {
        if let Statement::VariableDefinition(_, decl, Some(init)) = st
            && let Some(n) = &decl.name
            && let Some(root) = root_name(init)
            && c.state_vars.contains(root)
            && !matches!(init, Expression::Variable(_))
        {
            from_state.push((n.name.clone(), root.to_string()));
        }
    });
    let mut aliases: Vec<(String, String)> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::Assign(_, lhs, _)
        | Expression::AssignAdd(_, lhs, _)
        | Expression::AssignSubtract(_, lhs, _) = e
            && matches!(
                lhs.as_ref(),
                Expression::MemberAccess(..) | Expression::ArraySubscript(..)
            )
            && let Some(n) = root_name(lhs)
            && let Some(pair) = from_state.iter().find(|(l, _)| l == n)
        {
            aliases.push(pair.clone());
        }
    });
    // A reentrancy lock (`locked = true; … locked = false;`, in the body or in a modifier such
    // as `nonReentrant`) is written around the call on purpose: its flag is no state at risk.
    let held = locks_held(c, f, &mut out.lock_steps);
    let mut flags = lock_flags(c, &[body], &mut out.lock_steps);
    flags.extend(held.iter().cloned());
    // The state a name stands for.
    let state_of = |n: &str| -> Option<String> {
        if flags.contains(n) {
            None
        } else if c.state_vars.contains(n) {
            Some(n.to_string())
        } else {
            aliases.iter().find(|(l, _)| l == n).map(|(_, s)| s.clone())
        }
    };
    // Under a lock no function that honours it runs during the call: the state written after
    // it is at risk only when another function, open during the call, reads it.
    let reachable = |written: &str, steps: &mut usize| {
        held.is_empty()
            || c.functions.iter().any(|g| {
                g.exposed
                    && !g.view
                    && g.ty == FunctionTy::Function
                    && !std::ptr::eq(g, f)
                    && locks_held(c, g, steps).is_disjoint(&held)
                    && g.body.as_deref().is_some_and(|b| reads(b, written, steps))
            })
    };
    let internal_call_out = |e: &Expression| {
        called_name(e).is_some_and(|name| facts.calls_out.iter().any(|g| g == name))
    };
    let call_out =
        |e: &Expression| external_call(e).or_else(|| internal_call_out(e).then_some("call"));
    if let Some((call_loc, write_loc, kind, state)) = write_after(body, &state_of, &call_out, false)
        && reachable(&state, &mut out.lock_steps)
    {
        let line = out.unit.line(&call_loc);
        let end = out.unit.line(&write_loc).max(line);
        out.line(
            &REENTRANCY,
            line,
            end,
            format!("state is written on line {end} after the external `{kind}` on line {line}"),
        );
        return;
    }
    // The same through a modifier: its external call runs before the function's body.
    for (name, combined) in through_modifiers(c, f, body) {
        let in_body = |l: &Loc| {
            use solang_parser::pt::CodeLocation;
            l.try_file_no() == body.loc().try_file_no()
                && l.start() >= body_start(body)
                && l.end() <= body_end(body)
        };
        // A call in the modifier, a write in the function.
        if let Some((call_loc, write_loc, kind, state)) =
            write_after(&combined, &state_of, &call_out, false)
            && !in_body(&call_loc)
            && in_body(&write_loc)
            && reachable(&state, &mut out.lock_steps)
        {
            // Reported where the function writes: the modifier may live in another file.
            let end = out.unit.line(&write_loc);
            let at = out.unit.line(&call_loc);
            out.line(
                &REENTRANCY,
                end,
                end,
                format!(
                    "state is written here after the external `{kind}` that modifier `{name}` makes (its line {at})"
                ),
            );
            return;
        }
    }
    // Ether sent with `transfer`/`send` forwards 2,300 gas, too little to re-enter today; gas
    // costs have changed before. Only where anyone can call: an owner re-entering its own
    // function gains nothing.
    if guarded(f, body) || !f.exposed {
        return;
    }
    let stipend = |e: &Expression| match (called_member(e), e) {
        (Some((kind @ ("transfer" | "send"), _)), Expression::FunctionCall(_, _, args))
            if args.len() == 1 =>
        {
            Some(if kind == "send" { "send" } else { "transfer" })
        }
        _ => None,
    };
    if let Some((call_loc, write_loc, kind, state)) = write_after(body, &state_of, &stipend, true)
        && reachable(&state, &mut out.lock_steps)
    {
        let line = out.unit.line(&call_loc);
        let end = out.unit.line(&write_loc).max(line);
        out.line(
            &STATE_AFTER_TRANSFER,
            line,
            end,
            format!(
                "state is written on line {end} after the `{kind}` on line {line}: safe only while its gas stipend cannot re-enter"
            ),
        );
    }
}

/// The first call (as `is_call` names it) in `body` after which state read before it is
/// written: the call, the write, the call's kind and the state written.
///
/// With `amount_only`, only the state the call's own arguments are computed from counts (read
/// in them, or in the initializer of a local they name): the state that decides what is sent.
fn write_after(
    body: &Statement,
    state_of: &dyn Fn(&str) -> Option<String>,
    is_call: &dyn Fn(&Expression) -> Option<&'static str>,
    amount_only: bool,
) -> Option<(Loc, Loc, &'static str, String)> {
    // Locals and the state their initializers read.
    let mut locals: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if amount_only {
        walk_stmt(body, &mut |st| {
            if let Statement::VariableDefinition(_, decl, Some(init)) = st
                && let Some(n) = &decl.name
            {
                let mut read = BTreeSet::new();
                walk_expr(init, &mut |x| {
                    if let Expression::Variable(v) = x
                        && let Some(s) = state_of(&v.name)
                    {
                        read.insert(s);
                    }
                });
                locals.insert(n.name.clone(), read);
            }
        });
    }
    // Conditions (`require(bal[m] >= amt)`): where they start, the names they use, and the
    // state they read. One that bounds what the call sends decides it too.
    let mut conditions: Vec<(usize, BTreeSet<String>, BTreeSet<String>)> = Vec::new();
    if amount_only {
        walk_stmt(body, &mut |st| {
            if let Some(cond) = tested(st) {
                let (mut names, mut read) = (BTreeSet::new(), BTreeSet::new());
                walk_expr(cond, &mut |x| {
                    if let Expression::Variable(v) = x {
                        names.insert(v.name.clone());
                        read.extend(state_of(&v.name));
                    }
                });
                conditions.push((expr_loc(cond).start(), names, read));
            }
        });
    }
    let mut read_before: BTreeSet<String> = BTreeSet::new();
    let mut call: Option<(Loc, &'static str)> = None;
    let mut hit: Option<(Loc, Loc, &'static str, String)> = None;
    walk_stmt_exprs(body, &mut |e| {
        if hit.is_some() {
            return;
        }
        if call.is_none() {
            if let Some(kind) = is_call(e) {
                call = Some((expr_loc(e), kind));
                // What the call itself reads (`call.value(balances[msg.sender])()`) is read
                // before it runs.
                // Each name once: a crafted call naming a local thousands of times adds
                // nothing more.
                let mut names: BTreeSet<&str> = BTreeSet::new();
                walk_expr(e, &mut |x| {
                    if let Expression::Variable(v) = x {
                        names.insert(&v.name);
                    }
                });
                for (start, used, read) in &conditions {
                    if *start < expr_loc(e).start() && names.iter().any(|n| used.contains(*n)) {
                        read_before.extend(read.iter().cloned());
                    }
                }
                for name in names {
                    if let Some(s) = state_of(name) {
                        read_before.insert(s);
                    } else if let Some(read) = locals.get(name) {
                        read_before.extend(read.iter().cloned());
                    }
                }
            } else if !amount_only
                && let Expression::Variable(v) = e
                && let Some(s) = state_of(&v.name)
            {
                read_before.insert(s);
            }
            return;
        }
        let written = written(e).and_then(|(loc, lhs)| {
            root_name(lhs)
                .and_then(state_of)
                .filter(|s| read_before.contains(s))
                .map(|s| (loc, s))
        });
        if let (Some((w, state)), Some((cl, kind))) = (written, call) {
            hit = Some((cl, w, kind, state));
        }
    });
    hit
}

/// Payments inside a loop that revert the whole loop when one recipient fails: `transfer`, and
/// `send`/`call` whose result is required (an unchecked one skips the failure and goes on).
pub(super) fn calls_in_loops(out: &mut Out<'_, '_>, body: &Statement) {
    let mut hits = Vec::new();
    walk_stmt(body, &mut |s| {
        let inner = match s {
            Statement::For(_, _, _, _, Some(b)) => b.as_ref(),
            Statement::While(_, _, b) | Statement::DoWhile(_, b, _) => b.as_ref(),
            _ => return,
        };
        walk_stmt(inner, &mut |st| {
            if let Some(cond) = tested(st) {
                walk_expr(cond, &mut |e| {
                    if let Some((m @ ("send" | "call"), _)) = called_member(e) {
                        hits.push((expr_loc(e), m.to_string()));
                    }
                });
            }
        });
        walk_stmt_exprs(inner, &mut |e| {
            if let Some(("transfer", _)) = called_member(e)
                && matches!(e, Expression::FunctionCall(_, _, a) if a.len() == 1)
            {
                hits.push((expr_loc(e), "transfer".to_string()));
            }
        });
    });
    hits.sort_by_key(|(l, _)| l.start());
    hits.dedup_by_key(|(l, _)| l.start());
    for (loc, m) in hits {
        out.at(
            &CALL_IN_LOOP,
            &loc,
            format!("`{m}` inside a loop: one recipient can block the rest"),
        );
    }
}

/// A payable function that must pay a stored address anyone can take (the previous king, the
/// last bidder) to go on: if that address rejects ether, nobody can call it again.
pub(super) fn failed_payment(out: &mut Out<'_, '_>, facts: &Facts, f: &Function, body: &Statement) {
    if !f.exposed || !f.payable {
        return;
    }
    let claimable = &facts.claimable;
    let stored = |r: &Expression| root_name(r).is_some_and(|n| claimable.iter().any(|x| x == n));
    let mut hits = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        // `require(stored.send(v))`, or `stored.transfer(v)` (which reverts on failure).
        if let Expression::FunctionCall(_, callee, args) = e
            && matches!(callee.as_ref(), Expression::Variable(v) if v.name == "require" || v.name == "assert")
            && let Some(first) = args.first()
            && let Some(("send" | "call", recv)) = called_member(first)
            && stored(recv)
        {
            hits.push(expr_loc(e));
        }
        if let Some(("transfer", recv)) = called_member(e)
            && stored(recv)
            && matches!(e, Expression::FunctionCall(_, _, a) if a.len() == 1)
        {
            hits.push(expr_loc(e));
        }
    });
    for loc in hits {
        out.at(
            &FAILED_CALL_DOS,
            &loc,
            "a payment to a stored address must succeed for the function to go on".into(),
        );
    }
}

/// State flags that `parts` set to two different constants (`locked = true` … `locked =
/// false`, `_status = ENTERED` … `_status = NOT_ENTERED`): the shape of a reentrancy lock.
fn lock_flags(c: &Contract, parts: &[&Statement], steps: &mut usize) -> BTreeSet<String> {
    let mut values: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for part in parts {
        if *steps == 0 {
            // Past the bound no lock is known: what it would have hidden is reported.
            return BTreeSet::new();
        }
        walk_stmt_exprs(part, &mut |e| {
            *steps = steps.saturating_sub(1);
            if let Expression::Assign(_, lhs, rhs) = e
                && let Expression::Variable(v) = lhs.as_ref()
                && let Some(n) = c.state_vars.get(&v.name)
                && let Some(k) = constant(rhs)
            {
                values.entry(n).or_default().insert(k);
            }
        });
    }
    values
        .into_iter()
        .filter(|(_, v)| v.len() >= 2)
        .map(|(n, _)| n.to_string())
        .collect()
}

/// A value fixed in the source: a literal, or a name spelled as a constant (`ENTERED`).
fn constant(e: &Expression) -> Option<String> {
    match e {
        Expression::BoolLiteral(_, b) => Some(b.to_string()),
        Expression::NumberLiteral(_, n, x, _) => Some(format!("{n}e{x}")),
        Expression::Variable(v)
            if v.name.bytes().any(|b| b.is_ascii_uppercase())
                && v.name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') =>
        {
            Some(v.name.clone())
        }
        _ => None,
    }
}

/// The locks `g` holds while it runs: flags that its body and modifiers (with the internal
/// functions they call, one level down, as OpenZeppelin's `_nonReentrantBefore` is) both test
/// and set and clear.
fn locks_held(c: &Contract, g: &Function, steps: &mut usize) -> BTreeSet<String> {
    fn by_name<'c>(c: &'c Contract, name: &str, ty: FunctionTy) -> Vec<&'c Statement> {
        c.functions
            .iter()
            .filter(|h| h.ty == ty && h.name == name)
            .filter_map(|h| h.body.as_deref())
            .collect()
    }
    if *steps == 0 {
        return BTreeSet::new();
    }
    let mut parts: Vec<&Statement> = g.body.as_deref().into_iter().collect();
    for m in &g.modifiers {
        *steps = steps.saturating_sub(c.functions.len());
        parts.extend(by_name(c, m, FunctionTy::Modifier));
    }
    // Only a modifier's calls are followed: a lock lives in the modifier or the body.
    let mut called: Vec<&Statement> = Vec::new();
    for part in parts.iter().skip(usize::from(g.body.is_some())) {
        walk_stmt_exprs(part, &mut |e| {
            *steps = steps.saturating_sub(1);
            if let Some(name) = called_name(e) {
                *steps = steps.saturating_sub(c.functions.len());
                called.extend(by_name(c, name, FunctionTy::Function));
            }
        });
    }
    parts.extend(called);
    let mut flags = lock_flags(c, &parts, steps);
    if flags.is_empty() {
        return flags;
    }
    let mut tested_flags = BTreeSet::new();
    for part in &parts {
        walk_stmt(part, &mut |st| {
            if let Some(cond) = tested(st) {
                walk_expr(cond, &mut |x| {
                    if let Expression::Variable(v) = x
                        && flags.contains(&v.name)
                    {
                        tested_flags.insert(v.name.clone());
                    }
                });
            }
        });
    }
    flags.retain(|n| tested_flags.contains(n));
    flags
}

/// Whether `body` reads the state variable `name`.
fn reads(body: &Statement, name: &str, steps: &mut usize) -> bool {
    if *steps == 0 {
        return true;
    }
    let mut found = false;
    walk_stmt_exprs(body, &mut |e| {
        *steps = steps.saturating_sub(1);
        found |= matches!(e, Expression::Variable(v) if v.name == name);
    });
    found
}

/// For each modifier of `f` (its own or inherited) that makes an external call: the modifier's
/// body with the function's body in place of `_`, so that a call in the modifier is seen before
/// the writes of the function.
fn through_modifiers(c: &Contract, f: &Function, body: &Statement) -> Vec<(String, Statement)> {
    let mut out = Vec::new();
    for name in &f.modifiers {
        let Some(m) = c
            .functions
            .iter()
            .find(|g| g.ty == FunctionTy::Modifier && &g.name == name)
        else {
            continue;
        };
        let Some(mb) = m.body.as_deref() else {
            continue;
        };
        if calls_out(mb) {
            out.push((name.clone(), substitute(mb, body)));
        }
    }
    out
}

/// `s` with each `_;` replaced by `body`.
fn substitute(s: &Statement, body: &Statement) -> Statement {
    match s {
        Statement::Expression(_, Expression::Variable(v)) if v.name == "_" => body.clone(),
        Statement::Block {
            loc,
            unchecked,
            statements,
        } => Statement::Block {
            loc: *loc,
            unchecked: *unchecked,
            statements: statements.iter().map(|x| substitute(x, body)).collect(),
        },
        Statement::If(loc, cond, then, els) => Statement::If(
            *loc,
            cond.clone(),
            Box::new(substitute(then, body)),
            els.as_ref().map(|e| Box::new(substitute(e, body))),
        ),
        other => other.clone(),
    }
}

fn body_start(s: &Statement) -> usize {
    use solang_parser::pt::CodeLocation;
    s.loc().start()
}

fn body_end(s: &Statement) -> usize {
    use solang_parser::pt::CodeLocation;
    s.loc().end()
}
