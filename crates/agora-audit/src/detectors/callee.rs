//! Calls into code whose source is in the audit: other contracts and libraries. Whether such a
//! call can hand control to code nobody knows (which may then re-enter the caller), and whether
//! it checks who the caller is.

use super::*;
use crate::model::type_text;
use std::cell::{Cell, RefCell};

/// Steps (functions looked up, statements and expressions walked in callees) that following
/// calls into the audit's code may take in one audit: beyond real projects, and a bound on
/// what a crafted job can cost. Past it, a call into the audit's code counts as one that may
/// call anyone (reported), and no other contract's check of the caller is trusted.
const MAX_CALLEE_STEPS: usize = 1 << 22;

/// How many calls deep (a call into another contract or library is one) calls are followed;
/// deeper code counts as unknown (it may call anyone).
const MAX_CALLEE_DEPTH: usize = 6;

/// What a call into the audit's code can do.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Reach {
    /// It (or what it calls) calls code outside the audit.
    Out,
    /// Every implementation is known and none calls out (or it is a view: a static call).
    Quiet,
    /// Nothing is known: an interface with no implementation here, code at an address the
    /// caller chose, or past the bounds.
    Unknown,
}

/// A contract's callable functions by name: (declaring contract, index in it).
type ByName<'u> = BTreeMap<&'u str, (usize, usize)>;

/// The audit's contracts by the type names they answer to, and what is known of their functions.
pub(super) struct Callees<'u, 'a> {
    unit: &'u Unit<'a>,
    /// For each contract or interface name: the contracts (not interfaces or libraries) that are
    /// it or inherit from it.
    implementations: BTreeMap<&'u str, Vec<usize>>,
    /// Libraries by name (all of a name: any of them may be the one compiled).
    libraries: BTreeMap<&'u str, Vec<usize>>,
    /// Contracts and interfaces by name.
    by_name: BTreeMap<&'u str, Vec<usize>>,
    /// For each contract looked into: its callable functions by name, the nearest definition
    /// (declaring contract, index in it).
    functions: RefCell<BTreeMap<usize, ByName<'u>>>,
    /// Whether contract (or library) `k`'s function `name` calls out, once known.
    memo: RefCell<BTreeMap<(usize, String), Reach>>,
    /// Functions being looked at (a call back into one of them adds nothing more), and whether
    /// an answer leaned on one of them (then it is not kept).
    in_progress: RefCell<BTreeMap<(usize, String), usize>>,
    /// The lowest frame (0 outermost) that a call back into a function being looked at
    /// reached, while the current one was computed (`usize::MAX`: none).
    floor: Cell<usize>,
    /// Whether the current answer met the depth bound (then it is not kept: asked from
    /// nearer, it may be found in full).
    truncated: Cell<bool>,
    /// Whether a declared function (contract, index) checks its parameter `i` against its
    /// state, as a statement (`false`) or in a condition (`true`).
    authorizing: RefCell<BTreeMap<(usize, usize, usize, bool), bool>>,
    steps: Cell<usize>,
}

/// What a body's names mean: the state of its contract, its function's parameters, its locals,
/// the libraries its contract attaches.
pub(super) struct Scope<'s> {
    state: &'s dyn Fn(&str) -> Option<String>,
    params: BTreeMap<&'s str, &'s str>,
    locals: BTreeMap<String, String>,
    /// Locals set from an address the caller chose (`Bank b = Bank(msg.sender);`).
    chosen_locals: BTreeSet<String>,
    usings: &'s [String],
    /// The compiler calls views with STATICCALL (from 0.5), which cannot re-enter.
    static_views: bool,
}

