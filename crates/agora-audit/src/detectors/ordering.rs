//! Transaction order: front-running of amounts and approvals.

use super::*;

/// ERC-20 approve races and puzzles whose answer a front-runner can copy.
pub(super) fn front_running(
    out: &mut Out<'_, '_>,
    c: &Contract,
    facts: &Facts,
    f: &Function,
    body: &Statement,
) {
    let mut hits: Vec<(&Detector, Loc, String)> = Vec::new();
    // A require on the current allowance (`require(v == 0 || allowed[..] == 0)`) is the fix.
    // Reported from the declaration (where the fix goes) to the overwrite.
    if f.exposed && f.name == "approve" && f.params.len() == 2 && !checks_state(c, f, body) {
        let mut writes = Vec::new();
        walk_stmt_exprs(body, &mut |e| {
            if let Expression::Assign(loc, lhs, _) = e
                && root_name(lhs).is_some_and(|n| c.state_vars.contains(n))
            {
                writes.push(out.unit.line(loc));
            }
        });
        for line in writes {
            out.line(
                &APPROVE_RACE,
                f.line,
                line.max(f.line),
                "the allowance is overwritten: a spender can use the old and the new one".into(),
            );
        }
    }
    // Paying out a state amount that transactions set (`reward = msg.value`): whoever's
    // transaction is mined first decides what the payout is (transaction-order dependence).
    // A refund of the previous bid to the previous bidder (an address anyone can take) is what
    // that bidder paid, not a race.
    if f.exposed {
        let (set_by_tx, claimable) = (&facts.set_by_tx, &facts.claimable);
        walk_stmt_exprs(body, &mut |e| {
            if let Expression::FunctionCall(loc, callee, args) = e
                && let (Expression::MemberAccess(_, to, m), [Expression::Variable(v)]) =
                    (callee.as_ref(), args.as_slice())
                && matches!(m.name.as_str(), "transfer" | "send" | "value")
                && set_by_tx.contains(&v.name)
                && !root_name(to).is_some_and(|n| claimable.iter().any(|x| x == n))
            {
                hits.push((
                    &TX_ORDER,
                    *loc,
                    format!(
                        "pays out `{}`, which another transaction can change first",
                        v.name
                    ),
                ));
            }
        });
    }
    // A reveal that checks the sender's earlier commitment is the commit-reveal fix.
    let mut commitment = false;
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::Equal(_, a, b) = e {
            let sender = |x: &Expression| contains(x, &|y| is_member(y, "msg", "sender"));
            commitment |= (sender(a) && contains(b, &is_hash_call))
                || (sender(b) && contains(a, &is_hash_call));
        }
    });
    if f.exposed && !commitment {
        walk_stmt_exprs(body, &mut |e| {
            // Against a fixed hash (not a per-sender commitment: that is the commit-reveal fix).
            let per_sender = |x: &Expression| contains(x, &|y| is_member(y, "msg", "sender"));
            if let Expression::Equal(loc, a, b) = e
                && ((is_hash_call(a) && contains(a, &|x| is_param(f, x)) && !per_sender(b))
                    || (is_hash_call(b) && contains(b, &|x| is_param(f, x)) && !per_sender(a)))
            {
                hits.push((
                    &HASH_SOLUTION,
                    *loc,
                    "the answer to a hash puzzle is submitted in the clear".into(),
                ));
            }
        });
    }
    for (d, loc, m) in hits {
        out.at(d, &loc, m);
    }
}

/// Plain state variables that an open function sets to what its transaction brings: msg.value or
/// a parameter.
pub(super) fn amounts_set_by_transactions(c: &Contract) -> Vec<String> {
    let mut out = Vec::new();
    for g in &c.functions {
        let Some(body) = &g.body else { continue };
        // A constructor runs once, before anyone can race it.
        if !g.exposed || g.ty != FunctionTy::Function || g.name == c.name {
            continue;
        }
        walk_stmt_exprs(body, &mut |e| {
            if let Expression::Assign(_, lhs, rhs) = e
                && let Expression::Variable(v) = lhs.as_ref()
                && c.state_vars.contains(&v.name)
                && !c.state_arrays.contains(&v.name)
                && (is_member(rhs, "msg", "value") || is_param(g, rhs))
            {
                out.push(v.name.clone());
            }
        });
    }
    out
}
