//! What the detectors work on: contracts with their state variables, functions and modifiers, the
//! pragma, and walkers over statements and expressions in source order.

use crate::prepass::Rewrite;
use solang_parser::pt::{
    self, ContractPart, Expression, FunctionAttribute, FunctionTy, Loc, SourceUnitPart, Statement,
    Visibility,
};
use std::collections::BTreeSet;

/// Byte offset → line.
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// 1-based line of a byte offset.
    pub(crate) fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// A function (or modifier, constructor, fallback) of a contract.
pub(crate) struct Function {
    pub(crate) name: String,
    pub(crate) ty: FunctionTy,
    /// Public or external (pre-0.5 functions without a visibility are public).
    pub(crate) exposed: bool,
    pub(crate) view: bool,
    /// Declared `constant` (the pre-0.5 spelling of view).
    pub(crate) constant: bool,
    pub(crate) payable: bool,
    /// Modifiers applied (names).
    pub(crate) modifiers: Vec<String>,
    /// One of them checks the caller: its name says so (`onlyOwner`, `auth`), or its body (in
    /// this file) looks at msg.sender or tx.origin. `whenNotPaused` or `nonReentrant` guard
    /// nothing about who calls.
    pub(crate) access_modifier: bool,
    /// Parameter names.
    pub(crate) params: Vec<String>,
    pub(crate) line: usize,
    pub(crate) body: Option<Statement>,
}

/// A contract, library or interface.
pub(crate) struct Contract {
    pub(crate) name: String,
    pub(crate) bases: Vec<String>,
    pub(crate) state_vars: BTreeSet<String>,
    /// State arrays (`T[] name`).
    pub(crate) state_arrays: BTreeSet<String>,
    /// State mappings.
    pub(crate) state_maps: BTreeSet<String>,
    /// Struct names defined in the contract.
    pub(crate) structs: BTreeSet<String>,
    /// State variables with an initializer, and it.
    pub(crate) state_inits: Vec<(String, Expression)>,
    /// `using SafeMath for …` (or another *Math library): arithmetic goes through checked calls.
    pub(crate) safe_math: bool,
    pub(crate) functions: Vec<Function>,
}

/// A parsed file.
pub(crate) struct Unit<'a> {
    pub(crate) lines: &'a LineIndex,
    pub(crate) contracts: Vec<Contract>,
    /// The pragma allows a compiler before 0.8 (unchecked arithmetic), or there is no pragma.
    pub(crate) before_08: bool,
    /// The pragma allows a compiler before 0.5 (constructors named after the contract).
    pub(crate) before_05: bool,
    pub(crate) rewrites: &'a [Rewrite],
}

impl<'a> Unit<'a> {
    pub(crate) fn build(
        unit: &pt::SourceUnit,
        lines: &'a LineIndex,
        rewrites: &'a [Rewrite],
    ) -> Unit<'a> {
        let mut version = None;
        let mut contracts = Vec::new();
        for part in &unit.0 {
            match part {
                SourceUnitPart::PragmaDirective(p) => {
                    if let Some(v) = pragma_version(p) {
                        version = Some(v);
                    }
                }
                SourceUnitPart::ContractDefinition(c) => contracts.push(contract(c, lines)),
                _ => {}
            }
        }
        // Which modifiers check the caller, across the file's contracts (bases included).
        let defined: Vec<(String, bool)> = contracts
            .iter()
            .flat_map(|c: &Contract| &c.functions)
            .filter(|m| m.ty == pt::FunctionTy::Modifier)
            .map(|m| {
                let mut caller = false;
                if let Some(b) = &m.body {
                    walk_stmt_exprs(b, &mut |e| {
                        caller |= is_member(e, "msg", "sender")
                            || is_member(e, "tx", "origin")
                            || matches!(e, Expression::FunctionCall(_, f, _)
                                if matches!(f.as_ref(), Expression::Variable(v) if v.name == "_msgSender"));
                    });
                }
                (m.name.clone(), caller)
            })
            .collect();
        for c in &mut contracts {
            for f in &mut c.functions {
                f.access_modifier = f.modifiers.iter().any(|m| {
                    let n = m.to_ascii_lowercase();
                    let named = ["only", "owner", "admin", "auth", "role"]
                        .iter()
                        .any(|w| n.contains(w));
                    named || defined.iter().any(|(d, caller)| d == m && *caller)
                });
            }
        }
        // Without a pragma, assume the oldest syntax the file could be.
        let below = |minor: u32| version.is_none_or(|(major, m)| major == 0 && m < minor);
        Unit {
            lines,
            contracts,
            before_08: below(8),
            before_05: below(5),
            rewrites,
        }
    }

    pub(crate) fn line(&self, loc: &Loc) -> usize {
        self.lines.line(loc.start())
    }

    pub(crate) fn end_line(&self, loc: &Loc) -> usize {
        self.lines.line(loc.end())
    }
}

