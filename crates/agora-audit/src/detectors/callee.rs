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
    /// Whether contract `k`'s function `name` tests its parameter `i` against its state.
    authorizing: RefCell<BTreeMap<(usize, String, usize), bool>>,
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
            authorizing: RefCell::new(BTreeMap::new()),
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
        // At an address the caller chose, the code is whatever the caller deployed there.
        if self.chosen_contract(scope, recv) {
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

impl Callees<'_, '_> {
    /// Whether `body` has another contract of the audit check its caller: a call that passes
    /// the caller (`registry.checkAdmin(msg.sender)`, or `require(acl.allowed(msg.sender))`)
    /// to a function that, in every implementation here, tests that parameter against its
    /// state: an equality with a state variable, or a `mapping(… => bool)` entry keyed by it.
    /// A balance looked up for the caller authorizes nothing.
    pub(super) fn checks_caller(&self, scope: &Scope<'_>, body: &Statement) -> bool {
        let caller = |a: &Expression| {
            is_member(a, "msg", "sender") || matches!(called_name(a), Some("_msgSender"))
        };
        let mut calls: Vec<(&str, &Expression, usize)> = Vec::new();
        walk_stmt_exprs(body, &mut |e| {
            if let Expression::FunctionCall(_, _, args) = e
                && let Some((m, recv)) = called_member(e)
                && let Some(i) = args.iter().position(caller)
            {
                calls.push((m, recv, i));
            }
        });
        calls.into_iter().any(|(m, recv, i)| {
            if self.steps.get() == 0 {
                return false;
            }
            let ks: Vec<usize> = match recv {
                Expression::Variable(v) if self.libraries.contains_key(v.name.as_str()) => {
                    vec![self.libraries[v.name.as_str()]]
                }
                _ => match receiver_type(scope, recv)
                    .and_then(|ty| self.implementations.get(ty.as_str()))
                {
                    Some(ks) => ks.clone(),
                    None => return false,
                },
            };
            self.steps.set(self.steps.get().saturating_sub(ks.len()));
            !ks.is_empty() && self.steps.get() > 0 && ks.iter().all(|&k| self.authorizes(k, m, i))
        })
    }

    /// Whether contract `k`'s function `m` tests its parameter `i` against its state, in a
    /// condition or in what it returns.
    fn authorizes(&self, k: usize, m: &str, i: usize) -> bool {
        let key = (k, m.to_string(), i);
        if let Some(&known) = self.authorizing.borrow().get(&key) {
            return known;
        }
        let found = self.authorizes_uncached(k, m, i);
        self.authorizing.borrow_mut().insert(key, found);
        found
    }

    fn authorizes_uncached(&self, k: usize, m: &str, i: usize) -> bool {
        let unit = self.unit;
        let lineage: Vec<&Contract> = std::iter::once(k)
            .chain(unit.ancestors[k].iter().copied())
            .map(|a| &unit.contracts[a])
            .collect();
        let Some(g) = lineage.iter().find_map(|c| {
            c.functions
                .iter()
                .find(|g| g.name == m && g.ty == FunctionTy::Function && g.body.is_some())
        }) else {
            return false;
        };
        let (Some(body), Some((p, _))) = (g.body.as_deref(), g.param_types.get(i)) else {
            return false;
        };
        let state_type = |n: &str| lineage.iter().find_map(|c| c.state_types.get(n));
        let is_param = |x: &Expression| matches!(x, Expression::Variable(v) if &v.name == p);
        let is_state =
            |x: &Expression| matches!(x, Expression::Variable(v) if state_type(&v.name).is_some());
        let test = |x: &Expression| {
            contains(x, &|y| match y {
                Expression::Equal(_, a, b) | Expression::NotEqual(_, a, b) => {
                    (is_param(a) && is_state(b)) || (is_state(a) && is_param(b))
                }
                Expression::ArraySubscript(_, map, Some(key)) => {
                    contains(key, &is_param)
                        && root_name(map).and_then(state_type).is_some_and(|t| {
                            t.replace(' ', "").ends_with("=>bool)")
                                || t.replace(' ', "").ends_with("=>bool))")
                        })
                }
                _ => false,
            })
        };
        let mut found = false;
        walk_stmt(body, &mut |st| {
            self.steps.set(self.steps.get().saturating_sub(1));
            if let Some(cond) = tested(st) {
                found |= test(cond);
            }
            if let Statement::Return(_, Some(x)) = st {
                found |= test(x);
            }
        });
        found
    }
}

impl Callees<'_, '_> {
    /// Whether `recv` is a contract (typed as one, or converted to one: `Bank(msg.sender)`) at
    /// an address the caller chose: the caller, or a parameter.
    pub(super) fn chosen_contract(&self, scope: &Scope<'_>, recv: &Expression) -> bool {
        let at = converted_address(recv);
        let chosen = is_member(at, "msg", "sender")
            || is_member(at, "tx", "origin")
            || matches!(called_name(at), Some("_msgSender"))
            || matches!(at, Expression::Variable(v) if scope.function.params.contains(&v.name));
        chosen
            && receiver_type(scope, recv).is_some_and(|ty| {
                self.implementations.contains_key(ty.as_str())
                    || (!self.libraries.contains_key(ty.as_str())
                        && ty.bytes().next().is_some_and(|b| b.is_ascii_uppercase()))
            })
    }
}

/// The address under conversions to contract types and addresses: `x` in `Bank(x)`,
/// `IERC20(address(x))`, `payable(x)`.
fn converted_address(e: &Expression) -> &Expression {
    match e {
        Expression::FunctionCall(_, callee, args)
            if args.len() == 1
                && match callee.as_ref() {
                    Expression::Type(..) => true,
                    Expression::Variable(v) => {
                        v.name == "payable"
                            || v.name
                                .bytes()
                                .next()
                                .is_some_and(|b| b.is_ascii_uppercase())
                    }
                    _ => false,
                } =>
        {
            converted_address(&args[0])
        }
        Expression::Parenthesis(_, x) => converted_address(x),
        _ => e,
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
