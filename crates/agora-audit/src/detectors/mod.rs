//! The detectors. Each looks at one pattern, reports the line where the fix belongs, and carries
//! its SWC id and DASP category.

use crate::model::{
    Contract, Function, Source, Unit, called_member, called_name, is_member, root_name, walk_expr,
    walk_stmt, walk_stmt_exprs,
};
use crate::{Category, Confidence, Detector, Finding, Severity};
use solang_parser::pt::{Expression, FunctionTy, Loc, Statement};
use std::collections::{BTreeMap, BTreeSet};

mod access;
mod callee;
mod calls;
mod expressions;
mod ordering;
mod storage;
mod walk;
use access::*;
use calls::*;
use expressions::*;
use ordering::*;
use storage::*;
use walk::*;

const TX_ORIGIN: Detector = Detector {
    id: "tx-origin",
    swc: "SWC-115",
    category: Category::AccessControl,
    severity: Severity::High,
    confidence: Confidence::High,
    hint: "authorize with msg.sender; tx.origin is whoever started the transaction, through any contract",
};
const TX_ORDER: Detector = Detector {
    id: "tx-order-dependence",
    swc: "SWC-114",
    category: Category::FrontRunning,
    severity: Severity::Medium,
    confidence: Confidence::Low,
    hint: "do not let one transaction change what another pays out: fix the amount per round, or let the payer name the amount it expects",
};
const UNCHECKED_CALL: Detector = Detector {
    id: "unchecked-call",
    swc: "SWC-104",
    category: Category::UncheckedLowLevelCalls,
    severity: Severity::Medium,
    confidence: Confidence::High,
    hint: "check the returned success flag (require(ok)), or use transfer",
};
const UNPROTECTED_SELFDESTRUCT: Detector = Detector {
    id: "unprotected-selfdestruct",
    swc: "SWC-106",
    category: Category::AccessControl,
    severity: Severity::High,
    confidence: Confidence::Medium,
    hint: "restrict the function to the owner (a modifier or require(msg.sender == owner))",
};
const REENTRANCY: Detector = Detector {
    id: "reentrancy",
    swc: "SWC-107",
    category: Category::Reentrancy,
    severity: Severity::High,
    confidence: Confidence::Medium,
    hint: "update state before the external call (checks-effects-interactions) or use a reentrancy guard",
};
const STATE_AFTER_TRANSFER: Detector = Detector {
    id: "state-after-transfer",
    swc: "SWC-107",
    category: Category::Reentrancy,
    severity: Severity::Low,
    confidence: Confidence::Medium,
    hint: "update state before sending ether (checks-effects-interactions): the 2,300-gas stipend that stops re-entry today is a gas price, not a guarantee",
};
const WEAK_RANDOMNESS: Detector = Detector {
    id: "weak-randomness",
    swc: "SWC-120",
    category: Category::BadRandomness,
    severity: Severity::High,
    confidence: Confidence::Medium,
    hint: "block values are known to (and chosen by) miners: use a commit-reveal scheme or an oracle",
};
const TIMESTAMP: Detector = Detector {
    id: "timestamp-dependence",
    swc: "SWC-116",
    category: Category::TimeManipulation,
    severity: Severity::Low,
    confidence: Confidence::Medium,
    hint: "miners move the timestamp by seconds: do not let a decision hinge on it",
};
const TIMESTAMP_LOCK: Detector = Detector {
    id: "timestamp-lock",
    swc: "SWC-116",
    category: Category::TimeManipulation,
    severity: Severity::Info,
    confidence: Confidence::Medium,
    hint: "a release time and an account fixed at construction: a miner moves only when that account is paid, by seconds; check that nothing else hangs on the exact time",
};
const DEPRECATED: Detector = Detector {
    id: "deprecated",
    swc: "SWC-111",
    category: Category::Other,
    severity: Severity::Info,
    confidence: Confidence::High,
    hint: "use revert()/require, selfdestruct, keccak256, delegatecall, view and explicit types",
};
const OVERFLOW: Detector = Detector {
    id: "integer-overflow",
    swc: "SWC-101",
    category: Category::Arithmetic,
    severity: Severity::High,
    confidence: Confidence::Low,
    hint: "before Solidity 0.8 arithmetic wraps: use SafeMath or check the bounds first",
};
const WRONG_CONSTRUCTOR: Detector = Detector {
    id: "wrong-constructor-name",
    swc: "SWC-118",
    category: Category::AccessControl,
    severity: Severity::High,
    confidence: Confidence::High,
    hint: "name the constructor `constructor` (or exactly as the contract before 0.5)",
};
const CALL_IN_LOOP: Detector = Detector {
    id: "external-call-in-loop",
    swc: "SWC-113",
    category: Category::DenialOfService,
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    hint: "one failing or expensive recipient blocks everyone: let each recipient withdraw (pull payments)",
};