impl<'s> Scope<'s> {
    pub(super) fn new(
        state: &'s dyn Fn(&str) -> Option<String>,
        function: &'s Function,
        body: &Statement,
        usings: &'s [String],
        static_views: bool,
    ) -> Self {
        let params: BTreeMap<&str, &str> = function
            .param_types
            .iter()
            .filter(|(n, _)| !n.is_empty())
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        let mut chosen_locals = BTreeSet::new();
        walk_stmt(body, &mut |st| {
            if let Statement::VariableDefinition(_, decl, Some(init)) = st
                && let Some(n) = &decl.name
                && chosen_address(&params, converted_address(init))
            {
                chosen_locals.insert(n.name.clone());
            }
        });
        Scope {
            state,
            params,
            chosen_locals,
            locals: local_types(body),
            usings,
            static_views,
        }
    }
}

impl<'u, 'a> Callees<'u, 'a> {
    pub(super) fn new(unit: &'u Unit<'a>) -> Self {
        let mut implementations: BTreeMap<&'u str, Vec<usize>> = BTreeMap::new();
        let mut libraries: BTreeMap<&'u str, Vec<usize>> = BTreeMap::new();
        let mut by_name: BTreeMap<&'u str, Vec<usize>> = BTreeMap::new();
        for (k, c) in unit.contracts.iter().enumerate() {
            // A library has code; an interface has none.
            if c.stateless && c.functions.iter().any(|f| f.body.is_some()) {
                libraries.entry(c.name.as_str()).or_default().push(k);
                continue;
            }
            by_name.entry(c.name.as_str()).or_default().push(k);
            implementations.entry(c.name.as_str()).or_default();
            if c.stateless {
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
            by_name,
            functions: RefCell::new(BTreeMap::new()),
            memo: RefCell::new(BTreeMap::new()),
            in_progress: RefCell::new(BTreeMap::new()),
            floor: Cell::new(usize::MAX),
            truncated: Cell::new(false),
            authorizing: RefCell::new(BTreeMap::new()),
            steps: Cell::new(MAX_CALLEE_STEPS),
        }
    }

    fn charge(&self, n: usize) -> bool {
        self.steps.set(self.steps.get().saturating_sub(n));
        self.steps.get() > 0
    }

    /// Whether the bound on following calls has been reached in this audit.
    pub(super) fn exhausted(&self) -> bool {
        self.steps.get() == 0
    }

    /// Contract `k`'s function `name` as its lineage resolves it (the nearest definition with a
    /// body, or a declaration when only one exists): (declaring contract, index).
    fn function(&self, k: usize, name: &str) -> Option<(usize, usize)> {
        if let Some(m) = self.functions.borrow().get(&k) {
            return m.get(name).copied();
        }
        if self.steps.get() == 0 {
            return None;
        }
        let unit = self.unit;
        let mut m: BTreeMap<&'u str, (usize, usize)> = BTreeMap::new();
        let mut declared: BTreeMap<&'u str, (usize, usize)> = BTreeMap::new();
        for a in std::iter::once(k).chain(unit.ancestors[k].iter().copied()) {
            let fs = &unit.contracts[a].functions;
            if !self.charge(fs.len()) {
                return None;
            }
            for (i, g) in fs.iter().enumerate() {
                if g.ty != FunctionTy::Function {
                    continue;
                }
                if g.body.is_some() {
                    m.entry(g.name.as_str()).or_insert((a, i));
                } else {
                    declared.entry(g.name.as_str()).or_insert((a, i));
                }
            }
        }
        for (n, at) in declared {
            m.entry(n).or_insert(at);
        }
        let found = m.get(name).copied();
        self.functions.borrow_mut().insert(k, m);
        found
    }

    fn declared(&self, at: (usize, usize)) -> &'u Function {
        &self.unit.contracts[at.0].functions[at.1]
    }

    /// Whether `recv` is a contract of the audit (typed as one, or converted to one:
    /// `Bank(msg.sender)`) at an address the caller chose: the caller, or a parameter.
    pub(super) fn chosen_contract(&self, scope: &Scope<'_>, recv: &Expression) -> bool {
        let mut at = converted_address(recv);
        // An element of an array the caller passes (`bs[i].f()`).
        while let Expression::ArraySubscript(_, base, _) = at {
            at = base;
        }
        let chosen = chosen_address(&scope.params, at)
            || matches!(at, Expression::Variable(v) if scope.chosen_locals.contains(&v.name));
        chosen
            && receiver_type(scope, recv).is_some_and(|ty| self.by_name.contains_key(ty.as_str()))
    }

