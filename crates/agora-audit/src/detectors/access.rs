//! Who may act: unprotected selfdestruct, owner and withdrawal functions, wrong constructors,
//! locked ether.

use super::*;

/// Whether a function checks who calls it: a modifier, a comparison with msg.sender, a
/// condition that asks a check named for it about the caller (`require(hasRole(R, msg.sender))`,
/// `isOwner(msg.sender)`, `isApprovedForAll(o, msg.sender)`), or a call to a check of the caller
/// (`_checkOwner()`, `_checkRole(R)`).
pub(super) fn guarded(f: &Function, body: &Statement) -> bool {
    if f.access_modifier {
        return true;
    }
    let caller = |x: &Expression| {
        is_member(x, "msg", "sender") || matches!(called_name(x), Some("_msgSender"))
    };
    let mut checked = false;
    walk_stmt_exprs(body, &mut |e| {
        // (`msg.sender == tx.origin` asks whether the caller is an account: anyone's is.)
        if let Expression::Equal(_, a, b) | Expression::NotEqual(_, a, b) = e
            && (is_member(a, "msg", "sender") || is_member(b, "msg", "sender"))
            && !is_member(a, "tx", "origin")
            && !is_member(b, "tx", "origin")
        {
            checked = true;
        }
        if let Some(name) = called_name(e)
            && name.starts_with("_check")
        {
            checked = true;
        }
    });
    walk_stmt(body, &mut |st| {
        if let Some(cond) = tested(st) {
            // A lookup of the caller's balance is no authorization; a check named for one is.
            checked |= contains(cond, &|x| match x {
                Expression::FunctionCall(_, callee, args) => {
                    let name = match callee.as_ref() {
                        Expression::Variable(v) => v.name.to_ascii_lowercase(),
                        Expression::MemberAccess(_, _, m) => m.name.to_ascii_lowercase(),
                        _ => return false,
                    };
                    [
                        "role",
                        "owner",
                        "admin",
                        "auth",
                        "whitelist",
                        "operator",
                        "approved",
                    ]
                    .iter()
                    .any(|w| name.contains(w))
                        && args.iter().any(&caller)
                }
                _ => false,
            });
        }
    });
    checked
}

pub(super) fn selfdestruct(out: &mut Out<'_, '_>, f: &Function, body: &Statement) {
    if !f.exposed || f.ty == FunctionTy::Constructor || guarded(f, body) {
        return;
    }
    let mut hits = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if matches!(called_name(e), Some("selfdestruct")) {
            hits.push(expr_loc(e));
        }
    });
    for loc in hits {
        out.at(
            &UNPROTECTED_SELFDESTRUCT,
            &loc,
            format!("anyone can call `{}` and destroy the contract", f.name),
        );
    }
}

/// A function meant as the constructor whose name does not make it one.
pub(super) fn wrong_constructor(out: &mut Out<'_, '_>, c: &Contract) {
    let own = || c.functions.iter().filter(|f| !f.inherited);
    let has_constructor = own().any(|f| f.ty == FunctionTy::Constructor || f.name == c.name);
    if !out.src().before_05 || has_constructor {
        return;
    }
    for f in own() {
        if f.ty != FunctionTy::Function || !f.exposed || f.view || f.name.is_empty() {
            continue;
        }
        // A constructor sets up state.
        let writes_state = f.body.as_ref().is_some_and(|b| {
            let mut w = false;
            walk_stmt_exprs(b, &mut |e| {
                if let Expression::Assign(_, lhs, _) = e {
                    w |= root_name(lhs).is_some_and(|n| c.state_vars.contains(n));
                }
            });
            w
        });
        if !writes_state {
            continue;
        }
        // Same letters, another case: `function owned()` in `contract Owned` never runs as the
        // constructor.
        if f.name != c.name && f.name.eq_ignore_ascii_case(&c.name) {
            out.line(
                &WRONG_CONSTRUCTOR,
                f.line,
                f.line,
                format!(
                    "`{}` looks like the constructor of `{}` but is a public function anyone can call",
                    f.name, c.name
                ),
            );
        }
    }
}