/// The lowest (major, minor) version the `solidity` pragma admits.
fn pragma_version(p: &pt::PragmaDirective) -> Option<(u32, u32)> {
    let text = match p {
        pt::PragmaDirective::Version(_, name, cmp) if name.name == "solidity" => cmp
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        pt::PragmaDirective::Identifier(_, Some(name), Some(v)) if name.name == "solidity" => {
            v.name.clone()
        }
        pt::PragmaDirective::StringLiteral(_, name, v) if name.name == "solidity" => {
            v.string.clone()
        }
        _ => return None,
    };
    // The lowest version named decides: `^0.4.24`, `>=0.6.0 <0.9.0`, `0.8.19`.
    let digits: String = text
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts = digits.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    Some((parts.next()?, parts.next().unwrap_or(0)))
}

fn contract(c: &pt::ContractDefinition, lines: &LineIndex) -> Contract {
    let name = c.name.as_ref().map_or(String::new(), |n| n.name.clone());
    let bases = c
        .base
        .iter()
        .map(|b| {
            b.name
                .identifiers
                .last()
                .map_or(String::new(), |i| i.name.clone())
        })
        .collect();
    let mut state_vars = BTreeSet::new();
    let mut state_arrays = BTreeSet::new();
    let mut state_maps = BTreeSet::new();
    let mut structs = BTreeSet::new();
    let mut state_inits = Vec::new();
    let mut safe_math = false;
    let mut functions = Vec::new();
    for part in &c.parts {
        match part {
            ContractPart::VariableDefinition(v) => {
                if let Some(n) = &v.name {
                    state_vars.insert(n.name.clone());
                    if let Some(init) = &v.initializer {
                        state_inits.push((n.name.clone(), init.clone()));
                    }
                    if matches!(v.ty, Expression::ArraySubscript(_, _, None)) {
                        state_arrays.insert(n.name.clone());
                    }
                    if matches!(v.ty, Expression::Type(_, pt::Type::Mapping { .. })) {
                        state_maps.insert(n.name.clone());
                    }
                }
            }
            ContractPart::Using(u) => {
                if let pt::UsingList::Library(path) = &u.list
                    && path
                        .identifiers
                        .last()
                        .is_some_and(|i| i.name.to_ascii_lowercase().contains("math"))
                {
                    safe_math = true;
                }
            }
            ContractPart::StructDefinition(st) => {
                if let Some(n) = &st.name {
                    structs.insert(n.name.clone());
                }
            }
            ContractPart::FunctionDefinition(f) => functions.push(function(f, lines)),
            _ => {}
        }
    }
    Contract {
        name,
        bases,
        state_vars,
        state_arrays,
        state_maps,
        structs,
        state_inits,
        safe_math,
        functions,
    }
}