const LOCKED_ETHER: Detector = Detector {
    id: "locked-ether",
    swc: "none",
    category: Category::Other,
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    hint: "add a way to withdraw, or do not accept ether",
};

const ARBITRARY_DELEGATECALL: Detector = Detector {
    id: "arbitrary-delegatecall",
    swc: "SWC-112",
    category: Category::AccessControl,
    severity: Severity::High,
    confidence: Confidence::Medium,
    hint: "never delegatecall an address the caller chooses: delegate to a fixed, trusted library",
};
const DELEGATE_LAYOUT: Detector = Detector {
    id: "delegatecall-layout",
    swc: "SWC-112",
    category: Category::AccessControl,
    severity: Severity::High,
    confidence: Confidence::Medium,
    hint: "a delegatecall runs the callee's code on the caller's storage: declare the same variables in the same order in both (inherit one storage contract)",
};
const UNPROTECTED_OWNER: Detector = Detector {
    id: "unprotected-owner-change",
    swc: "SWC-105",
    category: Category::AccessControl,
    severity: Severity::High,
    confidence: Confidence::Medium,
    hint: "let only the current owner (or a one-time initializer guard) set the owner",
};
const APPROVE_RACE: Detector = Detector {
    id: "erc20-approve-race",
    swc: "SWC-114",
    category: Category::FrontRunning,
    severity: Severity::Low,
    confidence: Confidence::Medium,
    hint: "require the allowance to be 0 first, or offer increaseAllowance/decreaseAllowance",
};
const HASH_SOLUTION: Detector = Detector {
    id: "hash-solution",
    swc: "SWC-114",
    category: Category::FrontRunning,
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    hint: "a submitted answer is visible in the mempool: use commit-reveal",
};
const UNINITIALIZED_STORAGE: Detector = Detector {
    id: "uninitialized-storage-pointer",
    swc: "SWC-109",
    category: Category::Other,
    severity: Severity::High,
    confidence: Confidence::High,
    hint: "declare the local `memory`, or point it at a storage element explicitly",
};
const UNBOUNDED_LOOP: Detector = Detector {
    id: "unbounded-loop",
    swc: "SWC-128",
    category: Category::DenialOfService,
    severity: Severity::Medium,
    confidence: Confidence::Low,
    hint: "a loop over a growing array runs out of gas: paginate, or let users act one by one",
};
const ARBITRARY_STORAGE: Detector = Detector {
    id: "arbitrary-storage-write",
    swc: "SWC-124",
    category: Category::AccessControl,
    severity: Severity::High,
    confidence: Confidence::Medium,
    hint: "never shrink a dynamic array by its length: an underflowed length lets any slot be written",
};
const FAILED_CALL_DOS: Detector = Detector {
    id: "dos-failed-payment",
    swc: "SWC-113",
    category: Category::DenialOfService,
    severity: Severity::Medium,
    confidence: Confidence::Medium,
    hint: "a recipient that rejects ether blocks this function for everyone: let it withdraw instead",
};
const UNPROTECTED_WITHDRAWAL: Detector = Detector {
    id: "unprotected-withdrawal",
    swc: "SWC-105",
    category: Category::AccessControl,
    severity: Severity::High,
    confidence: Confidence::Medium,
    hint: "debit the caller's balance before paying it out, and check `balance >= amount`",
};
const ANYONE_CAN_WITHDRAW: Detector = Detector {
    id: "anyone-can-withdraw",
    swc: "SWC-105",
    category: Category::AccessControl,
    severity: Severity::High,
    confidence: Confidence::Medium,
    hint: "let only the owner withdraw (a modifier or require(msg.sender == owner)), or pay each caller only what it deposited",
};
const SHORT_ADDRESS: Detector = Detector {
    id: "short-address",
    swc: "none",
    category: Category::ShortAddresses,
    severity: Severity::Low,
    confidence: Confidence::Low,
    hint: "check msg.data.length (or rely on a compiler from 0.5, which does)",
};