/// A contract that accepts ether and has no way to send any out.
pub(super) fn locked_ether(out: &mut Out<'_, '_>, c: &Contract) {
    let Some(payable) = c.functions.iter().find(|f| f.payable) else {
        return;
    };
    // Inherited code may pay out, an interface or abstract contract has no code to judge, and
    // assembly may call out: only self-contained, complete contracts are judged.
    if !c.bases.is_empty() || c.functions.iter().any(|f| f.body.is_none()) {
        return;
    }
    let mut assembly = false;
    for f in &c.functions {
        if let Some(body) = &f.body {
            walk_stmt(body, &mut |s| {
                assembly |= matches!(s, Statement::Assembly { .. })
            });
        }
    }
    if assembly {
        return;
    }
    let mut pays = false;
    for f in &c.functions {
        if let Some(body) = &f.body {
            walk_stmt_exprs(body, &mut |e| {
                pays |= matches!(
                    called_member(e),
                    Some((
                        "transfer" | "send" | "call" | "delegatecall" | "callcode",
                        _
                    ))
                ) || matches!(called_name(e), Some("selfdestruct"));
            });
        }
    }
    if !pays {
        out.line(
            &LOCKED_ETHER,
            payable.line,
            payable.line,
            format!("`{}` accepts ether that nothing can take out", c.name),
        );
    }
}

/// Whether the function checks its caller or a state condition before acting: a modifier, or a
/// `require`/`if` on msg.sender or on any state variable (`require(!initialized)`).
pub(super) fn checks_state(c: &Contract, f: &Function, body: &Statement) -> bool {
    if guarded(f, body) {
        return true;
    }
    let mut checked = false;
    walk_stmt(body, &mut |s| {
        let cond = match s {
            Statement::If(_, cond, _, _) => Some(cond),
            Statement::Expression(_, e) => match e {
                Expression::FunctionCall(_, callee, args) if matches!(callee.as_ref(), Expression::Variable(v) if v.name == "require" || v.name == "assert") => {
                    args.first()
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(cond) = cond {
            walk_expr(cond, &mut |x| {
                if let Expression::Variable(v) = x
                    && c.state_vars.contains(&v.name)
                {
                    checked = true;
                }
            });
        }
    });
    checked
}

/// Arbitrary delegatecall targets, and owner changes anyone can make.
pub(super) fn access(
    out: &mut Out<'_, '_>,
    c: &Contract,
    facts: &Facts,
    f: &Function,
    body: &Statement,
) {
    if !f.exposed || f.ty == FunctionTy::Constructor || f.name == c.name {
        return;
    }
    let unguarded = !guarded(f, body);
    let mut hits: Vec<(&Detector, Loc, String)> = Vec::new();
    // Array lengths written directly (before 0.6): shrunk below zero without a check on the
    // length, or set to what the caller asks; then any slot of storage is an element.
    let tainted = tainted_names(f, body);
    // A lower bound on the length (`length > 0`, `length != 0`; not `0 <= length`, always true).
    let mut length_checked: Vec<&str> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        let zero = |x: &Expression| matches!(x, Expression::NumberLiteral(_, n, _, _) if n == "0");
        let pairs: Vec<(&Expression, &Expression, bool)> = match e {
            Expression::More(_, a, b) => vec![(a, b, true)],
            Expression::MoreEqual(_, a, b) => vec![(a, b, false)],
            Expression::Less(_, a, b) => vec![(b, a, true)],
            Expression::LessEqual(_, a, b) => vec![(b, a, false)],
            Expression::NotEqual(_, a, b) => vec![(a, b, true), (b, a, true)],
            _ => Vec::new(),
        };
        for (big, small, strict) in pairs {
            if strict || !zero(small) {
                length_checked.extend(length_of(c, big));
            }
        }
    });
    let mut caller_sized: Vec<&str> = Vec::new();
    walk_stmt_exprs(body, &mut |e| match e {
        Expression::PostDecrement(loc, x)
        | Expression::PreDecrement(loc, x)
        | Expression::AssignSubtract(loc, x, _) => {
            if let Some(arr) = length_of(c, x)
                && !length_checked.contains(&arr)
            {
                hits.push((
                    &ARBITRARY_STORAGE,
                    *loc,
                    format!("`{arr}.length` is shrunk unchecked: below zero it covers all storage"),
                ));
            }
        }
        Expression::Assign(loc, x, v) => {
            if let Some(arr) = length_of(c, x)
                && carries(v, &tainted)
            {
                caller_sized.push(arr);
                hits.push((
                    &ARBITRARY_STORAGE,
                    *loc,
                    format!("the caller sets `{arr}.length`: any storage slot becomes an element"),
                ));
            }
        }
        _ => {}
    });
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::Assign(loc, x, _) = e
            && let Expression::ArraySubscript(_, arr, Some(index)) = x.as_ref()
            && root_name(arr).is_some_and(|n| caller_sized.contains(&n))
            && carries(index, &tainted)
        {
            hits.push((
                &ARBITRARY_STORAGE,
                *loc,
                "a write at an index the caller chooses, past a length the caller chose".into(),
            ));
        }
    });
    walk_stmt_exprs(body, &mut |e| {
        // Calling data the caller chose into a delegate: the Parity wallet pattern.
        let forwards_data = |args: &[Expression]| args.iter().any(|a| is_member(a, "msg", "data"));
        if unguarded
            && let Expression::FunctionCall(_, _, args) = e
            && let Some(("delegatecall", _)) = called_member(e)
            && forwards_data(args)
        {
            hits.push((
                &ARBITRARY_DELEGATECALL,
                expr_loc(e),
                "anyone's call data is delegated: every function of the target runs as this contract"
                    .into(),
            ));
        }
        if unguarded
            && let Some(("delegatecall", target)) = called_member(e)
            && root_name(target).is_some_and(|n| f.params.iter().any(|p| p == n))
        {
            hits.push((
                &ARBITRARY_DELEGATECALL,
                expr_loc(e),
                "delegatecall to an address the caller passes".into(),
            ));
        }
    });
    // From the declaration (where the missing guard belongs) to the write.
    let mut ranges: Vec<(usize, String)> = Vec::new();
    if f.ty == FunctionTy::Function && !checks_state(c, f, body) {
        let auth = &facts.auth;
        for (loc, name) in auth_writes(c, auth, body) {
            ranges.push((
                out.unit.line(&loc),
                format!("anyone can call `{}` and set `{name}`", f.name),
            ));
        }
        // Through the call graph: a helper (often internal) that sets them unguarded.
        walk_stmt_exprs(body, &mut |e| {
            if let Some(callee) = called_name(e)
                && callee != f.name
                && let Some(g) = c
                    .functions
                    .iter()
                    .find(|g| g.name == callee && g.ty == FunctionTy::Function && g.body.is_some())
                && let Some(gb) = &g.body
                && !checks_state(c, g, gb)
                && let Some((_, name)) = auth_writes(c, auth, gb).into_iter().next()
            {
                ranges.push((
                    out.unit.line(&expr_loc(e)),
                    format!(
                        "anyone can call `{}`, which calls `{callee}` and sets `{name}`",
                        f.name
                    ),
                ));
            }
        });
    }
    for (d, loc, m) in hits {
        out.at(d, &loc, m);
    }
    for (end, m) in ranges {
        out.line(&UNPROTECTED_OWNER, f.line, end.max(f.line), m);
    }
}

