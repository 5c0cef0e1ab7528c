//! External calls: unchecked results, reentrancy, calls in loops, a failed payment that blocks
//! everyone.

use super::callee::Reach;
use super::*;
use std::cell::RefCell;

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
    callees: &super::callee::Callees<'_, '_>,
    mods: &ContractIndex<'_>,
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
    let held = locks_held(mods, f, &mut out.lock_steps);
    let mut flags = held.clone();
    flags.extend(brackets(mods, body, &mut out.lock_steps));
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
                *steps = steps.saturating_sub(1);
                *steps == 0
                    || (g.exposed
                        && !g.view
                        && g.ty == FunctionTy::Function
                        && !std::ptr::eq(g, f)
                        && locks_held(mods, g, steps).is_disjoint(&held)
                        && reads(mods, g, written, steps))
            })
    };
    let internal_call_out = |e: &Expression| {
        called_name(e).is_some_and(|name| facts.calls_out.iter().any(|g| g == name))
    };
    // A call into the audit's code (another contract, a library) that can hand control on.
    let state = |n: &str| c.state_types.get(n).cloned();
    // Made on the first member call (most functions have few or none).
    let static_views = !out.src().before_05;
    let scope_cell = std::cell::OnceCell::new();
    let scope = || {
        scope_cell
            .get_or_init(|| super::callee::Scope::new(&state, f, body, &c.usings, static_views))
    };
    let into_audited = |e: &Expression| {
        let ether = matches!(e, Expression::FunctionCall(_, _, args) if args.len() == 1);
        match called_member(e) {
            Some(("call" | "delegatecall" | "callcode" | "value" | "gas", _)) => false,
            // Ether sent with its stipend (`to.transfer(amount)`): below.
            Some(("transfer" | "send", _)) if ether => false,
            Some((m, recv)) => match callees.member_calls_out(scope(), m, recv, 0) {
                Reach::Out => true,
                // Code the caller chose, or past the bounds: it may call anyone.
                Reach::Unknown => callees.chosen_contract(scope(), recv) || callees.exhausted(),
                Reach::Quiet => false,
            },
            None => false,
        }
    };
    let call_out = |e: &Expression| {
        external_call(e)
            .or_else(|| internal_call_out(e).then_some("call"))
            .or_else(|| into_audited(e).then_some("call"))
    };
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
    let modifier_calls = |m: &Function, mb: &Statement| {
        if calls_out(mb) {
            return true;
        }
        let scope = super::callee::Scope::new(&state, m, mb, &c.usings, static_views);
        let mut found = false;
        walk_stmt_exprs(mb, &mut |e| {
            if let Some((_, recv)) = called_member(e) {
                found |= callees.chosen_contract(&scope, recv);
            }
        });
        found
    };
    if let Some((name, combined)) =
        through_modifiers(mods, f, body, &modifier_calls, &mut out.lock_steps)
    {
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
    // Locals that save a state variable as it is (`T saved = x;`) and keep it.
    let mut saved: BTreeSet<(&str, &str)> = BTreeSet::new();
    walk_stmt(body, &mut |st| {
        if let Statement::VariableDefinition(_, decl, Some(Expression::Variable(x))) = st
            && let Some(n) = &decl.name
            && state_of(&x.name).is_some()
        {
            saved.insert((n.name.as_str(), x.name.as_str()));
        }
    });
    if !saved.is_empty() {
        let mut changed: BTreeSet<&str> = BTreeSet::new();
        walk_stmt_exprs(body, &mut |e| {
            if let Some((_, lhs)) = written(e)
                && let Some(n) = root_name(lhs)
            {
                changed.insert(n);
            }
        });
        saved.retain(|(l, _)| !changed.contains(l));
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
        // Putting back the value it had before the call (`x = saved`, `saved` set from `x`
        // before it): what the call saw in between was meant for it, nothing is stale.
        if let Expression::Assign(_, lhs, rhs) = e
            && let (Expression::Variable(x), Expression::Variable(l)) = (lhs.as_ref(), rhs.as_ref())
            && saved.contains(&(l.name.as_str(), x.name.as_str()))
        {
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

/// What a condition that guards a flag lets through, for a value of the flag.
#[derive(Clone)]
enum Guard {
    /// `require(flag)`.
    Set,
    /// `require(!flag)`.
    Clear,
    /// `require(flag == K)`.
    Is(String),
    /// `require(flag != K)`.
    IsNot(String),
}

impl Guard {
    /// Whether the flag holding `value` certainly fails the guard (`reverts` when the guard is
    /// an `if (…) revert`). Values of different kinds (a literal and a named constant) are
    /// not compared: no claim.
    fn refuses(&self, value: &str, reverts: bool) -> bool {
        let boolean = value == "true" || value == "false";
        let named = |x: &str| x.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
        // Whether the condition holds with the flag at `value`.
        let holds = match self {
            Guard::Set if boolean => value == "true",
            Guard::Clear if boolean => value == "false",
            Guard::Is(k) if named(k) == named(value) => value == k,
            Guard::IsNot(k) if named(k) == named(value) => value != k,
            _ => return false,
        };
        holds == reverts
    }
}

/// The flag a condition tests and how: `flag`, `!flag`, `flag == K`, `flag != K`.
fn guard_of(c: &Contract, cond: &Expression) -> Option<(String, Guard)> {
    let flag = |e: &Expression| match e {
        Expression::Variable(v) if c.state_vars.contains(&v.name) => Some(v.name.clone()),
        _ => None,
    };
    match cond {
        Expression::Parenthesis(_, x) => guard_of(c, x),
        Expression::Not(_, x) => flag(x).map(|n| (n, Guard::Clear)),
        Expression::Equal(_, a, b) | Expression::NotEqual(_, a, b) => {
            let (n, k) = match (flag(a), flag(b)) {
                (Some(n), _) => (n, constant(b)?),
                (_, Some(n)) => (n, constant(a)?),
                _ => return None,
            };
            Some(if matches!(cond, Expression::Equal(..)) {
                (n, Guard::Is(k))
            } else {
                (n, Guard::IsNot(k))
            })
        }
        _ => flag(cond).map(|n| (n, Guard::Set)),
    }
}

/// Whether a statement stops the function: `revert`, `throw` (read as `revert()`), `return`.
fn stops(s: &Statement) -> bool {
    match s {
        Statement::Revert(..) | Statement::Return(..) => true,
        Statement::Expression(_, e) => matches!(called_name(e), Some("revert")),
        Statement::Block { statements, .. } => statements.first().is_some_and(stops),
        _ => false,
    }
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

/// What a lock is made of, in the order it happens: guards of flags (and whether they revert
/// when the condition holds), constants written to flags, and the points where control leaves
/// (the external call, or a modifier's `_`).
#[derive(Default)]
struct LockEvents {
    tests: Vec<((usize, usize), String, Guard, bool)>,
    /// (where, flag, value, written at the top of its part: not under a condition)
    sets: Vec<((usize, usize), String, String, bool)>,
    splits: Vec<(usize, usize)>,
}

impl LockEvents {
    /// The events of a function's body, split at its external calls.
    fn of_body(mods: &ContractIndex<'_>, body: &Statement, steps: &mut usize) -> Self {
        let mut ev = LockEvents::default();
        ev.collect(
            mods,
            body,
            None,
            false,
            &|e| external_call(e).is_some(),
            steps,
        );
        ev
    }

    /// Collects the events of `part`. With `expand`, the internal functions it calls (one level
    /// down, as a modifier calls OpenZeppelin's `_nonReentrantBefore`) count as happening where
    /// they are called.
    fn collect(
        &mut self,
        mods: &ContractIndex<'_>,
        part: &Statement,
        at: Option<usize>,
        expand: bool,
        split: &dyn Fn(&Expression) -> bool,
        steps: &mut usize,
    ) {
        let c = mods.c;
        let mut sub = 0usize;
        let mut next = |loc: usize| {
            sub += 1;
            match at {
                Some(p) => (p, sub),
                None => (loc, 0),
            }
        };
        let mut calls: Vec<(usize, String)> = Vec::new();
        // Guards count where they always run: at the top of the body, not under a condition.
        let top = top_statements(part);
        for st in top {
            match st {
                Statement::If(_, cond, then, _) if stops(then) => {
                    if let Some((n, g)) = guard_of(c, cond) {
                        self.tests.push((next(expr_loc(cond).start()), n, g, true));
                    }
                }
                Statement::Expression(_, e) => {
                    if let Some(cond) = condition_of(e)
                        && let Some((n, g)) = guard_of(c, cond)
                    {
                        self.tests.push((next(expr_loc(e).start()), n, g, false));
                    }
                }
                _ => {}
            }
        }
        let at_top: BTreeSet<usize> = top
            .iter()
            .filter_map(|st| match st {
                Statement::Expression(_, e @ Expression::Assign(..)) => Some(expr_loc(e).start()),
                _ => None,
            })
            .collect();
        walk_stmt(part, &mut |st| {
            *steps = steps.saturating_sub(1);
            if let Statement::Expression(loc, Expression::Variable(v)) = st
                && v.name == "_"
            {
                self.splits.push(next(loc.start()));
            }
        });
        walk_stmt_exprs(part, &mut |e| {
            *steps = steps.saturating_sub(1);
            let pos = expr_loc(e).start();
            if let Expression::Assign(_, lhs, rhs) = e
                && let Expression::Variable(v) = lhs.as_ref()
                && c.state_vars.contains(&v.name)
                && let Some(k) = constant(rhs)
            {
                self.sets
                    .push((next(pos), v.name.clone(), k, at_top.contains(&pos)));
            }
            if split(e) {
                self.splits.push(next(pos));
            }
            if expand && let Some(name) = called_name(e) {
                calls.push((pos, name.to_string()));
            }
        });
        for (pos, name) in calls {
            if *steps == 0 {
                return;
            }
            *steps = steps.saturating_sub(1);
            for b in mods.function_bodies(&name) {
                self.collect(mods, b, Some(pos), false, split, steps);
            }
        }
    }

    /// The flags that make a lock: a guard that the value set next refuses, that value set,
    /// control leaving, and another constant set after it.
    fn locks(&self, steps: &mut usize) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        // Real locks have a guard or two and a few writes; the work is charged as it is.
        let work = self
            .tests
            .len()
            .saturating_mul(self.sets.len())
            .saturating_mul(self.sets.len().saturating_add(self.splits.len()));
        *steps = steps.saturating_sub(work);
        if *steps == 0 {
            return out;
        }
        for (t, flag, guard, reverts) in &self.tests {
            for (a, f1, v1, top) in &self.sets {
                if !top || f1 != flag || a < t || !guard.refuses(v1, *reverts) {
                    continue;
                }
                let Some(s) = self.splits.iter().filter(|s| *s > a).min() else {
                    continue;
                };
                // Still set when control leaves, and cleared after it.
                let held = !self
                    .sets
                    .iter()
                    .any(|(b, f2, v2, _)| f2 == flag && b > a && b < s && v2 != v1);
                if held
                    && self
                        .sets
                        .iter()
                        .any(|(b, f2, v2, top)| *top && f2 == flag && b > s && v2 != v1)
                {
                    out.insert(flag.clone());
                }
            }
        }
        out
    }
}

/// The locks `g` holds while it runs: flags a modifier of it (with the internal functions the
/// modifier calls) tests, sets, and clears after `_`, or that its own body tests, sets, and
/// clears after an external call. Each modifier's and each body's are found once.
fn locks_held(mods: &ContractIndex<'_>, g: &Function, steps: &mut usize) -> BTreeSet<String> {
    let mut held = BTreeSet::new();
    if *steps == 0 {
        return held;
    }
    for m in &g.modifiers {
        *steps = steps.saturating_sub(1);
        let Some((&name, m)) = mods.by_name.get_key_value(m.as_str()) else {
            continue;
        };
        if let Some(known) = mods.modifier_locks.borrow().get(name) {
            held.extend(known.iter().cloned());
            continue;
        }
        let Some(body) = m.body.as_deref() else {
            continue;
        };
        let mut ev = LockEvents::default();
        ev.collect(mods, body, None, true, &|_| false, steps);
        let found = ev.locks(steps);
        if *steps > 0 {
            mods.modifier_locks.borrow_mut().insert(name, found.clone());
        }
        held.extend(found);
    }
    if let Some(body) = g.body.as_deref() {
        let key = std::ptr::from_ref(g) as usize;
        let known = mods.body_locks.borrow().get(&key).cloned();
        let found = known.unwrap_or_else(|| {
            let found = LockEvents::of_body(mods, body, steps).locks(steps);
            if *steps > 0 {
                mods.body_locks.borrow_mut().insert(key, found.clone());
            }
            found
        });
        held.extend(found);
    }
    if *steps == 0 {
        // Past the bound no lock is known: what it would have hidden is reported.
        held.clear();
    }
    held
}

/// Flags that `body` sets around an external call (to a constant before it and another after
/// it) where some function of the contract refuses to run while the flag holds the first: a
/// lock taken by hand, tested elsewhere. Writing them is no state at risk.
fn brackets(mods: &ContractIndex<'_>, body: &Statement, steps: &mut usize) -> BTreeSet<String> {
    let ev = LockEvents::of_body(mods, body, steps);
    *steps = steps.saturating_sub(
        ev.sets
            .len()
            .saturating_mul(ev.sets.len().saturating_add(ev.splits.len())),
    );
    if *steps == 0 {
        return BTreeSet::new();
    }
    let mut candidates: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (a, flag, v1, _) in &ev.sets {
        if let Some(s) = ev.splits.iter().filter(|s| *s > a).min()
            && ev
                .sets
                .iter()
                .any(|(b, f2, v2, _)| f2 == flag && b > s && v2 != v1)
        {
            candidates.entry(flag).or_default().insert(v1);
        }
    }
    if candidates.is_empty() {
        return BTreeSet::new();
    }
    // The contract's guards, gathered once.
    let mut cached = mods.guards.borrow_mut();
    if cached.is_none() {
        let mut guards = LockEvents::default();
        for g in &mods.c.functions {
            if *steps == 0 {
                return BTreeSet::new();
            }
            if let Some(b) = g.body.as_deref() {
                guards.collect(mods, b, None, false, &|_| false, steps);
            }
        }
        *cached = Some(guards);
    }
    let Some(guards) = cached.as_ref() else {
        return BTreeSet::new();
    };
    *steps = steps.saturating_sub(
        guards
            .tests
            .len()
            .saturating_mul(candidates.values().map(BTreeSet::len).sum()),
    );
    if *steps == 0 {
        return BTreeSet::new();
    }
    candidates
        .into_iter()
        .filter(|(flag, values)| {
            guards.tests.iter().any(|(_, f, guard, reverts)| {
                f == flag && values.iter().any(|v| guard.refuses(v, *reverts))
            })
        })
        .map(|(flag, _)| flag.to_string())
        .collect()
}

/// Whether `g` reads the state variable `name`: in its body, its modifiers, or the internal
/// functions they call (one level down).
fn reads(mods: &ContractIndex<'_>, g: &Function, name: &str, steps: &mut usize) -> bool {
    let mut parts: Vec<&Statement> = g.body.as_deref().into_iter().collect();
    parts.extend(g.modifiers.iter().filter_map(|m| mods.modifier_body(m)));
    *steps = steps.saturating_sub(g.modifiers.len());
    let mut called: BTreeSet<&str> = BTreeSet::new();
    let mut found = false;
    for part in &parts {
        walk_stmt_exprs(part, &mut |e| {
            *steps = steps.saturating_sub(1);
            found |= matches!(e, Expression::Variable(v) if v.name == name);
            if let Some(n) = called_name(e) {
                called.insert(n);
            }
        });
    }
    for n in called {
        if found || *steps == 0 {
            break;
        }
        *steps = steps.saturating_sub(1);
        for b in mods.function_bodies(n) {
            walk_stmt_exprs(b, &mut |e| {
                *steps = steps.saturating_sub(1);
                found |= matches!(e, Expression::Variable(v) if v.name == name);
            });
        }
    }
    // Past the bound, any function may read it.
    found || *steps == 0
}

/// A contract (with what it inherits) indexed once for the detectors: its modifiers (the
/// nearest of a name), functions and views by name, and what is learnt of them, once known.
pub(super) struct ContractIndex<'c> {
    c: &'c Contract,
    by_name: BTreeMap<&'c str, &'c Function>,
    /// Function bodies by name (overloads together).
    functions: BTreeMap<&'c str, Vec<&'c Statement>>,
    /// Names of its view functions.
    views: BTreeSet<&'c str>,
    calls: RefCell<BTreeMap<&'c str, bool>>,
    /// The locks each modifier holds, and each function's body holds (by its place in memory:
    /// a key, never an order).
    modifier_locks: RefCell<BTreeMap<&'c str, BTreeSet<String>>>,
    body_locks: RefCell<BTreeMap<usize, BTreeSet<String>>>,
    /// The guards of flags in all of the contract's functions, once gathered.
    guards: RefCell<Option<LockEvents>>,
    /// Each modifier's `_` (all, replaceable) and statements, once counted.
    shapes: RefCell<BTreeMap<&'c str, (usize, usize, usize)>>,
    /// The state variables only a constructor writes, when known.
    built: Option<BTreeSet<String>>,
    /// Functions that take nothing, by name: the state variable each returns when every
    /// definition of the name is a view that only returns it.
    getters: BTreeMap<&'c str, Option<&'c str>>,
}

impl<'c> ContractIndex<'c> {
    /// Whether the contract has a view function of that name.
    pub(super) fn is_view(&self, name: &str) -> bool {
        self.views.contains(name)
    }

    /// Whether `name` is a state variable that only a constructor writes: a constant, an
    /// immutable, or one no function of the lineage writes (none is beside a write to a slot
    /// it does not name: see `Facts::built`).
    /// Known only for a contract no other contract of the audit inherits from ([`Self::with_built`]).
    pub(super) fn set_when_built(&self, name: &str) -> bool {
        self.built.as_ref().is_some_and(|b| b.contains(name))
    }

    /// Whether `name()` is a view of the contract that returns a state variable only a
    /// constructor writes (`releaseTime()` returning `_releaseTime`), in every definition of it
    /// that takes nothing.
    pub(super) fn built_getter(&self, name: &str) -> bool {
        matches!(self.getters.get(name), Some(Some(v)) if self.set_when_built(v))
    }

    /// Whether the state variables only a constructor writes are known ([`Self::with_built`]).
    pub(super) fn knows_built(&self) -> bool {
        self.built.is_some()
    }

    /// Whether the contract (with what it inherits) declares a function or modifier of that name.
    pub(super) fn declares(&self, name: &str) -> bool {
        self.functions.contains_key(name)
            || self.by_name.contains_key(name)
            || self.getters.contains_key(name)
    }

    /// The index with the state variables only a constructor writes, when they are known.
    pub(super) fn with_built(mut self, built: Option<BTreeSet<String>>) -> Self {
        self.built = built;
        self
    }

    fn modifier_body(&self, name: &str) -> Option<&'c Statement> {
        self.by_name.get(name).and_then(|m| m.body.as_deref())
    }

    fn function_bodies(&self, name: &str) -> &[&'c Statement] {
        self.functions.get(name).map_or(&[], Vec::as_slice)
    }

    pub(super) fn new(c: &'c Contract) -> Self {
        let mut by_name = BTreeMap::new();
        let mut functions: BTreeMap<&'c str, Vec<&'c Statement>> = BTreeMap::new();
        let mut views = BTreeSet::new();
        let mut getters: BTreeMap<&'c str, Option<&'c str>> = BTreeMap::new();
        for g in &c.functions {
            if g.view && g.ty == FunctionTy::Function {
                views.insert(g.name.as_str());
            }
            if g.ty == FunctionTy::Function && g.arity == 0 {
                let returns = g.body.as_deref().and_then(|b| match top_statements(b) {
                    [Statement::Return(_, Some(Expression::Variable(v)))] if g.view => {
                        Some(v.name.as_str())
                    }
                    _ => None,
                });
                let entry = getters.entry(g.name.as_str()).or_insert(returns);
                if *entry != returns {
                    *entry = None;
                }
            }
            match (g.ty, g.body.as_deref()) {
                (FunctionTy::Modifier, _) => {
                    by_name.entry(g.name.as_str()).or_insert(g);
                }
                (FunctionTy::Function, Some(b)) => {
                    functions.entry(g.name.as_str()).or_default().push(b)
                }
                _ => {}
            }
        }
        ContractIndex {
            c,
            by_name,
            functions,
            views,
            calls: RefCell::new(BTreeMap::new()),
            modifier_locks: RefCell::new(BTreeMap::new()),
            body_locks: RefCell::new(BTreeMap::new()),
            guards: RefCell::new(None),
            shapes: RefCell::new(BTreeMap::new()),
            built: None,
            getters,
        }
    }
}

/// How many `_` a modifier body has, and how many of them [`substitute`] replaces (those not
/// inside a loop or another construct).
fn placeholders(s: &Statement) -> (usize, usize, usize) {
    fn reachable(s: &Statement) -> usize {
        match s {
            Statement::Expression(_, Expression::Variable(v)) if v.name == "_" => 1,
            Statement::Block { statements, .. } => statements.iter().map(reachable).sum(),
            Statement::If(_, _, then, els) => reachable(then) + els.as_deref().map_or(0, reachable),
            _ => 0,
        }
    }
    let (mut all, mut size) = (0usize, 0usize);
    walk_stmt(s, &mut |st| {
        size += 1;
        all += usize::from(
            matches!(st, Statement::Expression(_, Expression::Variable(v)) if v.name == "_"),
        );
    });
    (all, reachable(s), size)
}

/// Statements and expressions in `s`: what copying and walking it costs.
fn size_of(s: &Statement) -> usize {
    let mut n = 0usize;
    walk_stmt_exprs(s, &mut |_| n += 1);
    n
}

/// When a modifier of `f` (its own or inherited) makes an external call: its name, and `f`'s
/// body wrapped in its modifiers in the order they run (each modifier's `_` replaced by what
/// follows), so that a call in a modifier is seen after what the modifiers before it read and
/// before what the function writes. Modifiers are chained only when each has one `_` that
/// can be replaced (and at most 8 of them); otherwise the calling modifier alone wraps the
/// body, when it has at most 8 `_`.
fn through_modifiers<'c>(
    mods: &ContractIndex<'c>,
    f: &Function,
    body: &Statement,
    calls: &dyn Fn(&Function, &Statement) -> bool,
    steps: &mut usize,
) -> Option<(String, Statement)> {
    let mut chain: Vec<(&str, &Statement)> = Vec::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for name in &f.modifiers {
        if !seen.insert(name.as_str()) {
            continue;
        }
        if let Some((&n, m)) = mods.by_name.get_key_value(name.as_str())
            && let Some(mb) = m.body.as_deref()
        {
            chain.push((n, mb));
        }
    }
    let (name, mb) = chain.iter().copied().find(|(name, mb)| {
        if let Some(&known) = mods.calls.borrow().get(name) {
            return known;
        }
        let known = mods.by_name.get(name).is_some_and(|m| calls(m, mb));
        mods.calls.borrow_mut().insert(name, known);
        known
    })?;
    let shape = |name: &'c str, m: &Statement| {
        if let Some(&known) = mods.shapes.borrow().get(name) {
            return known;
        }
        let known = placeholders(m);
        mods.shapes.borrow_mut().insert(name, known);
        known
    };
    let shapes: Vec<(usize, usize, usize)> = chain.iter().map(|(n, m)| shape(n, m)).collect();
    // Each modifier is copied with the body in it and walked a few times, for each function
    // that uses it: charged to the per-audit bound.
    let body_size = size_of(body);
    let chained = chain.len() <= 8
        && shapes
            .iter()
            .all(|&(all, reachable, _)| all == 1 && reachable == 1);
    let cost = if chained {
        shapes.iter().map(|s| s.2).sum::<usize>() + body_size
    } else {
        chain
            .iter()
            .zip(&shapes)
            .find(|((n, _), _)| *n == name)
            .map_or(0, |(_, s)| s.2 + s.0.saturating_mul(body_size))
    };
    *steps = steps.saturating_sub(cost.saturating_mul(8));
    if *steps == 0 {
        return None;
    }
    if !chained {
        let all = chain
            .iter()
            .zip(&shapes)
            .find(|((n, _), _)| *n == name)
            .map_or(0, |(_, s)| s.0);
        return (all <= 8).then(|| (name.to_string(), substitute(mb, body)));
    }
    let mut wrapped = body.clone();
    for (_, m) in chain.iter().rev() {
        wrapped = substitute(m, &wrapped);
    }
    Some((name.to_string(), wrapped))
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
