//! Calls into code whose source is in the audit: other contracts and libraries. Whether such a
//! call can hand control to code nobody knows, which may then re-enter the caller.

use super::*;
use crate::model::type_text;
use std::cell::{Cell, RefCell};

/// Steps (contracts and expressions looked at in callees) that following calls into the audit's
/// code may take in one audit: beyond real projects, and a bound on what a crafted job can
/// cost. Past it, a callee counts as unknown, as code outside the audit does.
const MAX_CALLEE_STEPS: usize = 1 << 22;

/// How many calls deep into other contracts and libraries calls are followed; deeper code
/// counts as unknown (it may call anyone).
const MAX_CALLEE_DEPTH: usize = 6;

/// The audit's contracts by the type names they answer to, and what is known of their functions.
pub(super) struct Callees<'u, 'a> {
    unit: &'u Unit<'a>,
    /// For each contract or interface name: the contracts (not interfaces or libraries) that are
    /// it or inherit from it.
    implementations: BTreeMap<&'u str, Vec<usize>>,
    /// Libraries by name.
    libraries: BTreeMap<&'u str, usize>,
    /// Whether contract (or library) `k`'s function `name` can call out, once known.
    memo: RefCell<BTreeMap<(usize, String), bool>>,
    steps: Cell<usize>,
}

/// What a body's names mean: the state of its contract, its function, its locals, the
/// libraries its contract attaches.
pub(super) struct Scope<'s> {
    pub(super) state: &'s dyn Fn(&str) -> Option<String>,
    pub(super) function: &'s Function,
    pub(super) locals: BTreeMap<String, String>,
    pub(super) usings: &'s [String],
}

impl<'u, 'a> Callees<'u, 'a> {
    pub(super) fn new(unit: &'u Unit<'a>) -> Self {
        let mut implementations: BTreeMap<&'u str, Vec<usize>> = BTreeMap::new();
        let mut libraries = BTreeMap::new();
        for (k, c) in unit.contracts.iter().enumerate() {
            implementations.entry(c.name.as_str()).or_default();
            if c.stateless {
                if c.functions.iter().any(|f| f.body.is_some()) {
                    libraries.entry(c.name.as_str()).or_insert(k);
                }
                continue;
            }
            for a in std::iter::once(k).chain(unit.ancestors[k].iter().copied()) {
                implementations
                    .entry(unit.contracts[a].name.as_str())
                    .or_default()
                    .push(k);
            }
        }
        for v in implementations.values_mut() {
            v.sort_unstable();
            v.dedup();
        }
        Callees {
            unit,
            implementations,
            libraries,
            memo: RefCell::new(BTreeMap::new()),
            steps: Cell::new(MAX_CALLEE_STEPS),
        }
    }

    /// Whether the member call `recv.m(…)` in `scope` can hand control to code outside the
    /// audit: `Some(true)` for a call on a contract type whose implementations here call out in
    /// `m`, or a library function (`L.m(x)`, or `x.m()` through `using L for …`) that does;
    /// `None` for a call on a contract or interface of the audit that has no implementation
    /// here (unknown code, which may do anything); `Some(false)` otherwise.
    pub(super) fn member_calls_out(
        &self,
        scope: &Scope<'_>,
        m: &str,
        recv: &Expression,
        depth: usize,
    ) -> Option<bool> {
        if depth > MAX_CALLEE_DEPTH || self.steps.get() == 0 {
            return None;
        }
        if let Expression::Variable(v) = recv
            && let Some(&l) = self.libraries.get(v.name.as_str())
        {
            return Some(self.function_calls_out(l, m, depth + 1) == Some(true));
        }
        if let Some(ty) = receiver_type(scope, recv)
            && let Some(ks) = self.implementations.get(ty.as_str())
        {
            if ks.is_empty() {
                return None;
            }
            return Some(ks.iter().any(|&k| {
                self.steps.set(self.steps.get().saturating_sub(1));
                self.steps.get() > 0 && self.function_calls_out(k, m, depth + 1) == Some(true)
            }));
        }
        Some(scope.usings.iter().any(|l| {
            self.libraries
                .get(l.as_str())
                .is_some_and(|&l| self.function_calls_out(l, m, depth + 1) == Some(true))
        }))
    }