/// State variables that decide who may act: compared with msg.sender somewhere (in a function
/// or a modifier), or named as an owner or admin. Mappings (`tokenOwner[id]`, `_owners[id]`)
/// record who owns each item: data, not the contract's access control — unless named as owners
/// and looked up by the caller in a condition (`require(owners[msg.sender] != 0)`). Not a state
/// variable declared both here and in a base.
pub(super) fn auth_vars(c: &Contract) -> Vec<String> {
    let mut out: Vec<String> = c
        .state_vars
        .iter()
        .filter(|n| !c.state_maps.contains(*n))
        .filter(|n| {
            let n = n.to_ascii_lowercase();
            n.contains("owner") || n.contains("admin")
        })
        .cloned()
        .collect();
    for g in &c.functions {
        let Some(body) = &g.body else { continue };
        walk_stmt_exprs(body, &mut |e| {
            if let Expression::ArraySubscript(_, m, Some(i)) = e
                && is_member(i, "msg", "sender")
                && let Expression::Variable(v) = m.as_ref()
                && c.state_maps.contains(&v.name)
                && {
                    let n = v.name.to_ascii_lowercase();
                    n.contains("owner") || n.contains("admin")
                }
            {
                out.push(v.name.clone());
            }
            if let Expression::Equal(_, a, b) | Expression::NotEqual(_, a, b) = e {
                for (x, y) in [(a, b), (b, a)] {
                    if is_member(x, "msg", "sender")
                        && let Some(n) = root_name(y)
                        && c.state_vars.contains(n)
                        && !c.state_maps.contains(n)
                    {
                        out.push(n.to_string());
                    }
                }
            }
        });
    }
    // A shadowed name is two variables: which one a check reads is not known here.
    out.retain(|n| !c.shadowed.contains(n));
    out
}

/// Assignments to `auth` variables in `body`.
pub(super) fn auth_writes(c: &Contract, auth: &[String], body: &Statement) -> Vec<(Loc, String)> {
    let mut out = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::Assign(loc, lhs, _) = e
            && let Some(name) = root_name(lhs)
            && c.state_vars.contains(name)
            && auth.iter().any(|a| a == name)
        {
            out.push((*loc, name.to_string()));
        }
    });
    out
}

