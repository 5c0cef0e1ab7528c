//! What the detectors work on: contracts with their state variables, functions and modifiers, the
//! pragma, and walkers over statements and expressions in source order.

use crate::prepass::Rewrite;
use solang_parser::pt::{
    self, ContractPart, Expression, FunctionAttribute, FunctionTy, Loc, SourceUnitPart, Statement,
    Visibility,
};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

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
#[derive(Clone)]
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
    /// Parameters in order (an unnamed one with an empty name) and their types as written.
    pub(crate) param_types: Vec<(String, String)>,
    /// It returns one `bool`.
    pub(crate) returns_bool: bool,
    pub(crate) line: usize,
    /// Shared by the contracts that inherit it (no copy per contract).
    pub(crate) body: Option<Rc<Statement>>,
    /// Parameters, named or not.
    pub(crate) arity: usize,
    /// The file it is written in (an index into [`Unit::files`]).
    pub(crate) file: usize,
    /// Declared in a contract this one inherits from.
    pub(crate) inherited: bool,
}

/// A contract, library or interface.
#[derive(Clone)]
pub(crate) struct Contract {
    pub(crate) name: String,
    pub(crate) bases: Vec<String>,
    pub(crate) state_vars: BTreeSet<String>,
    /// State arrays (`T[] name`).
    pub(crate) state_arrays: BTreeSet<String>,
    /// State mappings.
    pub(crate) state_maps: BTreeSet<String>,
    /// State integers narrower than 256 bits (`uint8`, `int64`, …), with their width.
    pub(crate) narrow_vars: BTreeMap<String, u16>,
    /// Struct names defined in the contract.
    pub(crate) structs: BTreeSet<String>,
    /// State variables with an initializer, and it.
    pub(crate) state_inits: Vec<(String, Expression)>,
    /// `using SafeMath for …` (or another *Math library): arithmetic goes through checked calls.
    pub(crate) safe_math: bool,
    pub(crate) functions: Vec<Function>,
    /// The file it is written in (an index into [`Unit::files`]).
    pub(crate) file: usize,
    /// With what it inherits: state variables declared again by a nearer contract (the name
    /// means a different variable depending on where it is read).
    pub(crate) shadowed: BTreeSet<String>,
    /// An interface or a library: no storage of its own.
    pub(crate) stateless: bool,
    /// Its own variables in storage (not constants or immutables), in declaration order: name
    /// and type as written.
    pub(crate) layout: Vec<(String, String)>,
    /// Every state variable's type as written (constants and immutables too); with what it
    /// inherits, the nearest declaration's.
    pub(crate) state_types: BTreeMap<String, String>,
    /// Libraries attached with `using L for …` (with what it inherits, its bases' too).
    pub(crate) usings: Vec<String>,
    /// Constants and immutables: kept in the code, not in storage, so nothing written after
    /// construction (no `sstore`, no `delegatecall`) changes them (with what it inherits, its
    /// bases' too).
    pub(crate) in_code: BTreeSet<String>,
}

/// One parsed file of an audit, with the files its imports name (indexes into the audit's
/// files, in the order of its import directives).
pub(crate) struct ParsedFile {
    pub(crate) name: String,
    pub(crate) tree: pt::SourceUnit,
    pub(crate) lines: LineIndex,
    pub(crate) rewrites: Vec<Rewrite>,
    /// Findings in it are reported (a project's own files; its dependencies on request).
    pub(crate) reported: bool,
    pub(crate) imports: Vec<usize>,
}

/// What the detectors know of one file.
pub(crate) struct Source<'a> {
    pub(crate) name: &'a str,
    pub(crate) lines: &'a LineIndex,
    /// The pragma allows a compiler before 0.8 (unchecked arithmetic), or there is no pragma.
    pub(crate) before_08: bool,
    /// The pragma allows a compiler before 0.5 (constructors named after the contract).
    pub(crate) before_05: bool,
    pub(crate) rewrites: &'a [Rewrite],
    pub(crate) reported: bool,
}