/// Every detector, for listings and SARIF rules.
pub const DETECTORS: &[Detector] = &[
    TX_ORIGIN,
    UNCHECKED_CALL,
    UNPROTECTED_SELFDESTRUCT,
    REENTRANCY,
    STATE_AFTER_TRANSFER,
    WEAK_RANDOMNESS,
    TIMESTAMP,
    TIMESTAMP_LOCK,
    DEPRECATED,
    OVERFLOW,
    WRONG_CONSTRUCTOR,
    CALL_IN_LOOP,
    LOCKED_ETHER,
    ARBITRARY_DELEGATECALL,
    UNPROTECTED_OWNER,
    APPROVE_RACE,
    HASH_SOLUTION,
    UNINITIALIZED_STORAGE,
    UNBOUNDED_LOOP,
    SHORT_ADDRESS,
    ARBITRARY_STORAGE,
    FAILED_CALL_DOS,
    UNPROTECTED_WITHDRAWAL,
    TX_ORDER,
    ANYONE_CAN_WITHDRAW,
    DELEGATE_LAYOUT,
];

/// What the detectors need to know about a whole contract, computed once.
struct Facts {
    /// State addresses anyone can make their own.
    claimable: Vec<String>,
    /// State that decides who may act.
    auth: Vec<String>,
    /// Plain state amounts that transactions set.
    set_by_tx: Vec<String>,
    /// Functions that make an external call themselves.
    calls_out: Vec<String>,
    /// State its functions and modifiers write (not its constructors).
    written: Vec<String>,
    /// One of its functions or modifiers may write a slot it does not name (inline assembly,
    /// `delegatecall`, a storage pointer).
    opaque: bool,
}

impl Facts {
    /// What `c`'s own functions show (not those it inherits), in the context of its whole state.
    fn own(c: &Contract) -> Facts {
        let mut own = c.clone();
        own.functions.retain(|f| !f.inherited);
        let writes = written_after_construction(&own);
        Facts {
            claimable: claimable_addresses(&own),
            auth: auth_vars(&own),
            set_by_tx: amounts_set_by_transactions(&own),
            calls_out: own
                .functions
                .iter()
                .filter(|g| g.body.as_deref().is_some_and(calls_out))
                .map(|g| g.name.clone())
                .collect(),
            written: writes.names,
            opaque: writes.opaque,
        }
    }

    /// A contract's facts: its own and its ancestors' (each computed once), less the names it
    /// shadows.
    fn inherited(c: &Contract, own: &[&Facts]) -> Facts {
        let gather = |pick: fn(&Facts) -> &Vec<String>| {
            let mut v: Vec<String> = own.iter().flat_map(|f| pick(f).iter().cloned()).collect();
            v.sort();
            v.dedup();
            v
        };
        let mut auth = gather(|f| &f.auth);
        auth.retain(|n| !c.shadowed.contains(n));
        Facts {
            claimable: gather(|f| &f.claimable),
            auth,
            set_by_tx: gather(|f| &f.set_by_tx),
            calls_out: gather(|f| &f.calls_out),
            written: gather(|f| &f.written),
            opaque: own.iter().any(|f| f.opaque),
        }
    }

    /// The state variables of `c` only a constructor writes: constants and immutables, and,
    /// when none of its functions may write a slot it does not name, those no function of the
    /// lineage writes. (What a library's code writes is not followed: a hole here reports a lock
    /// at info, never drops it.)
    fn built(&self, c: &Contract) -> BTreeSet<String> {
        c.state_vars
            .iter()
            .filter(|n| {
                !c.shadowed.contains(*n)
                    && (c.in_code.contains(*n)
                        || (!self.opaque && self.written.binary_search(n).is_err()))
            })
            .cloned()
            .collect()
    }
}