/// Ether paid out of a per-account balance that the function never debits (so the caller is paid
/// again and again), or guarded by a check the wrong way round (`amount >= balance`).
pub(super) fn withdrawals(out: &mut Out<'_, '_>, c: &Contract, f: &Function, body: &Statement) {
    if !f.exposed || f.ty != FunctionTy::Function || guarded(f, body) {
        return;
    }
    // `x.transfer(a)`, `x.send(a)`, `x.call.value(a)(…)`: the amount.
    let mut paid: Vec<(Loc, &Expression)> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::FunctionCall(_, callee, args) = e
            && let (Expression::MemberAccess(_, _, m), [amount]) =
                (callee.as_ref(), args.as_slice())
            && matches!(m.name.as_str(), "transfer" | "send" | "value")
        {
            paid.push((expr_loc(e), amount));
        }
    });
    let balance_of_caller = |x: &Expression| {
        matches!(x, Expression::ArraySubscript(_, m, Some(i))
            if is_member(i, "msg", "sender") && root_name(m).is_some_and(|n| c.state_vars.contains(n)))
    };
    let mut written: Vec<&str> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::Assign(_, lhs, _)
        | Expression::AssignSubtract(_, lhs, _)
        | Expression::Delete(_, lhs) = e
        {
            written.extend(root_name(lhs));
        }
    });
    let mut hits: Vec<(Loc, String)> = Vec::new();
    for (loc, amount) in &paid {
        if balance_of_caller(amount)
            && let Some(name) = root_name(amount)
            && !written.contains(&name)
        {
            hits.push((
                *loc,
                format!("pays out `{name}[msg.sender]` without ever reducing it"),
            ));
        }
    }
    // `require(amount >= balances[msg.sender])` before paying `amount`.
    let amounts: Vec<&str> = paid.iter().filter_map(|(_, a)| root_name(a)).collect();
    walk_stmt_exprs(body, &mut |e| {
        let (big, small) = match e {
            Expression::MoreEqual(_, a, b) | Expression::More(_, a, b) => (a, b),
            Expression::LessEqual(_, a, b) | Expression::Less(_, a, b) => (b, a),
            _ => return,
        };
        if balance_of_caller(small)
            && root_name(big)
                .is_some_and(|n| amounts.contains(&n) && f.params.iter().any(|p| p == n))
        {
            hits.push((
                expr_loc(e),
                "the balance check is the wrong way round: it lets through amounts above the balance"
                    .into(),
            ));
        }
    });
    for (loc, m) in hits {
        out.at(&UNPROTECTED_WITHDRAWAL, &loc, m);
    }
}

/// State variables any caller can make their own address: assigned `msg.sender` in a function
/// anyone can call (the king, the frontrunner, the last bidder).
pub(super) fn claimable_addresses(c: &Contract) -> Vec<String> {
    let mut out = Vec::new();
    for f in &c.functions {
        let Some(body) = &f.body else { continue };
        if !f.exposed || f.ty == FunctionTy::Constructor || f.name == c.name || guarded(f, body) {
            continue;
        }
        walk_stmt_exprs(body, &mut |e| {
            if let Expression::Assign(_, lhs, rhs) = e
                && is_member(converted(rhs), "msg", "sender")
                && let Some(n) = root_name(lhs)
                && c.state_vars.contains(n)
            {
                out.push(n.to_string());
            }
        });
    }
    out
}