/// The parsed files of an audit: their contracts (each file's in source order, file after
/// file), and for each contract the contracts it inherits from, resolved through the imports.
pub(crate) struct Unit<'a> {
    pub(crate) files: Vec<Source<'a>>,
    pub(crate) contracts: Vec<Contract>,
    /// For each contract, the contracts it inherits from, nearest first (each once): Solidity's
    /// C3 linearization (`is A, B` looks in B before A, and a shared base comes after both).
    pub(crate) ancestors: Vec<Vec<usize>>,
    /// Names of the functions declared at file level (outside any contract).
    pub(crate) free_functions: BTreeSet<String>,
}

impl<'a> Unit<'a> {
    pub(crate) fn build(parsed: &'a [ParsedFile]) -> Unit<'a> {
        let mut files = Vec::with_capacity(parsed.len());
        let mut contracts = Vec::new();
        let mut free_functions = BTreeSet::new();
        // Per file: `import {A as B}` names A as B.
        let mut aliases: Vec<Vec<(String, String)>> = Vec::with_capacity(parsed.len());
        for (i, p) in parsed.iter().enumerate() {
            let mut version = None;
            let mut renamed = Vec::new();
            for part in &p.tree.0 {
                match part {
                    SourceUnitPart::PragmaDirective(d) => {
                        if let Some(v) = pragma_version(d) {
                            version = Some(v);
                        }
                    }
                    SourceUnitPart::ContractDefinition(c) => {
                        contracts.push(contract(c, &p.lines, i))
                    }
                    SourceUnitPart::FunctionDefinition(f) => {
                        free_functions.extend(f.name.as_ref().map(|n| n.name.clone()));
                    }
                    SourceUnitPart::ImportDirective(pt::Import::Rename(_, names, _)) => {
                        for (name, alias) in names {
                            if let Some(alias) = alias {
                                renamed.push((alias.name.clone(), name.name.clone()));
                            }
                        }
                    }
                    _ => {}
                }
            }
            aliases.push(renamed);
            // Without a pragma, assume the oldest syntax the file could be.
            let below = |minor: u32| version.is_none_or(|(major, m)| major == 0 && m < minor);
            files.push(Source {
                name: &p.name,
                lines: &p.lines,
                before_08: below(8),
                before_05: below(5),
                rewrites: &p.rewrites,
                reported: p.reported,
            });
        }
        // Contracts by name, and a name as a file sees it: its own contract first, then the
        // nearest file its imports reach (breadth first) that defines one.
        let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (ci, c) in contracts.iter().enumerate() {
            by_name.entry(c.name.as_str()).or_default().push(ci);
        }
        // Files the lookups below may visit in all: beyond any real project, and a bound on
        // what a crafted job (many bases, a long import chain) can cost. Past it, a name is
        // looked for in its file and the files it imports directly.
        let steps = std::cell::Cell::new(MAX_LOOKUP_STEPS);
        let find = |file: usize, name: &str| -> Option<usize> {
            // `import {A as B}`: B is an imported A, looked for in the imports (so that
            // `contract A is B` does not find itself).
            let alias = aliases[file].iter().find(|(alias, _)| alias == name);
            let name = alias.map_or(name, |(_, original)| original.as_str());
            let candidates = by_name.get(name)?;
            let in_file = |f: usize| candidates.iter().copied().find(|&c| contracts[c].file == f);
            let mut queue = std::collections::VecDeque::new();
            let mut seen = BTreeSet::from([file]);
            if alias.is_none() {
                queue.push_back(file);
            } else {
                for &g in &parsed[file].imports {
                    if seen.insert(g) {
                        queue.push_back(g);
                    }
                }
            }
            if steps.get() == 0 {
                let first = if alias.is_none() { Some(file) } else { None };
                return first
                    .into_iter()
                    .chain(parsed[file].imports.iter().copied())
                    .find_map(in_file);
            }
            while let Some(f) = queue.pop_front() {
                if let Some(c) = in_file(f) {
                    return Some(c);
                }
                steps.set(steps.get().saturating_sub(1));
                for &g in &parsed[f].imports {
                    if seen.insert(g) {
                        queue.push_back(g);
                    }
                }
            }
            None
        };
        let direct: Vec<Vec<usize>> = contracts
            .iter()
            .enumerate()
            .map(|(ci, c)| {
                let mut bases: Vec<usize> = Vec::new();
                // A base named twice counts once; a crafted list of thousands stops at the
                // linearization's bound.
                for b in c.bases.iter().take(MAX_LINEARIZATION) {
                    if let Some(b) = find(c.file, b).filter(|&b| b != ci && !bases.contains(&b)) {
                        bases.push(b);
                    }
                }
                bases
            })
            .collect();
        drop(by_name);
        // Solidity's linearization (C3) where it exists within the bounds; otherwise (a
        // hierarchy no compiler accepts, or past the bounds) bases from the last named first.
        let mut memo: Vec<Option<Option<Vec<usize>>>> = vec![None; contracts.len()];
        let mut budget = MAX_C3_STEPS;
        let ancestors: Vec<Vec<usize>> = (0..contracts.len())
            .map(|ci| {
                let mut out = c3(ci, &direct, &mut memo, 0, &mut budget).unwrap_or_else(|_| {
                    let mut out = Vec::new();
                    linearize(ci, &direct, &mut out);
                    out
                });
                out.retain(|&a| a != ci);
                out
            })
            .collect();
        // Which modifiers check the caller.
        // (`msg.sender == tx.origin` asks whether the caller is an account: anyone's is.)
        // Some(true) when it checks who calls, Some(false) when all it asks is whether the
        // caller is an account, None when it never looks at the caller.
        let caller_check = |m: &Function| {
            let (mut uses, mut accounts_only) = (0usize, 0usize);
            if let Some(b) = &m.body {
                walk_stmt_exprs(b, &mut |e| {
                    if is_member(e, "msg", "sender")
                        || is_member(e, "tx", "origin")
                        || matches!(e, Expression::FunctionCall(_, f, _)
                            if matches!(f.as_ref(), Expression::Variable(v) if v.name == "_msgSender"))
                    {
                        uses += 1;
                    }
                    if let Expression::Equal(_, a, b) | Expression::NotEqual(_, a, b) = e
                        && ((is_member(a, "msg", "sender") && is_member(b, "tx", "origin"))
                            || (is_member(a, "tx", "origin") && is_member(b, "msg", "sender")))
                    {
                        accounts_only += 1;
                    }
                });
            }
            if uses > 2 * accounts_only {
                Some(true)
            } else if accounts_only > 0 {
                Some(false)
            } else {
                None
            }
        };
        let checks_caller = |m: &Function| caller_check(m) == Some(true);
        // Modifiers whose name may say "only", but whose body asks only for an account.
        // (Per contract, as the checks below: its own, its ancestors' and its file's.)
        let eoa_own: Vec<Vec<&str>> = contracts
            .iter()
            .map(|c| {
                c.functions
                    .iter()
                    .filter(|m| m.ty == pt::FunctionTy::Modifier && caller_check(m) == Some(false))
                    .map(|m| m.name.as_str())
                    .collect()
            })
            .collect();
        // Each contract's modifiers that check the caller; a contract may use its own, its
        // ancestors' and (as before files were linked) any of its file's.
        let own: Vec<Vec<&str>> = contracts
            .iter()
            .map(|c| {
                c.functions
                    .iter()
                    .filter(|m| m.ty == pt::FunctionTy::Modifier && checks_caller(m))
                    .map(|m| m.name.as_str())
                    .collect()
            })
            .collect();
        // A file's set is kept once (not copied into each of its contracts: a file of
        // thousands of contracts would copy thousands of names into each).
        let file_sets = |per: &[Vec<&str>]| {
            let mut sets: Vec<BTreeSet<String>> = vec![BTreeSet::new(); parsed.len()];
            for (c, names) in contracts.iter().zip(per) {
                sets[c.file].extend(names.iter().map(|n| n.to_string()));
            }
            sets
        };
        let own_sets = |per: &[Vec<&str>]| -> Vec<BTreeSet<String>> {
            per.iter()
                .map(|names| names.iter().map(|n| n.to_string()).collect())
                .collect()
        };
        let (guard_file, guard_own) = (file_sets(&own), own_sets(&own));
        // Every modifier each contract declares: where the lineage has one of a name, its
        // body decides, not another contract's of the same name in the file.
        let declared: Vec<BTreeSet<String>> = contracts
            .iter()
            .map(|c| {
                c.functions
                    .iter()
                    .filter(|m| m.ty == pt::FunctionTy::Modifier)
                    .map(|m| m.name.clone())
                    .collect()
            })
            .collect();
        let (eoa_file, eoa_own) = (file_sets(&eoa_own), own_sets(&eoa_own));
        drop(own);
        for (ci, c) in contracts.iter_mut().enumerate() {
            let file = c.file;
            // Its own, its ancestors' (looked up, not copied), its file's.
            let lineage = || std::iter::once(ci).chain(ancestors[ci].iter().copied());
            // The lineage's own declaration of a modifier decides; a namesake elsewhere in the
            // file only when the lineage has none.
            let judged = |m: &String, own: &[BTreeSet<String>], in_file: &[BTreeSet<String>]| {
                if lineage().any(|a| declared[a].contains(m)) {
                    lineage().any(|a| own[a].contains(m))
                } else {
                    in_file[file].contains(m)
                }
            };
            let guards = |m: &String| judged(m, &guard_own, &guard_file);
            let accounts_only = |m: &String| judged(m, &eoa_own, &eoa_file);
            for f in &mut c.functions {
                f.access_modifier = f.modifiers.iter().any(|m| {
                    let n = m.to_ascii_lowercase();
                    let named = ["only", "owner", "admin", "auth", "role"]
                        .iter()
                        .any(|w| n.contains(w));
                    (named || guards(m)) && !accounts_only(m)
                });
            }
        }
        Unit {
            files,
            contracts,
            ancestors,
            free_functions,
        }
    }

    pub(crate) fn line(&self, loc: &Loc) -> usize {
        self.source(loc).lines.line(loc.start())
    }

    pub(crate) fn end_line(&self, loc: &Loc) -> usize {
        self.source(loc).lines.line(loc.end())
    }

    /// Contract `ci`'s storage, its most basic ancestor's variables first: name and type of
    /// each variable, one per slot when they do not share one.
    pub(crate) fn storage_layout(&self, ci: usize) -> Vec<(&str, &str)> {
        self.ancestors[ci]
            .iter()
            .rev()
            .chain(std::iter::once(&ci))
            .flat_map(|&a| self.contracts[a].layout.iter())
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect()
    }

    /// The file a location lies in.
    pub(crate) fn source(&self, loc: &Loc) -> &Source<'a> {
        &self.files[loc
            .try_file_no()
            .unwrap_or(0)
            .min(self.files.len().saturating_sub(1))]
    }