    /// Whether contract (or library) `k`'s function `function` (its nearest definition, with
    /// the internal functions and the audit's code it calls) makes a call that can reach code
    /// outside the audit. None when `k` has no such function or the bound is reached.
    fn function_calls_out(&self, k: usize, function: &str, depth: usize) -> Option<bool> {
        let key = (k, function.to_string());
        if let Some(&known) = self.memo.borrow().get(&key) {
            return Some(known);
        }
        let unit = self.unit;
        let lineage: Vec<&Contract> = std::iter::once(k)
            .chain(unit.ancestors[k].iter().copied())
            .map(|a| &unit.contracts[a])
            .collect();
        let find = |name: &str| {
            lineage.iter().find_map(|c| {
                c.functions
                    .iter()
                    .find(|g| g.name == name && g.ty == FunctionTy::Function && g.body.is_some())
            })
        };
        find(function)?;
        // Assumed while it is looked at: a call back into itself adds nothing.
        self.memo.borrow_mut().insert(key.clone(), false);
        let state = |n: &str| lineage.iter().find_map(|c| c.state_types.get(n)).cloned();
        let usings: Vec<String> = lineage.iter().flat_map(|c| c.usings.clone()).collect();
        let mut queue = vec![function.to_string()];
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut out = false;
        while let Some(name) = queue.pop() {
            if out || !seen.insert(name.clone()) {
                continue;
            }
            let Some(g) = find(&name) else {
                continue;
            };
            let Some(body) = g.body.as_deref() else {
                continue;
            };
            let scope = Scope {
                state: &state,
                function: g,
                locals: local_types(body),
                usings: &usings,
            };
            let mut members: Vec<(&str, &Expression)> = Vec::new();
            walk_stmt_exprs(body, &mut |e| {
                self.steps.set(self.steps.get().saturating_sub(1));
                if external_call(e).is_some() {
                    out = true;
                }
                if let Some(n) = called_name(e) {
                    queue.push(n.to_string());
                }
                if let Some((m, recv)) = called_member(e) {
                    members.push((m, recv));
                }
            });
            if self.steps.get() == 0 {
                self.memo.borrow_mut().remove(&key);
                return None;
            }
            // Unknown code called from here may call anyone.
            out |= members
                .iter()
                .any(|(m, recv)| self.member_calls_out(&scope, m, recv, depth + 1) != Some(false));
            if self.steps.get() == 0 {
                self.memo.borrow_mut().remove(&key);
                return None;
            }
        }
        self.memo.borrow_mut().insert(key, out);
        Some(out)
    }
}

/// Locals declared in `body`, and their types as written.
pub(super) fn local_types(body: &Statement) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk_stmt(body, &mut |st| {
        if let Statement::VariableDefinition(_, decl, _) = st
            && let Some(n) = &decl.name
        {
            out.insert(n.name.clone(), type_text(&decl.ty));
        }
    });
    out
}

/// The declared type of a call's receiver: a local, a parameter or a state variable, or `T` in
/// a conversion `T(x)`.
fn receiver_type(scope: &Scope<'_>, recv: &Expression) -> Option<String> {
    match recv {
        Expression::Variable(v) => scope
            .locals
            .get(&v.name)
            .cloned()
            .or_else(|| {
                scope
                    .function
                    .param_types
                    .iter()
                    .find(|(n, _)| n == &v.name)
                    .map(|(_, t)| t.clone())
            })
            .or_else(|| (scope.state)(&v.name)),
        Expression::FunctionCall(_, callee, args) if args.len() == 1 => match callee.as_ref() {
            Expression::Variable(t) => Some(t.name.clone()),
            _ => None,
        },
        Expression::Parenthesis(_, x) => receiver_type(scope, x),
        _ => None,
    }
}