/// Ether paid out by a function anyone can call, to the caller or to an address the caller
/// names: the whole balance, a fixed amount or an amount the caller chooses, with no check of
/// who calls and no record of what the caller put in (no mapping entry of the caller's or the
/// recipient's is read or written).
pub(super) fn open_withdrawals(
    out: &mut Out<'_, '_>,
    c: &Contract,
    f: &Function,
    body: &Statement,
) {
    // A payable function takes the caller's ether in the same call (a game, an exchange).
    if !f.exposed || f.ty != FunctionTy::Function || f.view || f.payable || guarded(f, body) {
        return;
    }
    // A check of tx.origin is a check of the caller (wrong, and reported as such); ether the
    // caller must send in (`msg.value`) is a deposit; a condition on what the caller passes
    // (a puzzle's answer, a signature) decides who is paid.
    let mut origin_or_value = false;
    walk_stmt_exprs(body, &mut |e| {
        // `msg.sender == tx.origin` only asks for an account without code: no authorization.
        let origin_check = match e {
            Expression::Equal(_, a, b) | Expression::NotEqual(_, a, b) => {
                let origin = |x: &Expression| is_member(x, "tx", "origin");
                let sender = |x: &Expression| is_member(x, "msg", "sender");
                (origin(a) && !sender(b)) || (origin(b) && !sender(a))
            }
            _ => false,
        };
        origin_or_value |= origin_check || is_member(e, "msg", "value");
    });
    // An equality on what the caller passes (a puzzle's answer, a secret) decides who is paid;
    // `to != address(0)` or `amount <= limit` decides nothing about who.
    let names_param = |x: &Expression| {
        contains(
            x,
            &|y| matches!(y, Expression::Variable(v) if f.params.contains(&v.name)),
        )
    };
    let mut on_input = false;
    walk_stmt(body, &mut |st| {
        if let Some(cond) = tested(st) {
            on_input |= contains(
                cond,
                &|x| matches!(x, Expression::Equal(_, a, b) if names_param(a) || names_param(b)),
            );
        }
    });
    if origin_or_value || on_input {
        return;
    }
    let param =
        |e: &Expression| root_name(converted(e)).is_some_and(|n| f.params.iter().any(|p| p == n));
    let caller_chosen = |e: &Expression| {
        let e = converted(e);
        is_member(e, "msg", "sender") || matches!(called_name(e), Some("_msgSender")) || param(e)
    };
    // Locals and what they were declared with (`uint256 all = address(this).balance;`).
    let mut inits: Vec<(&str, &Expression)> = Vec::new();
    walk_stmt(body, &mut |st| {
        if let Statement::VariableDefinition(_, decl, Some(init)) = st
            && let Some(n) = &decl.name
        {
            inits.push((&n.name, init));
        }
    });
    let whole_or_fixed = |a: &Expression| {
        is_member(a, "this", "balance")
            || matches!(a, Expression::MemberAccess(_, b, m)
                if m.name == "balance" && matches!(converted(b), Expression::Variable(v) if v.name == "this"))
            // A fixed amount, not zero (`call.value(0)` sends nothing).
            || matches!(a, Expression::NumberLiteral(_, n, _, _) if !n.trim_start_matches('0').is_empty())
            || matches!(a, Expression::HexNumberLiteral(_, n, _) if !n.trim_start_matches("0x").trim_start_matches('0').is_empty())
            || matches!(a, Expression::RationalNumberLiteral(..))
            || param(a)
    };
    let amount_ok = |a: &Expression| {
        whole_or_fixed(a)
            || matches!(a, Expression::Variable(v)
                if inits.iter().rev().find(|(n, _)| *n == v.name).is_some_and(|(_, i)| whole_or_fixed(i)))
    };
    // Who receives what: `r.transfer(a)`, `r.send(a)`, `r.call{value: a}(…)`, `r.call.value(a)(…)`.
    let mut paid: Vec<(Loc, &Expression, &Expression)> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        let Expression::FunctionCall(loc, callee, args) = e else {
            return;
        };
        match callee.as_ref() {
            Expression::MemberAccess(_, r, m)
                if matches!(m.name.as_str(), "transfer" | "send") && args.len() == 1 =>
            {
                paid.push((*loc, r, &args[0]));
            }
            Expression::FunctionCallBlock(_, inner, block) => {
                if let (Expression::MemberAccess(_, r, m), Statement::Args(_, named)) =
                    (inner.as_ref(), block.as_ref())
                    && m.name == "call"
                    && let Some(v) = named.iter().find(|a| a.name.name == "value")
                {
                    paid.push((*loc, r, &v.expr));
                }
            }
            Expression::FunctionCall(_, inner, value) => {
                if let (Expression::MemberAccess(_, call, vm), [amount]) =
                    (inner.as_ref(), value.as_slice())
                    && vm.name == "value"
                    && let Expression::MemberAccess(_, r, m) = call.as_ref()
                    && m.name == "call"
                {
                    paid.push((*loc, r, amount));
                }
            }
            _ => {}
        }
    });
    if paid.is_empty() {
        return;
    }
    // What the caller put in: any mapping entry keyed by the caller or by a parameter.
    let mut recorded = false;
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::ArraySubscript(_, m, Some(i)) = e
            && root_name(m).is_some_and(|n| c.state_maps.contains(n))
            && caller_chosen(i)
        {
            recorded = true;
        }
    });
    if recorded {
        return;
    }
    for (loc, to, amount) in paid {
        if caller_chosen(to) && amount_ok(amount) {
            out.at(
                &ANYONE_CAN_WITHDRAW,
                &loc,
                format!(
                    "anyone can call `{}` and take the contract's ether: no check of the caller, no deposit of theirs",
                    f.name
                ),
            );
        }
    }
}