    /// Contract `ci` with everything it inherits: the state and structs of every ancestor, and
    /// each ancestor's functions that no nearer contract overrides (every constructor runs, so
    /// every one is kept), marked inherited. Whether it uses a math library stays its own: a
    /// base's `using SafeMath` says nothing of the plain operators written here.
    ///
    /// `budget` is how many inherited functions may still be copied in this audit: a crafted
    /// job (thousands of contracts inheriting one big base) cannot make the work grow with the
    /// square of its size. Bodies are shared, not copied.
    pub(crate) fn with_inherited(&self, ci: usize, budget: &mut usize) -> Contract {
        let c = &self.contracts[ci];
        let mut flat = c.clone();
        let mut seen_usings: BTreeSet<&str> = c.usings.iter().map(String::as_str).collect();
        for &a in &self.ancestors[ci] {
            let base = &self.contracts[a];
            flat.shadowed
                .extend(base.state_vars.intersection(&flat.state_vars).cloned());
            flat.state_vars.extend(base.state_vars.iter().cloned());
            flat.state_arrays.extend(base.state_arrays.iter().cloned());
            flat.in_code.extend(base.in_code.iter().cloned());
            flat.state_maps.extend(base.state_maps.iter().cloned());
            for (n, bits) in &base.narrow_vars {
                flat.narrow_vars.entry(n.clone()).or_insert(*bits);
            }
            for u in &base.usings {
                if seen_usings.insert(u.as_str()) {
                    flat.usings.push(u.clone());
                }
            }
            for (n, ty) in &base.state_types {
                flat.state_types
                    .entry(n.clone())
                    .or_insert_with(|| ty.clone());
            }
            flat.structs.extend(base.structs.iter().cloned());
            flat.state_inits.extend(base.state_inits.iter().cloned());
            for f in &base.functions {
                let mut f = f.clone();
                // A base's constructor named after it (before 0.5) is no function of this one.
                if f.ty == FunctionTy::Function && f.name == base.name {
                    f.ty = FunctionTy::Constructor;
                }
                let overridden = f.ty != FunctionTy::Constructor
                    && flat
                        .functions
                        .iter()
                        .any(|g| g.ty == f.ty && g.name == f.name && g.arity == f.arity);
                if !overridden && *budget > 0 {
                    *budget -= 1;
                    f.inherited = true;
                    flat.functions.push(f);
                }
            }
        }
        flat
    }
}