fn function(f: &pt::FunctionDefinition, lines: &LineIndex) -> Function {
    let mut exposed = true;
    let mut view = false;
    let mut constant = false;
    let mut payable = false;
    let mut modifiers = Vec::new();
    for a in &f.attributes {
        match a {
            FunctionAttribute::Visibility(Visibility::Internal(_) | Visibility::Private(_)) => {
                exposed = false
            }
            FunctionAttribute::Mutability(m) => match m {
                pt::Mutability::Pure(_) | pt::Mutability::View(_) => view = true,
                pt::Mutability::Constant(_) => {
                    view = true;
                    constant = true;
                }
                pt::Mutability::Payable(_) => payable = true,
            },
            FunctionAttribute::BaseOrModifier(_, base) => {
                if let Some(id) = base.name.identifiers.last() {
                    modifiers.push(id.name.clone());
                }
            }
            _ => {}
        }
    }
    let params = f
        .params
        .iter()
        .filter_map(|(_, p)| p.as_ref()?.name.as_ref().map(|n| n.name.clone()))
        .collect();
    Function {
        name: f.name.as_ref().map_or(String::new(), |n| n.name.clone()),
        ty: f.ty,
        params,
        exposed,
        view,
        constant,
        payable,
        modifiers,
        access_modifier: false,
        line: lines.line(f.loc.start()),
        body: f.body.clone(),
    }
}

/// The direct sub-expressions of `e`, in source order.
pub(crate) fn children(e: &Expression) -> Vec<&Expression> {
    use Expression::*;
    match e {
        PostIncrement(_, a)
        | PostDecrement(_, a)
        | New(_, a)
        | Parenthesis(_, a)
        | MemberAccess(_, a, _)
        | Not(_, a)
        | BitwiseNot(_, a)
        | Delete(_, a)
        | PreIncrement(_, a)
        | PreDecrement(_, a)
        | UnaryPlus(_, a)
        | Negate(_, a) => vec![a],
        ArraySubscript(_, a, b) => {
            let mut v = vec![a.as_ref()];
            v.extend(b.as_deref());
            v
        }
        ArraySlice(_, a, b, c) => {
            let mut v = vec![a.as_ref()];
            v.extend(b.as_deref());
            v.extend(c.as_deref());
            v
        }
        FunctionCall(_, f, args) => {
            let mut v = vec![f.as_ref()];
            v.extend(args.iter());
            v
        }
        FunctionCallBlock(_, f, _) => vec![f],
        NamedFunctionCall(_, f, args) => {
            let mut v = vec![f.as_ref()];
            v.extend(args.iter().map(|a| &a.expr));
            v
        }
        Power(_, a, b)
        | Multiply(_, a, b)
        | Divide(_, a, b)
        | Modulo(_, a, b)
        | Add(_, a, b)
        | Subtract(_, a, b)
        | ShiftLeft(_, a, b)
        | ShiftRight(_, a, b)
        | BitwiseAnd(_, a, b)
        | BitwiseXor(_, a, b)
        | BitwiseOr(_, a, b)
        | Less(_, a, b)
        | More(_, a, b)
        | LessEqual(_, a, b)
        | MoreEqual(_, a, b)
        | Equal(_, a, b)
        | NotEqual(_, a, b)
        | And(_, a, b)
        | Or(_, a, b)
        | Assign(_, a, b)
        | AssignOr(_, a, b)
        | AssignAnd(_, a, b)
        | AssignXor(_, a, b)
        | AssignShiftLeft(_, a, b)
        | AssignShiftRight(_, a, b)
        | AssignAdd(_, a, b)
        | AssignSubtract(_, a, b)
        | AssignMultiply(_, a, b)
        | AssignDivide(_, a, b)
        | AssignModulo(_, a, b) => vec![a, b],
        ConditionalOperator(_, a, b, c) => vec![a, b, c],
        ArrayLiteral(_, items) => items.iter().collect(),
        List(_, params) => params
            .iter()
            .filter_map(|(_, p)| p.as_ref().map(|p| &p.ty))
            .collect(),
        _ => Vec::new(),
    }
}

/// Calls `f` on `e` and every expression inside it, outer first.
pub(crate) fn walk_expr<'e>(e: &'e Expression, f: &mut dyn FnMut(&'e Expression)) {
    f(e);
    for c in children(e) {
        walk_expr(c, f);
    }
}

