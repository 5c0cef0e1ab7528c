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
/// `bytes4(keccak256("f(uint256)"))`, `C.f.selector`, `abi.encodeCall(C.f, …)`, or a constant or
/// local holding one) into a contract of the audit whose storage differs from the caller's
/// where that function reads or writes: the callee's variable lives in a slot where the caller
/// keeps a variable of another type (SWC-112; the Parity wallet and Ethernaut's Preservation).
/// The callee is the contract the call names, or the one the target's state variable is typed
/// as; else, when several contracts define the function, all of them must differ.
pub(super) fn delegated_layouts(out: &mut Out<'_, '_>, ci: usize, c: &Contract, body: &Statement) {
    let unit = out.unit;
    let (deployable, address_types) = (&out.deployable, &out.address_types);
    let steps = &mut out.layout_steps;
    let mut calls: Vec<(Loc, Option<String>, String)> = Vec::new();
    let mut inits: Option<BTreeMap<&str, &Expression>> = None;
    walk_stmt_exprs(body, &mut |e| {
        let Some(("delegatecall", target)) = called_member(e) else {
            return;
        };
        let Expression::FunctionCall(loc, _, args) = e else {
            return;
        };
        // Into itself (a multicall): the same storage.
        if is_this(converted(target)) || *steps == 0 {
            return;
        }
        // What names can hold a selector: the contract's constants, the function's locals.
        let inits = inits.get_or_insert_with(|| {
            *steps = steps.saturating_sub(c.state_inits.len());
            let mut m: BTreeMap<&str, &Expression> =
                c.state_inits.iter().map(|(n, x)| (n.as_str(), x)).collect();
            walk_stmt(body, &mut |st| {
                *steps = steps.saturating_sub(1);
                if let Statement::VariableDefinition(_, decl, Some(x)) = st
                    && let Some(n) = &decl.name
                {
                    m.insert(n.name.as_str(), x);
                }
            });
            m
        });
        if let Some((named, function)) = args.iter().find_map(|a| delegated(inits, a, 0)) {
            // A target kept in a state variable typed as a contract (`Lib lib;
            // address(lib).delegatecall(…)`) names its contract, when the call does not.
            let typed = || match converted(target) {
                Expression::Variable(v) if !c.shadowed.contains(&v.name) => {
                    c.state_types.get(&v.name).cloned()
                }
                _ => None,
            };
            calls.push((*loc, named.or_else(typed), function));
        }
    });
    if calls.is_empty() {
        return;
    }
    // The code runs in the storage of the contract that is deployed: this one, or one that
    // inherits it (its own variables come after this one's). At most 64 of them are compared.
    *steps = steps.saturating_sub(unit.ancestors.iter().map(Vec::len).sum::<usize>());
    let mut contexts: Vec<usize> = vec![ci];
    contexts.extend(
        (0..unit.contracts.len())
            .filter(|&k| unit.ancestors[k].contains(&ci))
            .take(63),
    );
    let mut hits: Vec<(Loc, String)> = Vec::new();
    let mut done: BTreeSet<usize> = BTreeSet::new();
    'contexts: for x in contexts {
        let layout = unit.storage_layout(x);
        *steps = steps.saturating_sub(layout.len());
        let caller: BTreeMap<(usize, usize), (&str, String)> = slots(address_types, &layout)
            .into_iter()
            .map(|(s, o, n, t)| ((s, o), (n, t)))
            .collect();
        for (i, (loc, named, function)) in calls.iter().enumerate() {
            if done.contains(&i) {
                continue;
            }
            // A contract of the audit named (not an interface): only it.
            let named = named.as_ref().filter(|n| deployable.contains(n.as_str()));
            let mut differences = Vec::new();
            for (j, callee) in unit.contracts.iter().enumerate() {
                *steps = steps.saturating_sub(1 + callee.functions.len());
                if *steps == 0 {
                    // Past the bound, nothing more is claimed either way (what was found
                    // stands).
                    break 'contexts;
                }
                if callee.stateless
                    || j == x
                    || j == ci
                    || unit.ancestors[x].contains(&j)
                    || named.is_some_and(|n| n != &callee.name)
                    || !callee
                        .functions
                        .iter()
                        .any(|g| &g.name == function && g.body.is_some())
                {
                    continue;
                }
                differences.push(layout_difference(
                    unit,
                    address_types,
                    j,
                    function,
                    &caller,
                    steps,
                ));
            }
            if differences.iter().all(Option::is_some)
                && let Some(Some(why)) = differences.into_iter().next()
            {
                let why = if x == ci {
                    why
                } else {
                    format!("in `{}`, which inherits it: {why}", unit.contracts[x].name)
                };
                hits.push((*loc, why));
                done.insert(i);
            }
        }
    }
    for (loc, why) in hits {
        out.at(&DELEGATE_LAYOUT, &loc, why);
    }
}

fn is_this(e: &Expression) -> bool {
    matches!(e, Expression::Variable(v) if v.name == "this")
}