/// Most contracts a contract's linearization holds (itself included): far beyond real
/// hierarchies (OpenZeppelin's deepest have about 20), and a bound on the work a crafted one
/// (every contract inheriting all before it) can cause.
const MAX_LINEARIZATION: usize = 64;

/// Files visited in all by the base-name lookups of one audit (see [`Unit::build`]).
const MAX_LOOKUP_STEPS: usize = 1 << 22;

/// Steps (comparisons) the C3 merges of one audit may take in all; past it, linearizations
/// fall back to [`linearize`]'s order.
const MAX_C3_STEPS: usize = 1 << 24;

/// `ci`'s C3 linearization as Solidity computes it (itself, then its bases from the most
/// derived: for `C is A, B`, C, B, A, then their bases), or why there is none: a cycle, an
/// order no compiler accepts, or the bounds ([`MAX_LINEARIZATION`] contracts, that many direct
/// bases, that many levels from where it is asked, the step budget). Failures other than
/// depth are kept in `memo`.
fn c3(
    ci: usize,
    direct: &[Vec<usize>],
    memo: &mut [Option<Option<Vec<usize>>>],
    depth: usize,
    budget: &mut usize,
) -> Result<Vec<usize>, C3Failure> {
    if let Some(done) = &memo[ci] {
        return done.clone().ok_or(C3Failure::Hard);
    }
    // Too deep from where it was asked: not a property of `ci`, so nothing is kept.
    if depth >= MAX_LINEARIZATION {
        return Err(C3Failure::Depth);
    }
    *budget = budget.checked_sub(1).ok_or(C3Failure::Hard)?;
    // Until it is known, a cycle through it finds no linearization.
    memo[ci] = Some(None);
    if direct[ci].len() >= MAX_LINEARIZATION {
        return Err(C3Failure::Hard);
    }
    let mut seqs: Vec<Vec<usize>> = Vec::with_capacity(direct[ci].len() + 1);
    for &b in direct[ci].iter().rev() {
        match c3(b, direct, memo, depth + 1, budget) {
            Ok(l) => seqs.push(l),
            Err(C3Failure::Depth) => {
                memo[ci] = None;
                return Err(C3Failure::Depth);
            }
            Err(C3Failure::Hard) => return Err(C3Failure::Hard),
        }
    }
    seqs.push(direct[ci].iter().rev().copied().collect());
    let mut out = vec![ci];
    loop {
        seqs.retain(|s| !s.is_empty());
        if seqs.is_empty() {
            break;
        }
        let cost: usize = seqs.iter().map(Vec::len).sum::<usize>() * seqs.len();
        *budget = budget.checked_sub(cost).ok_or(C3Failure::Hard)?;
        let head = seqs
            .iter()
            .map(|s| s[0])
            .find(|&h| !seqs.iter().any(|s| s[1..].contains(&h)))
            .ok_or(C3Failure::Hard)?;
        if out.len() >= MAX_LINEARIZATION {
            return Err(C3Failure::Hard);
        }
        out.push(head);
        for s in &mut seqs {
            if s[0] == head {
                s.remove(0);
            }
        }
    }
    memo[ci] = Some(Some(out.clone()));
    Ok(out)
}

