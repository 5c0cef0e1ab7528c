//! Storage and loops: uninitialized storage pointers, unbounded loops, short addresses.

use super::*;

/// Before 0.5, a local struct or array declared without initializer is a storage pointer to slot 0.
pub(super) fn storage_pointers(out: &mut Out<'_, '_>, c: &Contract, body: &Statement) {
    if !out.src().before_05 {
        return;
    }
    let mut hits = Vec::new();
    walk_stmt(body, &mut |s| {
        if let Statement::VariableDefinition(loc, decl, None) = s
            && !matches!(
                decl.storage,
                Some(solang_parser::pt::StorageLocation::Memory(_))
            )
            && let Expression::Variable(ty) = &decl.ty
            && c.structs.contains(&ty.name)
        {
            let name = decl.name.as_ref().map_or("", |n| n.name.as_str());
            hits.push((
                *loc,
                format!("`{name}` points at storage slot 0 and overwrites state"),
            ));
        }
    });
    for (loc, m) in hits {
        out.at(&UNINITIALIZED_STORAGE, &loc, m);
    }
}

/// Gas that grows without bound (SWC-128): loops over a state array, state arrays grown inside
/// a loop, and state arrays reset wholesale (clearing costs gas for every element).
pub(super) fn loops(out: &mut Out<'_, '_>, c: &Contract, f: &Function, body: &Statement) {
    // A constructor's arrays are empty.
    let constructor = f.ty == FunctionTy::Constructor || f.name == c.name;
    let state_array = |x: &Expression| root_name(x).is_some_and(|n| c.state_arrays.contains(n));
    let mut hits: Vec<(Loc, &str)> = Vec::new();
    walk_stmt(body, &mut |s| {
        let (loc, cond, inner) = match s {
            Statement::For(loc, _, Some(cond), _, inner) => (loc, cond.as_ref(), inner.as_deref()),
            Statement::While(loc, cond, inner) => (loc, cond, Some(inner.as_ref())),
            _ => return,
        };
        // In a constructor the array holds only what the deployer put there.
        if !constructor
            && contains(
                cond,
                &|x| matches!(x, Expression::MemberAccess(_, a, m) if m.name == "length" && state_array(a)),
            )
        {
            hits.push((*loc, "a loop over a state array that anyone can grow"));
        } else if let Some(inner) = inner {
            let mut grows = false;
            walk_stmt_exprs(inner, &mut |e| {
                let length = |x: &Expression| matches!(x, Expression::MemberAccess(_, a, m) if m.name == "length" && state_array(a));
                grows |= matches!(called_member(e), Some(("push", a)) if state_array(a))
                    || matches!(e, Expression::AssignAdd(_, x, _) | Expression::PostIncrement(_, x) | Expression::PreIncrement(_, x) if length(x));
            });
            if grows {
                hits.push((*loc, "a loop grows a state array on every call"));
            }
        }
    });
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::Assign(loc, lhs, rhs) = e
            && !constructor
            && state_array(lhs)
            && matches!(lhs.as_ref(), Expression::Variable(_))
            && is_new_array(rhs)
        {
            hits.push((
                *loc,
                "resetting a state array clears every element: its gas grows with it",
            ));
        }
    });
    for (loc, message) in hits {
        let line = out.unit.line(&loc);
        out.line(&UNBOUNDED_LOOP, line, line, message.into());
    }
}

/// Token transfers that trust the length of their arguments (before 0.5), in minimal tokens
/// (a full ERC-20, with `approve`, is left to exchanges that check input lengths).
pub(super) fn short_address(out: &mut Out<'_, '_>, c: &Contract, f: &Function, body: &Statement) {
    if !out.src().before_05
        || !c.bases.is_empty()
        || c.functions.iter().any(|g| g.name == "approve")
        || !f.exposed
        || f.params.len() != 2
        || !matches!(f.name.as_str(), "transfer" | "sendCoin" | "transferFrom")
        || f.modifiers.iter().any(|m| {
            let m = m.to_ascii_lowercase();
            m.contains("size") || m.contains("payload")
        })
    {
        return;
    }
    let mut checks_length = false;
    walk_stmt_exprs(body, &mut |e| {
        checks_length |= matches!(e, Expression::MemberAccess(_, a, m)
            if m.name == "length" && is_member(a, "msg", "data"));
    });
    if !checks_length {
        out.line(
            &SHORT_ADDRESS,
            f.line,
            f.line,
            format!("`{}` does not check the length of its call data", f.name),
        );
    }
}