/// The contract (when named) and function a delegatecall's argument names: a signature string,
/// a `.selector`, an `abi.encodeCall`, or a constant or local holding one.
fn delegated(
    inits: &BTreeMap<&str, &Expression>,
    a: &Expression,
    depth: usize,
) -> Option<(Option<String>, String)> {
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
                if let Some(init) = inits.get(v.name.as_str()) {
                    found = delegated(inits, init, 1);
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

/// Where each variable of a layout lives: its slot, its offset in the slot, its name, and its
/// type (`address payable` and contract types read as `address`). Value types share a slot
/// while they fit (`bool` 1 byte, `address` 20, `uintN`/`intN` N/8, `bytesN` N); a mapping, an
/// array, `string` or `bytes` takes a slot of its own, as does what follows it. The layout stops
/// at a struct, an enum or a fixed-size array (their size is not known here), so nothing past
/// one is compared.
fn slots<'l>(
    address_types: &BTreeSet<&str>,
    layout: &[(&'l str, &'l str)],
) -> Vec<(usize, usize, &'l str, String)> {
    let norm = |ty: &str| -> String {
        if ty == "address payable" || address_types.contains(ty) {
            "address".into()
        } else {
            ty.to_string()
        }
    };
    let size = |ty: &str| -> Option<usize> {
        let bits = |rest: &str| {
            rest.parse::<usize>()
                .ok()
                .filter(|b| b % 8 == 0 && (8..=256).contains(b))
        };
        match ty {
            "bool" => Some(1),
            "address" => Some(20),
            _ => {
                if let Some(r) = ty.strip_prefix("uint").or_else(|| ty.strip_prefix("int")) {
                    bits(r).map(|b| b / 8)
                } else if let Some(r) = ty.strip_prefix("bytes") {
                    r.parse::<usize>().ok().filter(|n| (1..=32).contains(n))
                } else {
                    None
                }
            }
        }
    };
    let (mut slot, mut offset) = (0usize, 0usize);
    let mut out = Vec::with_capacity(layout.len());
    for (name, ty) in layout {
        let ty = norm(ty);
        match size(&ty) {
            Some(n) => {
                if offset + n > 32 {
                    slot += 1;
                    offset = 0;
                }
                out.push((slot, offset, *name, ty));
                offset += n;
            }
            // A mapping, a dynamic array, `string` or `bytes` fills one slot of its own.
            None if ty.starts_with("mapping")
                || ty.ends_with("[]")
                || ty == "string"
                || ty == "bytes" =>
            {
                if offset > 0 {
                    slot += 1;
                }
                out.push((slot, 0, *name, ty));
                slot += 1;
                offset = 0;
            }
            // A struct or a fixed-size array fills as many slots as its parts, an enum packs like
            // a small integer: where what follows lies is not known here, so the layout stops
            // (after it, when it surely starts a slot).
            None => {
                if offset == 0 {
                    out.push((slot, 0, *name, ty));
                }
                break;
            }
        }
    }
    out
}

/// Why contract `j`'s `function` (with the internal functions it calls) would touch the wrong
/// variables in storage laid out as `caller`: the first state variable it reads or writes
/// whose slot and offset hold a variable of another type in the caller. None when every
/// variable it touches matches (or lies past the caller's variables).
fn layout_difference(
    unit: &Unit<'_>,
    address_types: &BTreeSet<&str>,
    j: usize,
    function: &str,
    caller: &BTreeMap<(usize, usize), (&str, String)>,
    steps: &mut usize,
) -> Option<String> {
    let callee = &unit.contracts[j];
    let layout = unit.storage_layout(j);
    *steps = steps.saturating_sub(layout.len());
    let layout = slots(address_types, &layout);
    // The function and what it calls inside its contract (with its ancestors), each once.
    let lineage: Vec<&Contract> = std::iter::once(callee)
        .chain(unit.ancestors[j].iter().map(|&a| &unit.contracts[a]))
        .collect();
    let mut queue = vec![function.to_string()];
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut touched: BTreeSet<String> = BTreeSet::new();
    while let Some(name) = queue.pop() {
        // A bound on the walk: a callee's own functions, never more than a few hundred.
        if !seen.insert(name.clone()) || seen.len() > 256 || *steps == 0 {
            continue;
        }
        for g in lineage
            .iter()
            .flat_map(|k| k.functions.iter())
            .filter(|g| g.name == name && g.ty == FunctionTy::Function)
        {
            *steps = steps.saturating_sub(1);
            let Some(b) = g.body.as_deref() else {
                continue;
            };
            // A local or parameter of the same name hides the state variable.
            let mut hidden: BTreeSet<&str> = g.params.iter().map(String::as_str).collect();
            walk_stmt(b, &mut |st| {
                if let Statement::VariableDefinition(_, decl, _) = st
                    && let Some(n) = &decl.name
                {
                    hidden.insert(n.name.as_str());
                }
            });
            walk_stmt_exprs(b, &mut |x| {
                *steps = steps.saturating_sub(1);
                if let Expression::Variable(v) = x
                    && !hidden.contains(v.name.as_str())
                {
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
    for (slot, offset, name, ty) in &layout {
        if !touched.contains(*name) {
            continue;
        }
        let Some((here, here_ty)) = caller.get(&(*slot, *offset)) else {
            // Past the caller's variables (or between them): no variable of its is hit.
            continue;
        };
        if here_ty != ty {
            return Some(format!(
                "the `delegatecall` runs `{}.{function}`, which uses `{name}` ({ty}) in slot {slot} where this contract keeps `{here}` ({here_ty}): the storage layouts differ",
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