    /// Whether every declaration of `m` in the contracts or interfaces named `ty` is a view
    /// (called with STATICCALL, it cannot change state or re-enter to do so).
    fn static_call(&self, ty: &str, m: &str) -> bool {
        let Some(ks) = self.by_name.get(ty) else {
            return false;
        };
        let mut any = false;
        for &k in ks {
            if !self.charge(1) {
                return false;
            }
            if let Some(at) = self.function(k, m) {
                if !self.declared(at).view {
                    return false;
                }
                any = true;
            }
        }
        any
    }

    /// What the member call `recv.m(…)` in `scope` can do: call out through an implementation
    /// of its contract type here, or through a library function (`L.m(x)`, or `x.m()` through
    /// `using L for …`); `Unknown` for an interface with no implementation here, or a contract
    /// at an address the caller chose.
    pub(super) fn member_calls_out(
        &self,
        scope: &Scope<'_>,
        m: &str,
        recv: &Expression,
        depth: usize,
    ) -> Reach {
        if depth > MAX_CALLEE_DEPTH {
            self.truncated.set(true);
            return Reach::Unknown;
        }
        if !self.charge(1) {
            return Reach::Unknown;
        }
        if let Expression::Variable(v) = recv
            && let Some(ls) = self.libraries.get(v.name.as_str())
        {
            return self.any_calls_out(ls, m, depth + 1);
        }
        if let Some(ty) = receiver_type(scope, recv)
            && let Some(ks) = self.implementations.get(ty.as_str())
        {
            if scope.static_views && self.static_call(&ty, m) {
                return Reach::Quiet;
            }
            // At an address the caller chose, the code is whatever the caller deployed there.
            if ks.is_empty() || self.chosen_contract(scope, recv) {
                return Reach::Unknown;
            }
            return self.any_calls_out(ks, m, depth + 1);
        }
        let mut out = Reach::Quiet;
        self.charge(scope.usings.len());
        for l in scope.usings {
            if let Some(ls) = self.libraries.get(l.as_str()) {
                match self.any_calls_out(ls, m, depth + 1) {
                    Reach::Out => return Reach::Out,
                    Reach::Unknown => out = Reach::Unknown,
                    Reach::Quiet => {}
                }
            }
        }
        out
    }

    /// The most any of `ks`'s function `m` can do.
    fn any_calls_out(&self, ks: &[usize], m: &str, depth: usize) -> Reach {
        let mut out = Reach::Quiet;
        for &k in ks {
            if !self.charge(1) {
                return Reach::Unknown;
            }
            match self.function_calls_out(k, m, depth) {
                Some(Reach::Out) => return Reach::Out,
                Some(Reach::Unknown) => out = Reach::Unknown,
                _ => {}
            }
        }
        out
    }

    /// What contract (or library) `k`'s function `function` (its nearest definition, with the
    /// internal functions and the audit's code it calls) can do. None when `k` has no such
    /// function.
    fn function_calls_out(&self, k: usize, function: &str, depth: usize) -> Option<Reach> {
        let key = (k, function.to_string());
        if let Some(&known) = self.memo.borrow().get(&key) {
            return Some(known);
        }
        let at = self.function(k, function)?;
        if self.declared(at).body.is_none() {
            return Some(Reach::Unknown);
        }
        if let Some(&frame) = self.in_progress.borrow().get(&key) {
            // A call back into a function being looked at: what it does is being found.
            self.floor.set(self.floor.get().min(frame));
            return Some(Reach::Quiet);
        }
        let frame = self.in_progress.borrow().len();
        self.in_progress.borrow_mut().insert(key.clone(), frame);
        let outer_floor = self.floor.replace(usize::MAX);
        let outer_truncated = self.truncated.replace(false);
        let out = self.body_calls_out(k, function, depth);
        self.in_progress.borrow_mut().remove(&key);
        // Kept unless it leaned on a call back into a function that is still being looked
        // at further out, met the depth bound, or ran out of steps: asked again, it is found
        // again. (A cycle back to this function itself is closed here.)
        let inner = self.floor.get();
        if inner >= frame && !self.truncated.get() && self.steps.get() > 0 {
            self.memo.borrow_mut().insert(key, out);
        }
        self.floor
            .set(outer_floor.min(if inner < frame { inner } else { usize::MAX }));
        self.truncated.set(outer_truncated || self.truncated.get());
        Some(out)
    }