/// What the functions and modifiers of `c` write, constructors aside.
struct Writes {
    /// State assigned (a tuple's parts too), deleted, counted up or down, pushed or popped, or
    /// reached through a storage local (its root counts as written).
    names: Vec<String>,
    /// One of them may write a slot it does not name: inline assembly that stores or
    /// delegates, `delegatecall`, a write through a local or parameter that may point into
    /// storage, or through a call's result.
    opaque: bool,
}

fn written_after_construction(c: &Contract) -> Writes {
    let mut out: Vec<String> = Vec::new();
    let mut opaque = false;
    // A type whose variables hold their value (not a pointer into storage).
    let elementary = |ty: &str| {
        !ty.contains('[')
            && ["uint", "int", "bool", "address", "bytes", "string", "byte"]
                .iter()
                .any(|p| ty.starts_with(p))
    };
    for g in &c.functions {
        let Some(body) = g.body.as_deref() else {
            continue;
        };
        if g.ty == FunctionTy::Constructor || g.name == c.name {
            continue;
        }
        // The function's own names, and whether each surely holds no pointer into storage.
        let mut own: BTreeMap<&str, bool> = g
            .param_types
            .iter()
            .map(|(n, ty)| (n.as_str(), elementary(ty)))
            .collect();
        // The body, and the catch clauses of its `try`s (which the detectors' walk leaves out:
        // they run only when the call failed).
        let mut bodies: Vec<&Statement> = vec![body];
        let mut next = 0;
        while let Some(&b) = bodies.get(next) {
            next += 1;
            walk_stmt(b, &mut |st| match st {
                Statement::VariableDefinition(_, decl, init) => {
                    if let Some(n) = &decl.name {
                        let safe = match decl.storage {
                            Some(solang_parser::pt::StorageLocation::Storage(_)) => false,
                            Some(_) => true,
                            None => elementary(&crate::model::type_text(&decl.ty)),
                        };
                        own.insert(n.name.as_str(), safe);
                    }
                    if matches!(
                        decl.storage,
                        Some(solang_parser::pt::StorageLocation::Storage(_))
                    ) && let Some(i) = init
                        && let Some(r) = root_name(i)
                        && c.state_vars.contains(r)
                    {
                        out.push(r.to_string());
                    }
                }
                Statement::Assembly { block, .. } => {
                    let text = block.to_string();
                    opaque |= ["sstore", "delegatecall", "callcode"]
                        .iter()
                        .any(|w| text.contains(w));
                }
                Statement::Try(_, _, _, catches) => {
                    bodies.extend(catches.iter().map(|k| match k {
                        solang_parser::pt::CatchClause::Simple(_, _, body)
                        | solang_parser::pt::CatchClause::Named(_, _, _, body) => body,
                    }));
                }
                _ => {}
            });
        }
        let add = |target: &Expression, out: &mut Vec<String>, opaque: &mut bool| {
            let parts: Vec<&Expression> = match target {
                Expression::List(_, params) => params
                    .iter()
                    .filter_map(|(_, p)| p.as_ref().map(|p| &p.ty))
                    .collect(),
                other => vec![other],
            };
            for p in parts {
                match root_name(p) {
                    Some(n) if c.state_vars.contains(n) => out.push(n.to_string()),
                    Some(n) if own.get(n) == Some(&true) => {}
                    // A type in a tuple declaration (`(uint a, ) = …`) declares, it writes nothing.
                    None if matches!(p, Expression::Type(..)) => {}
                    _ => *opaque = true,
                }
            }
        };
        for b in &bodies {
            walk_stmt_exprs(b, &mut |e| {
                if let Some((_, target)) = written(e) {
                    add(target, &mut out, &mut opaque);
                }
                match called_member(e) {
                    Some(("push" | "pop", recv)) => add(recv, &mut out, &mut opaque),
                    Some(("delegatecall" | "callcode", _)) => opaque = true,
                    _ => {}
                }
            });
        }
    }
    out.sort();
    out.dedup();
    Writes { names: out, opaque }
}