/// Why [`c3`] found no linearization: one that holds wherever it is asked (a cycle, an
/// inconsistent order, the bounds), or only too deep from where it was asked.
#[derive(Clone, Copy, Debug)]
enum C3Failure {
    Hard,
    Depth,
}

/// Appends `ci`'s linearization to `out`: itself, then its bases from the last named to the
/// first, each once, up to [`MAX_LINEARIZATION`]. Cycles (which no compiler accepts) stop.
fn linearize(ci: usize, direct: &[Vec<usize>], out: &mut Vec<usize>) {
    if out.contains(&ci) || out.len() >= MAX_LINEARIZATION {
        return;
    }
    out.push(ci);
    for &b in direct[ci].iter().rev() {
        linearize(b, direct, out);
    }
}

/// The lowest (major, minor) version the `solidity` pragma admits.
pub(crate) fn pragma_version(p: &pt::PragmaDirective) -> Option<(u32, u32)> {
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

fn contract(c: &pt::ContractDefinition, lines: &LineIndex, file: usize) -> Contract {
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
    let mut narrow_vars = BTreeMap::new();
    let mut structs = BTreeSet::new();
    let mut state_inits = Vec::new();
    let mut safe_math = false;
    let mut functions = Vec::new();
    let mut layout = Vec::new();
    let mut in_code = BTreeSet::new();
    let mut state_types = BTreeMap::new();
    let mut usings = Vec::new();
    let mut seen_usings = BTreeSet::new();
    for part in &c.parts {
        match part {
            ContractPart::VariableDefinition(v) => {
                if let Some(n) = &v.name {
                    state_vars.insert(n.name.clone());
                    state_types.insert(n.name.clone(), type_text(&v.ty));
                    if !v.attrs.iter().any(|a| {
                        matches!(
                            a,
                            pt::VariableAttribute::Constant(_)
                                | pt::VariableAttribute::Immutable(_)
                        )
                    }) {
                        layout.push((n.name.clone(), type_text(&v.ty)));
                    } else {
                        in_code.insert(n.name.clone());
                    }
                    if let Some(init) = &v.initializer {
                        state_inits.push((n.name.clone(), init.clone()));
                    }
                    if matches!(v.ty, Expression::ArraySubscript(_, _, None)) {
                        state_arrays.insert(n.name.clone());
                    }
                    if matches!(v.ty, Expression::Type(_, pt::Type::Mapping { .. })) {
                        state_maps.insert(n.name.clone());
                    }
                    if let Some(bits) = narrow_width(&v.ty) {
                        narrow_vars.insert(n.name.clone(), bits);
                    }
                }
            }
            ContractPart::Using(u) => {
                if let pt::UsingList::Library(path) = &u.list
                    && let Some(i) = path.identifiers.last()
                    && seen_usings.insert(i.name.clone())
                {
                    usings.push(i.name.clone());
                }
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
            ContractPart::FunctionDefinition(f) => functions.push(function(f, lines, file)),
            _ => {}
        }
    }
    Contract {
        name,
        bases,
        state_vars,
        state_arrays,
        state_maps,
        narrow_vars,
        structs,
        state_inits,
        safe_math,
        functions,
        file,
        shadowed: BTreeSet::new(),
        stateless: matches!(
            c.ty,
            pt::ContractTy::Interface(_) | pt::ContractTy::Library(_)
        ),
        layout,
        state_types,
        usings,
        in_code,
    }
}

/// A type as written, with `uint`/`int` spelled out (`uint` is `uint256`).
pub(crate) fn type_text(ty: &Expression) -> String {
    let t = ty.to_string();
    match t.as_str() {
        "uint" => "uint256".into(),
        "int" => "int256".into(),
        _ => t,
    }
}

fn function(f: &pt::FunctionDefinition, lines: &LineIndex, file: usize) -> Function {
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
    // Every parameter in its place; an unnamed one has an empty name.
    let param_types: Vec<(String, String)> = f
        .params
        .iter()
        .map(|(_, p)| match p {
            Some(p) => (
                p.name.as_ref().map_or(String::new(), |n| n.name.clone()),
                type_text(&p.ty),
            ),
            None => (String::new(), String::new()),
        })
        .collect();
    Function {
        name: f.name.as_ref().map_or(String::new(), |n| n.name.clone()),
        ty: f.ty,
        params: param_types
            .iter()
            .filter(|(n, _)| !n.is_empty())
            .map(|(n, _)| n.clone())
            .collect(),
        param_types,
        returns_bool: matches!(f.returns.as_slice(), [(_, Some(p))]
            if matches!(p.ty, Expression::Type(_, pt::Type::Bool))),
        exposed,
        view,
        constant,
        payable,
        modifiers,
        access_modifier: false,
        line: lines.line(f.loc.start()),
        body: f.body.clone().map(Rc::new),
        arity: f.params.len(),
        file,
        inherited: false,
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
        // `f{value: v, gas: g}`: the options are evaluated too.
        FunctionCallBlock(_, f, block) => {
            let mut v = vec![f.as_ref()];
            if let Statement::Args(_, args) = block.as_ref() {
                v.extend(args.iter().map(|a| &a.expr));
            }
            v
        }
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
        // The success block runs too, after the call. (Without `returns`, the parser keeps it
        // in the call: `f() { … }`, `new C() { … }`.) The catch clauses are left out: they run
        // only when the call failed, and what it did is undone.
        Statement::Try(_, e, returns, _) => {
            let (call, ok) = match e {
                Expression::FunctionCallBlock(_, inner, block)
                    if !matches!(block.as_ref(), Statement::Args(..)) =>
                {
                    (inner.as_ref(), Some(block.as_ref()))
                }
                Expression::New(_, inner) => match inner.as_ref() {
                    Expression::FunctionCallBlock(_, call, block)
                        if !matches!(block.as_ref(), Statement::Args(..)) =>
                    {
                        (call.as_ref(), Some(block.as_ref()))
                    }
                    _ => (e, None),
                },
                _ => (e, None),
            };
            (
                ok.into_iter()
                    .chain(returns.iter().map(|(_, body)| body.as_ref()))
                    .collect(),
                vec![call],
            )
        }
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

/// The width of an integer type narrower than 256 bits (`uint8`: 8).
pub(crate) fn narrow_width(ty: &Expression) -> Option<u16> {
    match ty {
        Expression::Type(_, pt::Type::Uint(bits) | pt::Type::Int(bits)) if *bits < 256 => {
            Some(*bits)
        }
        _ => None,
    }
}