    fn body_calls_out(&self, k: usize, function: &str, depth: usize) -> Reach {
        let unit = self.unit;
        let lineage: Vec<&Contract> = std::iter::once(k)
            .chain(unit.ancestors[k].iter().copied())
            .map(|a| &unit.contracts[a])
            .collect();
        let state = |n: &str| lineage.iter().find_map(|c| c.state_types.get(n)).cloned();
        self.charge(lineage.iter().map(|c| c.usings.len()).sum());
        let mut usings: Vec<String> = lineage.iter().flat_map(|c| c.usings.clone()).collect();
        usings.sort();
        usings.dedup();
        let mut queue = vec![function.to_string()];
        let mut seen: BTreeSet<String> = BTreeSet::new();
        while let Some(name) = queue.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(at) = self.function(k, &name) else {
                continue;
            };
            let g = self.declared(at);
            let Some(body) = g.body.as_deref() else {
                continue;
            };
            let static_views = !unit.files[unit.contracts[at.0].file].before_05;
            let scope = Scope::new(&state, g, body, &usings, static_views);
            let mut members: Vec<(&str, &Expression)> = Vec::new();
            let mut direct = false;
            walk_stmt(body, &mut |_| {
                self.charge(1);
            });
            walk_stmt_exprs(body, &mut |e| {
                self.charge(1);
                direct |= external_call(e).is_some();
                if let Some(n) = called_name(e) {
                    queue.push(n.to_string());
                }
                if let Some((m, recv)) = called_member(e) {
                    members.push((m, recv));
                }
            });
            if direct {
                return Reach::Out;
            }
            if self.steps.get() == 0 {
                return Reach::Unknown;
            }
            for (m, recv) in members {
                match self.member_calls_out(&scope, m, recv, depth + 1) {
                    // Unknown code called from here may call anyone.
                    Reach::Out | Reach::Unknown => return Reach::Out,
                    Reach::Quiet => {}
                }
                if self.steps.get() == 0 {
                    return Reach::Unknown;
                }
            }
        }
        if self.steps.get() == 0 {
            Reach::Unknown
        } else {
            Reach::Quiet
        }
    }
}