/// The statements directly inside `s`, and the expressions it evaluates itself.
pub(crate) fn statement_parts(s: &Statement) -> (Vec<&Statement>, Vec<&Expression>) {
    match s {
        Statement::Block { statements, .. } => (statements.iter().collect(), Vec::new()),
        Statement::If(_, c, t, e) => {
            let mut st = vec![t.as_ref()];
            st.extend(e.as_deref());
            (st, vec![c])
        }
        Statement::While(_, c, b) => (vec![b], vec![c]),
        Statement::DoWhile(_, b, c) => (vec![b], vec![c]),
        Statement::For(_, init, cond, next, body) => {
            let mut st: Vec<&Statement> = init.as_deref().into_iter().collect();
            st.extend(body.as_deref());
            let mut ex: Vec<&Expression> = cond.as_deref().into_iter().collect();
            ex.extend(next.as_deref());
            (st, ex)
        }
        Statement::Expression(_, e) | Statement::Emit(_, e) => (Vec::new(), vec![e]),
        Statement::VariableDefinition(_, _, init) => (Vec::new(), init.iter().collect()),
        Statement::Return(_, e) => (Vec::new(), e.iter().collect()),
        Statement::Revert(_, _, args) => (Vec::new(), args.iter().collect()),
        Statement::Try(_, e, _, _) => (Vec::new(), vec![e]),
        _ => (Vec::new(), Vec::new()),
    }
}

/// Every statement in `s` (itself first), in source order.
pub(crate) fn walk_stmt<'s>(s: &'s Statement, f: &mut dyn FnMut(&'s Statement)) {
    f(s);
    for c in statement_parts(s).0 {
        walk_stmt(c, f);
    }
}

/// Every expression evaluated in `s` (nested statements included), in source order.
pub(crate) fn walk_stmt_exprs<'s>(s: &'s Statement, f: &mut dyn FnMut(&'s Expression)) {
    walk_stmt(s, &mut |st| {
        for e in statement_parts(st).1 {
            walk_expr(e, f);
        }
    });
}

/// `a.b` with `a` a plain name.
pub(crate) fn is_member(e: &Expression, base: &str, member: &str) -> bool {
    matches!(e, Expression::MemberAccess(_, b, m)
        if m.name == member && matches!(b.as_ref(), Expression::Variable(v) if v.name == base))
}

/// The name at the root of an lvalue: `a` in `a`, `a[i]`, `a.b`, `a[i].c[j]`.
pub(crate) fn root_name(e: &Expression) -> Option<&str> {
    match e {
        Expression::Variable(v) => Some(&v.name),
        Expression::ArraySubscript(_, a, _)
        | Expression::MemberAccess(_, a, _)
        | Expression::Parenthesis(_, a) => root_name(a),
        _ => None,
    }
}

/// The member name called by `e` when `e` is a call like `x.m(...)`, `x.m.value(v)(...)`,
/// `x.m{value: v}(...)`, together with the receiver expression.
pub(crate) fn called_member(e: &Expression) -> Option<(&str, &Expression)> {
    let Expression::FunctionCall(_, f, _) = e else {
        return None;
    };
    member_of(f)
}

fn member_of(f: &Expression) -> Option<(&str, &Expression)> {
    match f {
        Expression::MemberAccess(_, recv, m) => {
            // `x.call.value(v)` / `x.call.gas(g)`, chained in any order
            // (`x.call.value(v).gas(g)`): the call is `call`.
            if matches!(m.name.as_str(), "value" | "gas") {
                match recv.as_ref() {
                    Expression::MemberAccess(_, inner, m2) => return Some((&m2.name, inner)),
                    Expression::FunctionCall(_, inner, _) => return member_of(inner),
                    _ => {}
                }
            }
            Some((&m.name, recv))
        }
        Expression::FunctionCallBlock(_, inner, _) => member_of(inner),
        Expression::FunctionCall(_, inner, _) => member_of(inner),
        _ => None,
    }
}

/// The name of a plain call `name(...)`.
pub(crate) fn called_name(e: &Expression) -> Option<&str> {
    match e {
        Expression::FunctionCall(_, f, _) => match f.as_ref() {
            Expression::Variable(v) => Some(&v.name),
            _ => None,
        },
        _ => None,
    }
}