/// Inherited functions copied into the contracts that inherit them, in all, in one audit:
/// beyond real projects, and a bound on what a crafted job (thousands of contracts inheriting
/// one big base) can cost. Past it, contracts are analysed with fewer inherited functions.
const MAX_INHERITED_FUNCTIONS: usize = 1 << 18;

/// Steps (contracts looked at, expressions walked, slots compared) that comparing storage
/// layouts across contracts may take in one audit: far beyond real projects, and a bound on
/// what a crafted job (thousands of delegatecalls into thousands of contracts) can cost.
const MAX_LAYOUT_STEPS: usize = 1 << 22;

/// Expressions that looking for reentrancy locks (and for the functions open while one is held)
/// may walk in one audit: a crafted job (thousands of locked functions in one contract) cannot
/// make the work grow with the square of its size. Past it, no lock is known.
const MAX_LOCK_STEPS: usize = 1 << 22;

struct Out<'u, 'a> {
    unit: &'u Unit<'a>,
    /// Layout comparison steps left (see [`MAX_LAYOUT_STEPS`]).
    layout_steps: usize,
    /// Reentrancy-lock steps left (see [`MAX_LOCK_STEPS`]).
    lock_steps: usize,
    /// Names of the audit's contracts (not interfaces or libraries).
    deployable: BTreeSet<&'u str>,
    /// Names of the audit's contracts and interfaces: as types, addresses.
    address_types: BTreeSet<&'u str>,
    /// The file being looked at (the function's, or the contract's).
    file: usize,
    /// Findings, with the index of their file.
    findings: Vec<(usize, Finding)>,
}

impl<'a> Out<'_, 'a> {
    /// The file being looked at.
    fn src(&self) -> &Source<'a> {
        &self.unit.files[self.file]
    }

    fn at(&mut self, d: &Detector, loc: &Loc, message: String) {
        let line = self.unit.line(loc);
        let end_line = self.unit.end_line(loc).max(line);
        let file = loc.try_file_no().unwrap_or(self.file);
        self.push(d, file, line, end_line, message);
    }

    fn line(&mut self, d: &Detector, line: usize, end_line: usize, message: String) {
        self.push(d, self.file, line, end_line, message);
    }

    /// Records a finding, in a file whose findings are reported.
    fn push(&mut self, d: &Detector, file: usize, line: usize, end_line: usize, message: String) {
        let Some(src) = self.unit.files.get(file).filter(|s| s.reported) else {
            return;
        };
        self.findings.push((
            file,
            Finding {
                file: src.name.to_string(),
                line,
                end_line,
                detector: d.id.to_string(),
                swc: d.swc.to_string(),
                category: d.category,
                severity: d.severity,
                confidence: d.confidence,
                message,
                hint: d.hint.to_string(),
            },
        ));
    }
}