impl Callees<'_, '_> {
    /// Whether `body` has another contract of the audit check its caller: a call that passes
    /// the caller to a function of a contract the caller did not choose which, in every
    /// implementation here, refuses any other caller: as a statement, a function that
    /// requires the parameter to equal a state variable or to be set in a state mapping
    /// (`acl.check(msg.sender)`); in a condition, a function returning `bool` that returns such
    /// a test (`require(acl.hasRole(R, msg.sender))`). A balance looked up for the caller, or a
    /// test of what the caller is not, authorizes nothing.
    /// The scope is made only when the body has such a call (most have none).
    pub(super) fn checks_caller<'s>(
        &self,
        scope: impl FnOnce() -> Scope<'s>,
        body: &Statement,
    ) -> bool {
        let caller = |a: &Expression| {
            is_member(a, "msg", "sender") || matches!(called_name(a), Some("_msgSender"))
        };
        // (call, in a condition): at the top of the body, where it always runs; in a
        // condition, as one of the terms that must all hold (`require(a && acl.may(m))`,
        // `if (!acl.may(m)) revert`).
        fn conjuncts<'e>(x: &'e Expression, out: &mut Vec<&'e Expression>) {
            match x {
                Expression::And(_, a, b) => {
                    conjuncts(a, out);
                    conjuncts(b, out);
                }
                Expression::Parenthesis(_, y) => conjuncts(y, out),
                _ => out.push(x),
            }
        }
        let mut calls: Vec<(&Expression, bool)> = Vec::new();
        let top = top_statements(body);
        for st in top {
            let mut terms = Vec::new();
            match st {
                Statement::Expression(_, e) => match condition_of(e) {
                    Some(cond) => conjuncts(cond, &mut terms),
                    None if called_member(e).is_some() => calls.push((e, false)),
                    None => {}
                },
                Statement::If(_, cond, then, _) if reverts(then) => {
                    let mut inner = cond;
                    while let Expression::Parenthesis(_, y) = inner {
                        inner = y;
                    }
                    if let Expression::Not(_, y) = inner {
                        conjuncts(y, &mut terms);
                    }
                }
                _ => {}
            }
            calls.extend(
                terms
                    .into_iter()
                    .filter(|x| called_member(x).is_some())
                    .map(|x| (x, true)),
            );
        }
        calls.retain(
            |(e, _)| matches!(e, Expression::FunctionCall(_, _, args) if args.iter().any(caller)),
        );
        if calls.is_empty() {
            return false;
        }
        let scope = &scope();
        calls.into_iter().any(|(e, in_condition)| {
            let (Expression::FunctionCall(_, _, args), Some((m, recv))) = (e, called_member(e))
            else {
                return false;
            };
            let Some(i) = args.iter().position(caller) else {
                return false;
            };
            if !self.charge(1) || self.chosen_contract(scope, recv) {
                return false;
            }
            let library = match recv {
                Expression::Variable(v) => self.libraries.get(v.name.as_str()),
                _ => None,
            };
            let ks: &[usize] = match library {
                Some(ls) => ls,
                None => match receiver_type(scope, recv)
                    .and_then(|ty| self.implementations.get(ty.as_str()))
                {
                    Some(ks) => ks,
                    None => return false,
                },
            };
            !ks.is_empty()
                && ks.iter().all(|&k| {
                    self.charge(1)
                        && self.function(k, m).is_some_and(|at| {
                            self.declared(at).arity == args.len()
                                && self.authorizes(at, i, in_condition)
                        })
                })
        })
    }

    /// Whether the declared function `at` refuses callers by its parameter `i`.
    fn authorizes(&self, at: (usize, usize), i: usize, in_condition: bool) -> bool {
        let key = (at.0, at.1, i, in_condition);
        if let Some(&known) = self.authorizing.borrow().get(&key) {
            return known;
        }
        let found = self.authorizes_uncached(at, i, in_condition);
        self.authorizing.borrow_mut().insert(key, found);
        found
    }

    fn authorizes_uncached(&self, at: (usize, usize), i: usize, in_condition: bool) -> bool {
        let unit = self.unit;
        let g = self.declared(at);
        let (Some(body), Some((p, _))) = (g.body.as_deref(), g.param_types.get(i)) else {
            return false;
        };
        if p.is_empty() {
            return false;
        }
        if in_condition && !g.returns_bool {
            return false;
        }
        let lineage: Vec<&Contract> = std::iter::once(at.0)
            .chain(unit.ancestors[at.0].iter().copied())
            .map(|a| &unit.contracts[a])
            .collect();
        let is_state = |n: &str| lineage.iter().any(|c| c.state_vars.contains(n));
        let is_p = |x: &Expression| matches!(x, Expression::Variable(v) if &v.name == p);
        let state_var = |x: &Expression| matches!(x, Expression::Variable(v) if is_state(&v.name));
        // `p == owner`, or an entry of a state mapping keyed by `p` (`allowed[p]`,
        // `roles[r].members[p]`), or a conjunction holding one.
        fn test(
            x: &Expression,
            is_p: &dyn Fn(&Expression) -> bool,
            state_var: &dyn Fn(&Expression) -> bool,
            is_state: &dyn Fn(&str) -> bool,
            budget: &Cell<usize>,
        ) -> bool {
            budget.set(budget.get().saturating_sub(1));
            if budget.get() == 0 {
                return false;
            }
            match x {
                Expression::Parenthesis(_, y) => test(y, is_p, state_var, is_state, budget),
                Expression::And(_, a, b) => {
                    test(a, is_p, state_var, is_state, budget)
                        || test(b, is_p, state_var, is_state, budget)
                }
                Expression::Equal(_, a, b) => {
                    (is_p(a) && state_var(b)) || (state_var(a) && is_p(b))
                }
                Expression::ArraySubscript(_, map, Some(key)) => {
                    is_p(key) && root_name(map).is_some_and(is_state)
                }
                _ => false,
            }
        }
        // The negation, for `if (…) revert`: `p != owner`, `!allowed[p]`.
        let refusal = |x: &Expression| match x {
            Expression::NotEqual(_, a, b) => (is_p(a) && state_var(b)) || (state_var(a) && is_p(b)),
            Expression::Not(_, y) => test(y, &is_p, &state_var, &is_state, &self.steps),
            _ => false,
        };
        let mut found = false;
        let top = top_statements(body);
        for st in top {
            if !self.charge(1) {
                return false;
            }
            // A way out before the check (`if (open) return true;`) lets others through.
            let mut returns = false;
            walk_stmt(st, &mut |x| returns |= matches!(x, Statement::Return(..)));
            if returns && !matches!(st, Statement::Return(..)) {
                break;
            }
            match st {
                Statement::Return(_, x) => {
                    // What follows a return never runs.
                    if in_condition && let Some(x) = x {
                        found |= test(x, &is_p, &state_var, &is_state, &self.steps);
                    }
                    break;
                }
                Statement::Expression(_, e) if !in_condition => {
                    if let Some(cond) = condition_of(e) {
                        found |= test(cond, &is_p, &state_var, &is_state, &self.steps);
                    }
                }
                Statement::If(_, cond, then, None) if !in_condition && reverts(then) => {
                    found |= refusal(cond);
                }
                _ => {}
            }
        }
        found
    }
}

