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

/// A `delegatecall` that names the function it runs (`abi.encodeWithSignature("f(uint256)")`,
/// `bytes4(keccak256("f(uint256)"))`, `C.f.selector`, `abi.encodeCall(C.f, …)`, or a constant
/// holding one) into a contract of the audit whose storage differs from the caller's where that
/// function reads or writes: the callee's variable lives in the caller's slot of another
/// variable (SWC-112; the Parity wallet and Ethernaut's Preservation). When several contracts
/// define the function, all of them must differ.
pub(super) fn delegated_layouts(out: &mut Out<'_, '_>, ci: usize, c: &Contract, body: &Statement) {
    let unit = out.unit;
    let steps = &mut out.layout_steps;
    let mut hits: Vec<(Loc, String)> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        let Some(("delegatecall", target)) = called_member(e) else {
            return;
        };
        let Expression::FunctionCall(loc, _, args) = e else {
            return;
        };
        // Into itself (a multicall): the same storage.
        if is_this(converted(target)) {
            return;
        }
        let Some((named, function)) = args.iter().find_map(|a| delegated(c, a, 0)) else {
            return;
        };
        let caller = unit.storage_layout(ci);
        let mut differences = Vec::new();
        for (j, callee) in unit.contracts.iter().enumerate() {
            if *steps == 0 {
                // Past the bound, nothing is claimed either way.
                return;
            }
            *steps -= 1;
            if callee.stateless
                || j == ci
                || unit.ancestors[ci].contains(&j)
                || named.as_ref().is_some_and(|n| {
                    n != &callee.name && unit.contracts.iter().any(|k| &k.name == n && !k.stateless)
                })
                || !callee
                    .functions
                    .iter()
                    .any(|g| g.name == function && g.body.is_some())
            {
                continue;
            }
            differences.push(layout_difference(unit, j, &function, &caller, steps));
        }
        if differences.iter().all(Option::is_some)
            && let Some(Some(why)) = differences.into_iter().next()
        {
            hits.push((*loc, why));
        }
    });
    for (loc, why) in hits {
        out.at(&DELEGATE_LAYOUT, &loc, why);
    }
}

fn is_this(e: &Expression) -> bool {
    matches!(e, Expression::Variable(v) if v.name == "this")
}

/// The contract (when named) and function a delegatecall's argument names: a signature string,
/// a `.selector`, an `abi.encodeCall`, or a constant of the contract holding one.
fn delegated(c: &Contract, a: &Expression, depth: usize) -> Option<(Option<String>, String)> {
    let mut found = None;
    walk_expr(a, &mut |x| {
        if found.is_some() {
            return;
        }
        match x {
            Expression::StringLiteral(parts) => {
                let text: String = parts.iter().map(|p| p.string.as_str()).collect();
                if let Some((name, _)) = text.split_once('(')
                    && !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    found = Some((None, name.to_string()));
                }
            }
            Expression::MemberAccess(_, inner, sel) if sel.name == "selector" => {
                found = member_function(inner);
            }
            Expression::FunctionCall(_, callee, args)
                if matches!(callee.as_ref(), Expression::MemberAccess(_, b, m)
                    if m.name == "encodeCall" && matches!(b.as_ref(), Expression::Variable(v) if v.name == "abi")) =>
            {
                found = args.first().and_then(member_function);
            }
            Expression::Variable(v) if depth == 0 => {
                if let Some((_, init)) = c.state_inits.iter().find(|(n, _)| n == &v.name) {
                    found = delegated(c, init, 1);
                }
            }
            _ => {}
        }
    });
    found
}

/// `C.f` (or `f`): the contract named, and the function.
fn member_function(e: &Expression) -> Option<(Option<String>, String)> {
    match e {
        Expression::MemberAccess(_, base, f) => match base.as_ref() {
            Expression::Variable(v) => Some((Some(v.name.clone()), f.name.clone())),
            _ => Some((None, f.name.clone())),
        },
        Expression::Variable(v) => Some((None, v.name.clone())),
        _ => None,
    }
}

/// Why contract `j`'s `function` (with the internal functions it calls) would touch the wrong
/// variables in storage laid out as `caller`: the first variable it reads or writes whose slot
/// holds another variable there, or that follows variables of other types. None when every
/// variable it touches matches.
fn layout_difference(
    unit: &Unit<'_>,
    j: usize,
    function: &str,
    caller: &[(&str, &str)],
    steps: &mut usize,
) -> Option<String> {
    let callee = &unit.contracts[j];
    let layout = unit.storage_layout(j);
    // The function and what it calls inside its contract (with its ancestors), each once.
    let lineage: Vec<&Contract> = std::iter::once(callee)
        .chain(unit.ancestors[j].iter().map(|&a| &unit.contracts[a]))
        .collect();
    let bodies = |name: &str| -> Vec<&Statement> {
        lineage
            .iter()
            .flat_map(|k| k.functions.iter())
            .filter(|g| g.name == name && g.ty == FunctionTy::Function)
            .filter_map(|g| g.body.as_deref())
            .collect()
    };
    let mut queue = vec![function.to_string()];
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut touched: BTreeSet<String> = BTreeSet::new();
    while let Some(name) = queue.pop() {
        // A bound on the walk: a callee's own functions, never more than a few hundred.
        if !seen.insert(name.clone()) || seen.len() > 256 {
            continue;
        }
        for b in bodies(&name) {
            walk_stmt_exprs(b, &mut |x| {
                *steps = steps.saturating_sub(1);
                if let Expression::Variable(v) = x {
                    touched.insert(v.name.clone());
                }
                if let Some(n) = called_name(x) {
                    queue.push(n.to_string());
                }
            });
        }
    }
    if *steps == 0 {
        return None;
    }
    // Whether every slot before this one holds a variable of the same type in both.
    let mut same_before = true;
    for (slot, (name, ty)) in layout.iter().enumerate() {
        *steps = steps.saturating_sub(1);
        let Some((here, here_ty)) = caller.get(slot) else {
            break;
        };
        if !touched.contains(*name) {
            same_before &= here_ty == ty;
            continue;
        }
        if here != name || here_ty != ty || !same_before {
            return Some(format!(
                "the `delegatecall` runs `{}.{function}`, which uses `{name}` ({ty}) in the slot where this contract keeps `{here}` ({here_ty}): the storage layouts differ",
                callee.name
            ));
        }
    }
    None
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