/// Runs every detector over the parsed files: each contract with what it inherits. Returns the
/// findings in reported files, with the index of their file.
pub(crate) fn run(unit: &Unit<'_>) -> Vec<(usize, Finding)> {
    let mut out = Out {
        unit,
        layout_steps: MAX_LAYOUT_STEPS,
        lock_steps: MAX_LOCK_STEPS,
        deployable: unit
            .contracts
            .iter()
            .filter(|k| !k.stateless)
            .map(|k| k.name.as_str())
            .collect(),
        address_types: unit
            .contracts
            .iter()
            .filter(|k| !k.stateless || k.functions.iter().all(|f| f.exposed))
            .map(|k| k.name.as_str())
            .collect(),
        file: 0,
        findings: Vec::new(),
    };
    for (i, src) in unit.files.iter().enumerate() {
        out.file = i;
        for r in src.rewrites {
            let message = match r.word {
                "throw" => "`throw` is deprecated: use revert() or require",
                "suicide" => "`suicide` is deprecated: use selfdestruct",
                "sha3" => "`sha3` is deprecated: use keccak256",
                _ => "`var` is deprecated: declare the type",
            };
            out.line(&DEPRECATED, r.line, r.line, message.into());
        }
    }
    // Each contract with what it inherits, and the facts of its own functions: each body is
    // analysed once, in the contract that declares it.
    let mut budget = MAX_INHERITED_FUNCTIONS;
    let flat: Vec<Contract> = (0..unit.contracts.len())
        .map(|ci| unit.with_inherited(ci, &mut budget))
        .collect();
    let own: Vec<Facts> = flat.iter().map(Facts::own).collect();
    // Contracts another contract of the audit inherits from: through the resolved lineages,
    // and by any base name written (a list cut at the linearization's bound, a name resolved
    // elsewhere).
    let named_bases: BTreeSet<&str> = unit
        .contracts
        .iter()
        .flat_map(|k| k.bases.iter().map(|b| b.rsplit('.').next().unwrap_or(b)))
        .collect();
    let mut heirs: Vec<bool> = unit
        .contracts
        .iter()
        .map(|k| named_bases.contains(k.name.as_str()))
        .collect();
    for ancestors in &unit.ancestors {
        for &a in ancestors {
            heirs[a] = true;
        }
    }
    let free_builtins = ["require", "assert"]
        .iter()
        .any(|n| unit.free_functions.contains(*n));
    let callees = callee::Callees::new(unit);
    for (ci, c) in flat.iter().enumerate() {
        out.file = c.file;
        // A state variable named as entropy and seeded from the block.
        for (name, init) in &c.state_inits {
            let n = name.to_ascii_lowercase();
            if contains(init, &is_block_value)
                && ["salt", "seed", "rand", "entropy"]
                    .iter()
                    .any(|w| n.contains(w))
            {
                out.at(
                    &WEAK_RANDOMNESS,
                    &expr_loc(init),
                    format!("`{name}` is seeded from a block value"),
                );
            }
        }
        wrong_constructor(&mut out, c);
        locked_ether(&mut out, c);
        let mine = || c.functions.iter().filter(|f| !f.inherited);
        for f in mine().filter(|f| f.constant) {
            out.line(
                &DEPRECATED,
                f.line,
                f.line,
                format!("`{}` is declared `constant`: use view", f.name),
            );
        }
        let lineage: Vec<&Facts> = std::iter::once(ci)
            .chain(unit.ancestors[ci].iter().copied())
            .map(|a| &own[a])
            .collect();
        let facts = Facts::inherited(c, &lineage);
        // What only a constructor writes is known where no contract of the audit inherits
        // from this one (an heir may override its getters or write its state).
        // (Nor where the audit declares its own `require` or `assert` at file level.)
        let mods = calls::ContractIndex::new(c)
            .with_built((!heirs[ci] && !free_builtins).then(|| facts.built(c)));
        for f in mine() {
            let Some(body) = f.body.as_deref() else {
                continue;
            };
            out.file = f.file;
            // A check of the caller made by another contract of the audit guards as a
            // modifier does.
            let checked;
            let f = if !f.access_modifier && {
                let state = |n: &str| c.state_types.get(n).cloned();
                let static_views = !out.src().before_05;
                callees.checks_caller(
                    || callee::Scope::new(&state, f, body, &c.usings, static_views),
                    body,
                )
            } {
                checked = Function {
                    access_modifier: true,
                    ..f.clone()
                };
                &checked
            } else {
                f
            };
            expressions(&mut out, &mods, c, f, body);
            unchecked_calls(&mut out, body);
            reentrancy(&mut out, &callees, &mods, c, &facts, f, body);
            calls_in_loops(&mut out, body);
            selfdestruct(&mut out, f, body);
            access(&mut out, c, &facts, f, body);
            front_running(&mut out, c, &facts, f, body);
            storage_pointers(&mut out, c, body);
            delegated_layouts(&mut out, ci, c, body);
            loops(&mut out, c, f, body);
            short_address(&mut out, c, f, body);
            failed_payment(&mut out, &facts, f, body);
            withdrawals(&mut out, c, f, body);
            open_withdrawals(&mut out, c, f, body);
        }
    }
    out.findings
}