/// Whether a statement reverts: `revert`, `throw` (read as `revert()`). (A `return` lets the
/// caller through.)
fn reverts(s: &Statement) -> bool {
    match s {
        Statement::Revert(..) => true,
        Statement::Expression(_, e) => matches!(called_name(e), Some("revert")),
        Statement::Block { statements, .. } => statements.first().is_some_and(reverts),
        _ => false,
    }
}

/// Whether an address is one the caller chose: the caller, or a parameter.
fn chosen_address(params: &BTreeMap<&str, &str>, at: &Expression) -> bool {
    is_member(at, "msg", "sender")
        || is_member(at, "tx", "origin")
        || matches!(called_name(at), Some("_msgSender"))
        || matches!(at, Expression::Variable(v) if params.contains_key(v.name.as_str()))
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
fn local_types(body: &Statement) -> BTreeMap<String, String> {
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
            .or_else(|| scope.params.get(v.name.as_str()).map(|t| t.to_string()))
            .or_else(|| (scope.state)(&v.name)),
        Expression::FunctionCall(_, callee, args) if args.len() == 1 => match callee.as_ref() {
            Expression::Variable(t) => Some(t.name.clone()),
            _ => None,
        },
        Expression::Parenthesis(_, x) => receiver_type(scope, x),
        // An element of an array of contracts (`Bank[] bs`: `bs[i]` is a `Bank`).
        Expression::ArraySubscript(_, base, Some(_)) => receiver_type(scope, base).and_then(|t| {
            t.strip_suffix(']')
                .and_then(|t| t.rfind('[').map(|i| t[..i].to_string()))
        }),
        _ => None,
    }
}
