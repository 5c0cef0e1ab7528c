//! The detectors. Each looks at one pattern, reports the line where the fix belongs, and carries
//! its SWC id and DASP category.

use crate::model::{
    Contract, Function, Unit, called_member, called_name, is_member, root_name, walk_expr,
    walk_stmt, walk_stmt_exprs,
};
use crate::{Category, Confidence, Detector, Finding, Severity};
use solang_parser::pt::{Expression, FunctionTy, Loc, Statement};

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
    WEAK_RANDOMNESS,
    TIMESTAMP,
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
}

impl Facts {
    fn of(c: &Contract) -> Facts {
        Facts {
            claimable: claimable_addresses(c),
            auth: auth_vars(c),
            set_by_tx: amounts_set_by_transactions(c),
            calls_out: c
                .functions
                .iter()
                .filter(|g| g.body.as_ref().is_some_and(calls_out))
                .map(|g| g.name.clone())
                .collect(),
        }
    }
}

struct Out<'u, 'a> {
    unit: &'u Unit<'a>,
    findings: Vec<Finding>,
}

impl Out<'_, '_> {
    fn at(&mut self, d: &Detector, loc: &Loc, message: String) {
        let line = self.unit.line(loc);
        let end_line = self.unit.end_line(loc).max(line);
        self.line(d, line, end_line, message);
    }

    fn line(&mut self, d: &Detector, line: usize, end_line: usize, message: String) {
        self.findings.push(Finding {
            file: String::new(),
            line,
            end_line,
            detector: d.id.to_string(),
            swc: d.swc.to_string(),
            category: d.category,
            severity: d.severity,
            confidence: d.confidence,
            message,
            hint: d.hint.to_string(),
        });
    }
}

/// Runs every detector over a parsed file.
pub(crate) fn run(unit: &Unit<'_>) -> Vec<Finding> {
    let mut out = Out {
        unit,
        findings: Vec::new(),
    };
    for r in unit.rewrites {
        let message = match r.word {
            "throw" => "`throw` is deprecated: use revert() or require",
            "suicide" => "`suicide` is deprecated: use selfdestruct",
            "sha3" => "`sha3` is deprecated: use keccak256",
            _ => "`var` is deprecated: declare the type",
        };
        out.line(&DEPRECATED, r.line, r.line, message.into());
    }
    for c in &unit.contracts {
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
        for f in c.functions.iter().filter(|f| f.constant) {
            out.line(
                &DEPRECATED,
                f.line,
                f.line,
                format!("`{}` is declared `constant`: use view", f.name),
            );
        }
        let facts = Facts::of(c);
        for f in &c.functions {
            let Some(body) = &f.body else { continue };
            expressions(&mut out, c, f, body);
            unchecked_calls(&mut out, body);
            reentrancy(&mut out, c, &facts, body);
            calls_in_loops(&mut out, body);
            selfdestruct(&mut out, f, body);
            access(&mut out, c, &facts, f, body);
            front_running(&mut out, c, &facts, f, body);
            storage_pointers(&mut out, c, body);
            loops(&mut out, c, f, body);
            short_address(&mut out, c, f, body);
            failed_payment(&mut out, &facts, f, body);
            withdrawals(&mut out, c, f, body);
        }
    }
    out.findings
}

fn is_block_value(e: &Expression) -> bool {
    is_member(e, "block", "timestamp")
        || is_member(e, "block", "number")
        || is_member(e, "block", "difficulty")
        || is_member(e, "block", "prevrandao")
        || is_member(e, "block", "coinbase")
        || matches!(e, Expression::Variable(v) if v.name == "now")
        || matches!(called_name(e), Some("blockhash"))
        || matches!(called_member(e), Some(("blockhash", r)) if matches!(r, Expression::Variable(v) if v.name == "block"))
}

fn is_arith(e: &Expression) -> bool {
    matches!(
        e,
        Expression::Add(..) | Expression::Subtract(..) | Expression::Multiply(..)
    )
}

/// Amounts the function sends as ether: the contract's balance bounds them, so adding them up
/// cannot overflow (subtracting them can still underflow).
fn sent_amounts(body: &Statement) -> Vec<String> {
    let mut out = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::FunctionCall(_, callee, args) = e
            && let (Expression::MemberAccess(_, _, m), [amount]) =
                (callee.as_ref(), args.as_slice())
            && matches!(m.name.as_str(), "transfer" | "send" | "value")
        {
            out.extend(root_name(amount).map(str::to_string));
        }
    });
    out
}

/// Names whose values any caller chooses, unbounded: the parameters of a function anyone can
/// call (an owner-only or internal function's inputs are trusted) and the locals computed from
/// them (in source order), less those the function bounds — an upper bound in a comparison
/// (`require(v <= limit)`, `require(balance >= v)`), a local checked after its arithmetic
/// (`c = a * b; assert(c / a == b)`).
fn tainted_names(f: &Function, body: &Statement) -> Vec<String> {
    if !f.exposed || guarded(f, body) {
        return Vec::new();
    }
    let mut names = f.params.clone();
    walk_stmt(body, &mut |st| {
        if let Statement::VariableDefinition(_, decl, Some(init)) = st
            && let Some(n) = &decl.name
            && carries(init, &names)
        {
            names.push(n.name.clone());
        }
    });
    let mut safe: Vec<String> = Vec::new();
    walk_stmt_exprs(body, &mut |e| match e {
        Expression::Less(_, small, _)
        | Expression::LessEqual(_, small, _)
        | Expression::More(_, _, small)
        | Expression::MoreEqual(_, _, small) => {
            safe.extend(root_name(small).map(str::to_string));
        }
        Expression::Equal(_, a, b) => {
            for side in [a, b] {
                walk_expr(side, &mut |x| {
                    if let Expression::Variable(v) = x
                        && !f.params.contains(&v.name)
                    {
                        safe.push(v.name.clone());
                    }
                });
            }
        }
        _ => {}
    });
    names.retain(|n| !safe.contains(n));
    names
}

/// Whether the value of `e` comes from one of `names`: the name itself, arithmetic, casts and
/// conditionals over it, or a member or element *of* it (an index into another array does not
/// make the element the caller's).
fn carries(e: &Expression, names: &[String]) -> bool {
    match e {
        Expression::Variable(v) => names.contains(&v.name),
        Expression::Add(_, a, b)
        | Expression::Subtract(_, a, b)
        | Expression::Multiply(_, a, b)
        | Expression::Divide(_, a, b)
        | Expression::Modulo(_, a, b)
        | Expression::Power(_, a, b)
        | Expression::ShiftLeft(_, a, b)
        | Expression::ConditionalOperator(_, _, a, b) => carries(a, names) || carries(b, names),
        Expression::Parenthesis(_, a)
        | Expression::ArraySubscript(_, a, _)
        | Expression::MemberAccess(_, a, _) => carries(a, names),
        // A type conversion `uint256(x)` keeps the value.
        Expression::FunctionCall(_, callee, args)
            if matches!(callee.as_ref(), Expression::Type(..)) =>
        {
            args.iter().any(|a| carries(a, names))
        }
        _ => false,
    }
}

/// An arithmetic expression with an operand the caller chooses (what a caller can push to wrap).
fn risky_arith(tainted: &[String], e: &Expression) -> bool {
    let (Expression::Add(_, a, b) | Expression::Subtract(_, a, b) | Expression::Multiply(_, a, b)) =
        e
    else {
        return false;
    };
    let input = |x: &Expression| carries(x, tainted);
    // Constants and msg.value on one side of an addition do not wrap in practice.
    let small = |x: &Expression| {
        matches!(
            x,
            Expression::NumberLiteral(..) | Expression::HexNumberLiteral(..)
        ) || is_member(x, "msg", "value")
            || is_time(x)
    };
    match e {
        Expression::Add(..) => (input(a) || input(b)) && !small(a) && !small(b),
        _ => input(a) || input(b),
    }
}

fn is_time(e: &Expression) -> bool {
    is_member(e, "block", "timestamp") || matches!(e, Expression::Variable(v) if v.name == "now")
}

fn contains(e: &Expression, pred: &dyn Fn(&Expression) -> bool) -> bool {
    let mut found = false;
    walk_expr(e, &mut |x| found |= pred(x));
    found
}

/// tx.origin comparisons, block values as entropy, timestamp comparisons, unchecked arithmetic.
fn expressions(out: &mut Out<'_, '_>, c: &Contract, f: &Function, body: &Statement) {
    let before_08 = out.unit.before_08 && !c.safe_math;
    let tainted = tainted_names(f, body);
    let sent = sent_amounts(body);
    // Entries a subtraction moves value out of: `balances[from] -= v; balances[to] += v;`
    // moves value between entries of one mapping and cannot create an overflow the total
    // supply does not already have.
    let mut debited: Vec<(String, String)> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::AssignSubtract(_, lhs, rhs) = e
            && let (Some(l), Some(r)) = (root_name(lhs), root_name(rhs))
        {
            debited.push((l.to_string(), r.to_string()));
        }
    });
    let moved = |lhs: &Expression, rhs: &Expression| {
        matches!((root_name(lhs), root_name(rhs)), (Some(l), Some(r))
            if debited.iter().any(|(dl, dr)| dl == l && dr == r))
    };
    // Names compared in an order test anywhere in the function: a subtraction from them is
    // taken as checked (`require(balance >= amount); balance -= amount;`).
    let mut bounded: Vec<String> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::Less(_, a, b)
        | Expression::More(_, a, b)
        | Expression::LessEqual(_, a, b)
        | Expression::MoreEqual(_, a, b) = e
        {
            if !is_arith(a) && !is_arith(b) {
                bounded.extend(root_name(a).map(str::to_string));
                bounded.extend(root_name(b).map(str::to_string));
            }
            // The overflow check itself: `x + y >= x` (or `>`, either way round).
            for (sum, other) in [(a, b), (b, a)] {
                if let Expression::Add(_, x, y) = sum.as_ref()
                    && let Some(o) = root_name(other)
                    && (root_name(x) == Some(o) || root_name(y) == Some(o))
                {
                    bounded.push(o.to_string());
                }
            }
        }
    });
    // A value, or either operand of an arithmetic expression, compared somewhere in the function.
    let checked = |x: &Expression| {
        let is_bounded =
            |y: &Expression| root_name(y).is_some_and(|n| bounded.iter().any(|b| b == n));
        match x {
            Expression::Add(_, a, b)
            | Expression::Subtract(_, a, b)
            | Expression::Multiply(_, a, b) => is_bounded(a) || is_bounded(b),
            other => is_bounded(other),
        }
    };
    // Locals that hold a block value (`bytes32 answer = blockhash(n);`), where they are set,
    // and every local's name.
    let mut from_block: Vec<String> = Vec::new();
    let mut from_block_at: Vec<Loc> = Vec::new();
    let mut locals: Vec<String> = Vec::new();
    walk_stmt(body, &mut |st| {
        if let Statement::VariableDefinition(loc, decl, init) = st
            && let Some(n) = &decl.name
        {
            locals.push(n.name.clone());
            if init.as_ref().is_some_and(|i| contains(i, &is_block_value)) {
                from_block.push(n.name.clone());
                from_block_at.push(*loc);
            }
        }
    });
    // A function whose name says it draws random numbers: every block value in it is entropy.
    let lname = f.name.to_ascii_lowercase();
    let random_fn = lname.starts_with("rand") || lname.contains("random") || lname.contains("seed");
    // `cond ? x : y` that picks the later of two times computes, it does not decide.
    let mut picks: Vec<Loc> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::ConditionalOperator(_, cond, x, y) = e
            && (is_time(x) || is_time(y))
        {
            picks.push(expr_loc(cond));
        }
    });
    // The block time against one account's own deadline (`now > lockTime[msg.sender]`,
    // `now > acc.unlockTime`): a miner can move one lock by seconds, which decides nothing.
    let per_account = |x: &Expression| {
        contains(x, &|y| {
            matches!(y, Expression::ArraySubscript(..))
                || matches!(y, Expression::MemberAccess(_, base, _)
                    if matches!(base.as_ref(), Expression::Variable(v) if locals.contains(&v.name)))
        })
    };
    let block_derived = |x: &Expression| {
        contains(x, &|y| {
            is_block_value(y)
                || matches!(y, Expression::Variable(v) if from_block.contains(&v.name))
        })
    };
    let mut hits: Vec<(&Detector, Loc, String)> = Vec::new();
    walk_stmt_exprs(body, &mut |e| match e {
        Expression::Equal(loc, a, b) | Expression::NotEqual(loc, a, b) => {
            if is_member(a, "tx", "origin") || is_member(b, "tx", "origin") {
                hits.push((&TX_ORIGIN, *loc, "authorization by tx.origin".into()));
            }
            if is_time(a) || is_time(b) {
                hits.push((&TIMESTAMP, *loc, "equality test on the block time".into()));
            } else if block_derived(a) || block_derived(b) {
                // A guess compared with a block hash or number: the answer is public.
                hits.push((
                    &WEAK_RANDOMNESS,
                    *loc,
                    "a guess compared with a block value".into(),
                ));
            }
        }
        Expression::Less(loc, a, b)
        | Expression::More(loc, a, b)
        | Expression::LessEqual(loc, a, b)
        | Expression::MoreEqual(loc, a, b)
            if (contains(a, &is_time) || contains(b, &is_time))
                && !picks.contains(loc)
                && !per_account(a)
                && !per_account(b) =>
        {
            hits.push((
                &TIMESTAMP,
                *loc,
                "a decision depends on the block time".into(),
            ));
        }
        Expression::MemberAccess(loc, _, _)
            if is_member(e, "block", "blockhash") || is_member(e, "msg", "gas") =>
        {
            hits.push((
                &DEPRECATED,
                *loc,
                "`block.blockhash` and `msg.gas` are deprecated: use blockhash() and gasleft()"
                    .into(),
            ));
        }
        Expression::FunctionCall(loc, _, _)
            if matches!(called_member(e), Some(("callcode", _))) =>
        {
            hits.push((
                &DEPRECATED,
                *loc,
                "`callcode` is deprecated: use delegatecall".into(),
            ));
        }
        Expression::Modulo(loc, a, _) if block_derived(a) => {
            hits.push((
                &WEAK_RANDOMNESS,
                *loc,
                "a block value used as a random number".into(),
            ));
            if contains(a, &is_time) {
                hits.push((
                    &TIMESTAMP,
                    *loc,
                    "the block time used as a random number".into(),
                ));
            }
        }
        // A hash of block values turned into a number (`uint(keccak256(block.timestamp))`); a
        // hash kept as bytes is an identifier.
        Expression::FunctionCall(loc, callee, args)
            if matches!(callee.as_ref(), Expression::Type(..))
                && args
                    .iter()
                    .any(|a| contains(a, &is_hash_call) && block_derived(a)) =>
        {
            hits.push((
                &WEAK_RANDOMNESS,
                *loc,
                "a hash of block values used as a random number".into(),
            ));
            if args.iter().any(|a| contains(a, &is_time)) {
                hits.push((
                    &TIMESTAMP,
                    *loc,
                    "the block time used as a random number".into(),
                ));
            }
        }
        // A block hash, or the difficulty (prevrandao), has no use but entropy.
        _ if is_block_hash(e)
            || is_member(e, "block", "difficulty")
            || is_member(e, "block", "prevrandao") =>
        {
            hits.push((
                &WEAK_RANDOMNESS,
                expr_loc(e),
                "a block hash or the difficulty used as a source of randomness".into(),
            ));
        }
        _ if random_fn && is_block_value(e) => {
            hits.push((
                &WEAK_RANDOMNESS,
                expr_loc(e),
                format!("`{}` draws its randomness from block values", f.name),
            ));
        }
        Expression::AssignSubtract(loc, lhs, rhs)
            if before_08
                && !f.view
                && !checked(lhs)
                && carries(rhs, &tainted)
                && root_name(lhs).is_some_and(|n| c.state_vars.contains(n)) =>
        {
            hits.push((
                &OVERFLOW,
                *loc,
                "unchecked subtraction from a state variable".into(),
            ));
        }
        // Adding msg.value cannot overflow: all the ether there is fits in 256 bits many times.
        // An amount the caller chooses, added to state nothing bounds.
        Expression::AssignAdd(loc, lhs, rhs) | Expression::AssignMultiply(loc, lhs, rhs)
            if before_08
                && !f.view
                && !is_member(rhs, "msg", "value")
                && carries(rhs, &tainted)
                && !root_name(rhs).is_some_and(|n| sent.iter().any(|s| s == n))
                && !checked(lhs)
                && !moved(lhs, rhs)
                && root_name(lhs).is_some_and(|n| c.state_vars.contains(n)) =>
        {
            hits.push((
                &OVERFLOW,
                *loc,
                "unchecked arithmetic on a state variable".into(),
            ));
        }
        Expression::MoreEqual(loc, a, b)
            if before_08
                && matches!(a.as_ref(), Expression::Subtract(..))
                && matches!(b.as_ref(), Expression::NumberLiteral(_, n, _, _) if n == "0") =>
        {
            hits.push((
                &OVERFLOW,
                *loc,
                "`a - b >= 0` is always true for unsigned integers: the subtraction wraps".into(),
            ));
        }
        Expression::Assign(_, lhs, rhs)
            if before_08
                && !f.view
                && root_name(lhs).is_some_and(|n| c.state_vars.contains(n))
                && risky_arith(&tainted, rhs)
                && !(matches!(rhs.as_ref(), Expression::Subtract(..)) && checked(rhs)) =>
        {
            hits.push((
                &OVERFLOW,
                expr_loc(rhs),
                "unchecked arithmetic stored in state".into(),
            ));
        }
        _ => {}
    });
    // From 0.8, arithmetic wraps only inside `unchecked { }`: flag what inputs reach there.
    if !out.unit.before_08 && !f.view {
        walk_stmt(body, &mut |st| {
            if let Statement::Block {
                unchecked: true, ..
            } = st
            {
                walk_stmt_exprs(st, &mut |e| {
                    let arith = match e {
                        Expression::AssignAdd(_, lhs, rhs)
                        | Expression::AssignSubtract(_, lhs, rhs)
                        | Expression::AssignMultiply(_, lhs, rhs) => {
                            root_name(lhs).is_some_and(|n| c.state_vars.contains(n))
                                && !checked(lhs)
                                && !checked(rhs)
                                // What no caller chooses (constants, internal values) is
                                // deliberate.
                                && carries(rhs, &tainted)
                        }
                        other => risky_arith(&tainted, other) && !checked(other),
                    };
                    if arith {
                        hits.push((
                            &OVERFLOW,
                            expr_loc(e),
                            "arithmetic on inputs inside `unchecked`".into(),
                        ));
                    }
                });
            }
        });
    }
    // A local computed from inputs by unchecked arithmetic.
    if before_08 && !f.view {
        walk_stmt(body, &mut |st| {
            if let Statement::VariableDefinition(_, _, Some(init)) = st
                && risky_arith(&tainted, init)
                && !(matches!(init, Expression::Subtract(..)) && checked(init))
            {
                hits.push((
                    &OVERFLOW,
                    expr_loc(init),
                    "unchecked arithmetic on inputs".into(),
                ));
            }
        });
    }
    // A local set from a block value, when that value is used as randomness: its definition too.
    if hits.iter().any(|(d, _, _)| d.id == WEAK_RANDOMNESS.id) {
        for (name, loc) in from_block.iter().zip(&from_block_at) {
            let mut used = false;
            walk_stmt_exprs(body, &mut |e| {
                if let Expression::Modulo(_, a, _) = e {
                    used |= contains(
                        a,
                        &|y| matches!(y, Expression::Variable(v) if &v.name == name),
                    );
                }
                if let Expression::FunctionCall(_, _, args) = e
                    && is_hash_call(e)
                {
                    used |= args.iter().any(|a| {
                        contains(
                            a,
                            &|y| matches!(y, Expression::Variable(v) if &v.name == name),
                        )
                    });
                }
            });
            if used {
                hits.push((
                    &WEAK_RANDOMNESS,
                    *loc,
                    format!("`{name}` holds a block value that becomes randomness"),
                ));
            }
        }
    }
    for (d, loc, m) in hits {
        out.at(d, &loc, m);
    }
}

/// `blockhash(n)` or `block.blockhash(n)`.
fn is_block_hash(e: &Expression) -> bool {
    matches!(called_name(e), Some("blockhash"))
        || matches!(called_member(e), Some(("blockhash", r)) if matches!(r, Expression::Variable(v) if v.name == "block"))
}

const LOW_LEVEL: &[&str] = &["call", "send", "delegatecall", "callcode"];

/// A low-level call whose success flag is dropped: an expression statement that is the call, or
/// a local that takes the flag and is never read.
fn unchecked_calls(out: &mut Out<'_, '_>, body: &Statement) {
    let mut hits = Vec::new();
    let mut kept: Vec<(Loc, String, String)> = Vec::new();
    walk_stmt(body, &mut |s| {
        if let Statement::Expression(loc, e) = s
            && let Some((m, _)) = called_member(e)
            && LOW_LEVEL.contains(&m)
        {
            hits.push((*loc, m.to_string()));
        }
        if let Statement::VariableDefinition(loc, decl, Some(e)) = s
            && let Some(n) = &decl.name
            && let Some((m, _)) = called_member(e)
            && LOW_LEVEL.contains(&m)
        {
            kept.push((*loc, n.name.clone(), m.to_string()));
        }
    });
    for (loc, name, m) in kept {
        let mut read = false;
        walk_stmt_exprs(body, &mut |e| {
            read |= matches!(e, Expression::Variable(v) if v.name == name);
        });
        if !read {
            hits.push((loc, m));
        }
    }
    for (loc, m) in hits {
        out.at(
            &UNCHECKED_CALL,
            &loc,
            format!("the result of `{m}` is not checked"),
        );
    }
}

/// A call that hands control to another contract (and can send value). `x.call.value(v)` alone
/// only sets the value: the call is the `(…)` after it.
fn external_call(e: &Expression) -> Option<&'static str> {
    if let Expression::FunctionCall(_, callee, _) = e
        && matches!(callee.as_ref(), Expression::MemberAccess(_, _, m) if m.name == "value" || m.name == "gas")
    {
        return None;
    }
    match called_member(e) {
        Some(("call", _)) => Some("call"),
        Some(("delegatecall", _)) => Some("delegatecall"),
        Some(("callcode", _)) => Some("callcode"),
        _ => None,
    }
}

/// Whether `body` makes an external call itself.
fn calls_out(body: &Statement) -> bool {
    let mut found = false;
    walk_stmt_exprs(body, &mut |e| found |= external_call(e).is_some());
    found
}

/// State the function reads before a call and writes after it (the balance it pays out and
/// zeroes afterwards): a reentrant call sees the old value. Writes through a local storage
/// pointer (`var acc = accounts[msg.sender]; … acc.balance -= v`) are writes to state, and a
/// call to a function of the contract that calls out is a call out. State written after the
/// call but never read before it (a counter of donations) decides nothing and is not reported.
fn reentrancy(out: &mut Out<'_, '_>, c: &Contract, facts: &Facts, body: &Statement) {
    // Locals that point into state: set from a state variable and written through a member or
    // an index.
    let mut from_state: Vec<(String, String)> = Vec::new();
    walk_stmt(body, &mut |st| {
        if let Statement::VariableDefinition(_, decl, Some(init)) = st
            && let Some(n) = &decl.name
            && let Some(root) = root_name(init)
            && c.state_vars.contains(root)
            && !matches!(init, Expression::Variable(_))
        {
            from_state.push((n.name.clone(), root.to_string()));
        }
    });
    let mut aliases: Vec<(String, String)> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::Assign(_, lhs, _)
        | Expression::AssignAdd(_, lhs, _)
        | Expression::AssignSubtract(_, lhs, _) = e
            && matches!(
                lhs.as_ref(),
                Expression::MemberAccess(..) | Expression::ArraySubscript(..)
            )
            && let Some(n) = root_name(lhs)
            && let Some(pair) = from_state.iter().find(|(l, _)| l == n)
        {
            aliases.push(pair.clone());
        }
    });
    // The state a name stands for.
    let state_of = |n: &str| -> Option<String> {
        if c.state_vars.contains(n) {
            Some(n.to_string())
        } else {
            aliases.iter().find(|(l, _)| l == n).map(|(_, s)| s.clone())
        }
    };
    let internal_call_out = |e: &Expression| {
        called_name(e).is_some_and(|name| facts.calls_out.iter().any(|g| g == name))
    };
    let mut read_before: Vec<String> = Vec::new();
    let mut call: Option<(Loc, &'static str)> = None;
    let mut hit: Option<(Loc, Loc, &'static str)> = None;
    walk_stmt_exprs(body, &mut |e| {
        if hit.is_some() {
            return;
        }
        if call.is_none() {
            let kind = external_call(e).or_else(|| internal_call_out(e).then_some("call"));
            if let Some(kind) = kind {
                call = Some((expr_loc(e), kind));
                // What the call itself reads (`call.value(balances[msg.sender])()`) is read
                // before it runs.
                walk_expr(e, &mut |x| {
                    if let Expression::Variable(v) = x
                        && let Some(s) = state_of(&v.name)
                    {
                        read_before.push(s);
                    }
                });
            } else if let Expression::Variable(v) = e
                && let Some(s) = state_of(&v.name)
            {
                read_before.push(s);
            }
            return;
        }
        let written = match e {
            Expression::Assign(loc, lhs, _)
            | Expression::AssignAdd(loc, lhs, _)
            | Expression::AssignSubtract(loc, lhs, _)
            | Expression::AssignMultiply(loc, lhs, _)
            | Expression::AssignDivide(loc, lhs, _)
            | Expression::Delete(loc, lhs)
            | Expression::PostIncrement(loc, lhs)
            | Expression::PostDecrement(loc, lhs)
            | Expression::PreIncrement(loc, lhs)
            | Expression::PreDecrement(loc, lhs) => root_name(lhs)
                .and_then(&state_of)
                .filter(|s| read_before.contains(s))
                .map(|_| *loc),
            _ => None,
        };
        if let (Some(w), Some((cl, kind))) = (written, call) {
            hit = Some((cl, w, kind));
        }
    });
    if let Some((call_loc, write_loc, kind)) = hit {
        let line = out.unit.line(&call_loc);
        let end = out.unit.line(&write_loc).max(line);
        out.line(
            &REENTRANCY,
            line,
            end,
            format!("state is written on line {end} after the external `{kind}` on line {line}"),
        );
    }
}

fn expr_loc(e: &Expression) -> Loc {
    use solang_parser::pt::CodeLocation;
    e.loc()
}

/// The conditions a statement tests: an `if`'s, a `require`/`assert`'s first argument.
fn tested(s: &Statement) -> Option<&Expression> {
    match s {
        Statement::If(_, cond, _, _) => Some(cond),
        Statement::Expression(_, e) => condition_of(e),
        _ => None,
    }
}

/// The condition of a `require(...)`/`assert(...)` call.
fn condition_of(e: &Expression) -> Option<&Expression> {
    match e {
        Expression::FunctionCall(_, callee, args) if matches!(callee.as_ref(), Expression::Variable(v) if v.name == "require" || v.name == "assert") => {
            args.first()
        }
        _ => None,
    }
}

/// Payments inside a loop that revert the whole loop when one recipient fails: `transfer`, and
/// `send`/`call` whose result is required (an unchecked one skips the failure and goes on).
fn calls_in_loops(out: &mut Out<'_, '_>, body: &Statement) {
    let mut hits = Vec::new();
    walk_stmt(body, &mut |s| {
        let inner = match s {
            Statement::For(_, _, _, _, Some(b)) => b.as_ref(),
            Statement::While(_, _, b) | Statement::DoWhile(_, b, _) => b.as_ref(),
            _ => return,
        };
        walk_stmt(inner, &mut |st| {
            if let Some(cond) = tested(st) {
                walk_expr(cond, &mut |e| {
                    if let Some((m @ ("send" | "call"), _)) = called_member(e) {
                        hits.push((expr_loc(e), m.to_string()));
                    }
                });
            }
        });
        walk_stmt_exprs(inner, &mut |e| {
            if let Some(("transfer", _)) = called_member(e)
                && matches!(e, Expression::FunctionCall(_, _, a) if a.len() == 1)
            {
                hits.push((expr_loc(e), "transfer".to_string()));
            }
        });
    });
    hits.sort_by_key(|(l, _)| l.start());
    hits.dedup_by_key(|(l, _)| l.start());
    for (loc, m) in hits {
        out.at(
            &CALL_IN_LOOP,
            &loc,
            format!("`{m}` inside a loop: one recipient can block the rest"),
        );
    }
}

/// Whether a function checks who calls it: a modifier, or a comparison with msg.sender.
fn guarded(f: &Function, body: &Statement) -> bool {
    if f.access_modifier {
        return true;
    }
    let mut checked = false;
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::Equal(_, a, b) | Expression::NotEqual(_, a, b) = e
            && (is_member(a, "msg", "sender") || is_member(b, "msg", "sender"))
        {
            checked = true;
        }
    });
    checked
}

fn selfdestruct(out: &mut Out<'_, '_>, f: &Function, body: &Statement) {
    if !f.exposed || f.ty == FunctionTy::Constructor || guarded(f, body) {
        return;
    }
    let mut hits = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if matches!(called_name(e), Some("selfdestruct")) {
            hits.push(expr_loc(e));
        }
    });
    for loc in hits {
        out.at(
            &UNPROTECTED_SELFDESTRUCT,
            &loc,
            format!("anyone can call `{}` and destroy the contract", f.name),
        );
    }
}

/// A function meant as the constructor whose name does not make it one.
fn wrong_constructor(out: &mut Out<'_, '_>, c: &Contract) {
    let has_constructor = c
        .functions
        .iter()
        .any(|f| f.ty == FunctionTy::Constructor || f.name == c.name);
    if !out.unit.before_05 || has_constructor {
        return;
    }
    for f in &c.functions {
        if f.ty != FunctionTy::Function || !f.exposed || f.view || f.name.is_empty() {
            continue;
        }
        // A constructor sets up state.
        let writes_state = f.body.as_ref().is_some_and(|b| {
            let mut w = false;
            walk_stmt_exprs(b, &mut |e| {
                if let Expression::Assign(_, lhs, _) = e {
                    w |= root_name(lhs).is_some_and(|n| c.state_vars.contains(n));
                }
            });
            w
        });
        if !writes_state {
            continue;
        }
        // Same letters, another case: `function owned()` in `contract Owned` never runs as the
        // constructor.
        if f.name != c.name && f.name.eq_ignore_ascii_case(&c.name) {
            out.line(
                &WRONG_CONSTRUCTOR,
                f.line,
                f.line,
                format!(
                    "`{}` looks like the constructor of `{}` but is a public function anyone can call",
                    f.name, c.name
                ),
            );
        }
    }
}

/// A contract that accepts ether and has no way to send any out.
fn locked_ether(out: &mut Out<'_, '_>, c: &Contract) {
    let Some(payable) = c.functions.iter().find(|f| f.payable) else {
        return;
    };
    // Inherited code may pay out, an interface or abstract contract has no code to judge, and
    // assembly may call out: only self-contained, complete contracts are judged.
    if !c.bases.is_empty() || c.functions.iter().any(|f| f.body.is_none()) {
        return;
    }
    let mut assembly = false;
    for f in &c.functions {
        if let Some(body) = &f.body {
            walk_stmt(body, &mut |s| {
                assembly |= matches!(s, Statement::Assembly { .. })
            });
        }
    }
    if assembly {
        return;
    }
    let mut pays = false;
    for f in &c.functions {
        if let Some(body) = &f.body {
            walk_stmt_exprs(body, &mut |e| {
                pays |= matches!(
                    called_member(e),
                    Some((
                        "transfer" | "send" | "call" | "delegatecall" | "callcode",
                        _
                    ))
                ) || matches!(called_name(e), Some("selfdestruct"));
            });
        }
    }
    if !pays {
        out.line(
            &LOCKED_ETHER,
            payable.line,
            payable.line,
            format!("`{}` accepts ether that nothing can take out", c.name),
        );
    }
}

/// Whether the function checks its caller or a state condition before acting: a modifier, or a
/// `require`/`if` on msg.sender or on any state variable (`require(!initialized)`).
fn checks_state(c: &Contract, f: &Function, body: &Statement) -> bool {
    if guarded(f, body) {
        return true;
    }
    let mut checked = false;
    walk_stmt(body, &mut |s| {
        let cond = match s {
            Statement::If(_, cond, _, _) => Some(cond),
            Statement::Expression(_, e) => match e {
                Expression::FunctionCall(_, callee, args) if matches!(callee.as_ref(), Expression::Variable(v) if v.name == "require" || v.name == "assert") => {
                    args.first()
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(cond) = cond {
            walk_expr(cond, &mut |x| {
                if let Expression::Variable(v) = x
                    && c.state_vars.contains(&v.name)
                {
                    checked = true;
                }
            });
        }
    });
    checked
}

/// Arbitrary delegatecall targets, and owner changes anyone can make.
fn access(out: &mut Out<'_, '_>, c: &Contract, facts: &Facts, f: &Function, body: &Statement) {
    if !f.exposed || f.ty == FunctionTy::Constructor || f.name == c.name {
        return;
    }
    let unguarded = !guarded(f, body);
    let mut hits: Vec<(&Detector, Loc, String)> = Vec::new();
    // Array lengths written directly (before 0.6): shrunk below zero without a check on the
    // length, or set to what the caller asks; then any slot of storage is an element.
    let tainted = tainted_names(f, body);
    // A lower bound on the length (`length > 0`, `length != 0`; not `0 <= length`, always true).
    let mut length_checked: Vec<&str> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        let zero = |x: &Expression| matches!(x, Expression::NumberLiteral(_, n, _, _) if n == "0");
        let pairs: Vec<(&Expression, &Expression, bool)> = match e {
            Expression::More(_, a, b) => vec![(a, b, true)],
            Expression::MoreEqual(_, a, b) => vec![(a, b, false)],
            Expression::Less(_, a, b) => vec![(b, a, true)],
            Expression::LessEqual(_, a, b) => vec![(b, a, false)],
            Expression::NotEqual(_, a, b) => vec![(a, b, true), (b, a, true)],
            _ => Vec::new(),
        };
        for (big, small, strict) in pairs {
            if strict || !zero(small) {
                length_checked.extend(length_of(c, big));
            }
        }
    });
    let mut caller_sized: Vec<&str> = Vec::new();
    walk_stmt_exprs(body, &mut |e| match e {
        Expression::PostDecrement(loc, x)
        | Expression::PreDecrement(loc, x)
        | Expression::AssignSubtract(loc, x, _) => {
            if let Some(arr) = length_of(c, x)
                && !length_checked.contains(&arr)
            {
                hits.push((
                    &ARBITRARY_STORAGE,
                    *loc,
                    format!("`{arr}.length` is shrunk unchecked: below zero it covers all storage"),
                ));
            }
        }
        Expression::Assign(loc, x, v) => {
            if let Some(arr) = length_of(c, x)
                && carries(v, &tainted)
            {
                caller_sized.push(arr);
                hits.push((
                    &ARBITRARY_STORAGE,
                    *loc,
                    format!("the caller sets `{arr}.length`: any storage slot becomes an element"),
                ));
            }
        }
        _ => {}
    });
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::Assign(loc, x, _) = e
            && let Expression::ArraySubscript(_, arr, Some(index)) = x.as_ref()
            && root_name(arr).is_some_and(|n| caller_sized.contains(&n))
            && carries(index, &tainted)
        {
            hits.push((
                &ARBITRARY_STORAGE,
                *loc,
                "a write at an index the caller chooses, past a length the caller chose".into(),
            ));
        }
    });
    walk_stmt_exprs(body, &mut |e| {
        // Calling data the caller chose into a delegate: the Parity wallet pattern.
        let forwards_data = |args: &[Expression]| args.iter().any(|a| is_member(a, "msg", "data"));
        if unguarded
            && let Expression::FunctionCall(_, _, args) = e
            && let Some(("delegatecall", _)) = called_member(e)
            && forwards_data(args)
        {
            hits.push((
                &ARBITRARY_DELEGATECALL,
                expr_loc(e),
                "anyone's call data is delegated: every function of the target runs as this contract"
                    .into(),
            ));
        }
        if unguarded
            && let Some(("delegatecall", target)) = called_member(e)
            && root_name(target).is_some_and(|n| f.params.iter().any(|p| p == n))
        {
            hits.push((
                &ARBITRARY_DELEGATECALL,
                expr_loc(e),
                "delegatecall to an address the caller passes".into(),
            ));
        }
    });
    // From the declaration (where the missing guard belongs) to the write.
    let mut ranges: Vec<(usize, String)> = Vec::new();
    if f.ty == FunctionTy::Function && !checks_state(c, f, body) {
        let auth = &facts.auth;
        for (loc, name) in auth_writes(c, auth, body) {
            ranges.push((
                out.unit.line(&loc),
                format!("anyone can call `{}` and set `{name}`", f.name),
            ));
        }
        // Through the call graph: a helper (often internal) that sets them unguarded.
        walk_stmt_exprs(body, &mut |e| {
            if let Some(callee) = called_name(e)
                && callee != f.name
                && let Some(g) = c
                    .functions
                    .iter()
                    .find(|g| g.name == callee && g.ty == FunctionTy::Function && g.body.is_some())
                && let Some(gb) = &g.body
                && !checks_state(c, g, gb)
                && let Some((_, name)) = auth_writes(c, auth, gb).into_iter().next()
            {
                ranges.push((
                    out.unit.line(&expr_loc(e)),
                    format!(
                        "anyone can call `{}`, which calls `{callee}` and sets `{name}`",
                        f.name
                    ),
                ));
            }
        });
    }
    for (d, loc, m) in hits {
        out.at(d, &loc, m);
    }
    for (end, m) in ranges {
        out.line(&UNPROTECTED_OWNER, f.line, end.max(f.line), m);
    }
}

/// `a` in `a.length`, when `a` is a state array.
fn length_of<'e>(c: &Contract, x: &'e Expression) -> Option<&'e str> {
    match x {
        Expression::MemberAccess(_, arr, m) if m.name == "length" => {
            root_name(arr).filter(|n| c.state_arrays.contains(*n))
        }
        _ => None,
    }
}

/// State variables that decide who may act: compared with msg.sender somewhere (in a function
/// or a modifier), or named as an owner or admin. Mappings (`tokenOwner[id]`, `_owners[id]`)
/// record who owns each item: data, not the contract's access control — unless named as owners
/// and looked up by the caller in a condition (`require(owners[msg.sender] != 0)`).
fn auth_vars(c: &Contract) -> Vec<String> {
    let mut out: Vec<String> = c
        .state_vars
        .iter()
        .filter(|n| !c.state_maps.contains(*n))
        .filter(|n| {
            let n = n.to_ascii_lowercase();
            n.contains("owner") || n.contains("admin")
        })
        .cloned()
        .collect();
    for g in &c.functions {
        let Some(body) = &g.body else { continue };
        walk_stmt_exprs(body, &mut |e| {
            if let Expression::ArraySubscript(_, m, Some(i)) = e
                && is_member(i, "msg", "sender")
                && let Expression::Variable(v) = m.as_ref()
                && c.state_maps.contains(&v.name)
                && {
                    let n = v.name.to_ascii_lowercase();
                    n.contains("owner") || n.contains("admin")
                }
            {
                out.push(v.name.clone());
            }
            if let Expression::Equal(_, a, b) | Expression::NotEqual(_, a, b) = e {
                for (x, y) in [(a, b), (b, a)] {
                    if is_member(x, "msg", "sender")
                        && let Some(n) = root_name(y)
                        && c.state_vars.contains(n)
                        && !c.state_maps.contains(n)
                    {
                        out.push(n.to_string());
                    }
                }
            }
        });
    }
    out
}

/// Assignments to `auth` variables in `body`.
fn auth_writes(c: &Contract, auth: &[String], body: &Statement) -> Vec<(Loc, String)> {
    let mut out = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::Assign(loc, lhs, _) = e
            && let Some(name) = root_name(lhs)
            && c.state_vars.contains(name)
            && auth.iter().any(|a| a == name)
        {
            out.push((*loc, name.to_string()));
        }
    });
    out
}

fn is_hash_call(e: &Expression) -> bool {
    matches!(called_name(e), Some("keccak256" | "sha256" | "ripemd160"))
}

/// ERC-20 approve races and puzzles whose answer a front-runner can copy.
fn front_running(
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
fn amounts_set_by_transactions(c: &Contract) -> Vec<String> {
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

fn is_param(f: &Function, e: &Expression) -> bool {
    matches!(e, Expression::Variable(v) if f.params.contains(&v.name))
}

/// Before 0.5, a local struct or array declared without initializer is a storage pointer to slot 0.
fn storage_pointers(out: &mut Out<'_, '_>, c: &Contract, body: &Statement) {
    if !out.unit.before_05 {
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
fn loops(out: &mut Out<'_, '_>, c: &Contract, f: &Function, body: &Statement) {
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
        if contains(
            cond,
            &|x| matches!(x, Expression::MemberAccess(_, a, m) if m.name == "length" && state_array(a)),
        ) {
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

/// `new T[](n)`.
fn is_new_array(e: &Expression) -> bool {
    matches!(e, Expression::New(..))
        || matches!(e, Expression::FunctionCall(_, callee, _) if matches!(callee.as_ref(), Expression::New(..)))
}

/// Token transfers that trust the length of their arguments (before 0.5), in minimal tokens
/// (a full ERC-20, with `approve`, is left to exchanges that check input lengths).
fn short_address(out: &mut Out<'_, '_>, c: &Contract, f: &Function, body: &Statement) {
    if !out.unit.before_05
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

/// The value under type conversions: `x` in `payable(x)`, `address(x)`, `uint256(x)`.
fn converted(e: &Expression) -> &Expression {
    match e {
        Expression::FunctionCall(_, callee, args)
            if args.len() == 1
                && (matches!(callee.as_ref(), Expression::Type(..))
                    || matches!(callee.as_ref(), Expression::Variable(v) if v.name == "payable")) =>
        {
            converted(&args[0])
        }
        Expression::Parenthesis(_, x) => converted(x),
        _ => e,
    }
}

/// Ether paid out of a per-account balance that the function never debits (so the caller is paid
/// again and again), or guarded by a check the wrong way round (`amount >= balance`).
fn withdrawals(out: &mut Out<'_, '_>, c: &Contract, f: &Function, body: &Statement) {
    if !f.exposed || f.ty != FunctionTy::Function || guarded(f, body) {
        return;
    }
    // `x.transfer(a)`, `x.send(a)`, `x.call.value(a)(…)`: the amount.
    let mut paid: Vec<(Loc, &Expression)> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::FunctionCall(_, callee, args) = e
            && let (Expression::MemberAccess(_, _, m), [amount]) =
                (callee.as_ref(), args.as_slice())
            && matches!(m.name.as_str(), "transfer" | "send" | "value")
        {
            paid.push((expr_loc(e), amount));
        }
    });
    let balance_of_caller = |x: &Expression| {
        matches!(x, Expression::ArraySubscript(_, m, Some(i))
            if is_member(i, "msg", "sender") && root_name(m).is_some_and(|n| c.state_vars.contains(n)))
    };
    let mut written: Vec<&str> = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        if let Expression::Assign(_, lhs, _)
        | Expression::AssignSubtract(_, lhs, _)
        | Expression::Delete(_, lhs) = e
        {
            written.extend(root_name(lhs));
        }
    });
    let mut hits: Vec<(Loc, String)> = Vec::new();
    for (loc, amount) in &paid {
        if balance_of_caller(amount)
            && let Some(name) = root_name(amount)
            && !written.contains(&name)
        {
            hits.push((
                *loc,
                format!("pays out `{name}[msg.sender]` without ever reducing it"),
            ));
        }
    }
    // `require(amount >= balances[msg.sender])` before paying `amount`.
    let amounts: Vec<&str> = paid.iter().filter_map(|(_, a)| root_name(a)).collect();
    walk_stmt_exprs(body, &mut |e| {
        let (big, small) = match e {
            Expression::MoreEqual(_, a, b) | Expression::More(_, a, b) => (a, b),
            Expression::LessEqual(_, a, b) | Expression::Less(_, a, b) => (b, a),
            _ => return,
        };
        if balance_of_caller(small)
            && root_name(big)
                .is_some_and(|n| amounts.contains(&n) && f.params.iter().any(|p| p == n))
        {
            hits.push((
                expr_loc(e),
                "the balance check is the wrong way round: it lets through amounts above the balance"
                    .into(),
            ));
        }
    });
    for (loc, m) in hits {
        out.at(&UNPROTECTED_WITHDRAWAL, &loc, m);
    }
}

/// State variables any caller can make their own address: assigned `msg.sender` in a function
/// anyone can call (the king, the frontrunner, the last bidder).
fn claimable_addresses(c: &Contract) -> Vec<String> {
    let mut out = Vec::new();
    for f in &c.functions {
        let Some(body) = &f.body else { continue };
        if !f.exposed || f.ty == FunctionTy::Constructor || f.name == c.name || guarded(f, body) {
            continue;
        }
        walk_stmt_exprs(body, &mut |e| {
            if let Expression::Assign(_, lhs, rhs) = e
                && is_member(converted(rhs), "msg", "sender")
                && let Some(n) = root_name(lhs)
                && c.state_vars.contains(n)
            {
                out.push(n.to_string());
            }
        });
    }
    out
}

/// A payable function that must pay a stored address anyone can take (the previous king, the
/// last bidder) to go on: if that address rejects ether, nobody can call it again.
fn failed_payment(out: &mut Out<'_, '_>, facts: &Facts, f: &Function, body: &Statement) {
    if !f.exposed || !f.payable {
        return;
    }
    let claimable = &facts.claimable;
    let stored = |r: &Expression| root_name(r).is_some_and(|n| claimable.iter().any(|x| x == n));
    let mut hits = Vec::new();
    walk_stmt_exprs(body, &mut |e| {
        // `require(stored.send(v))`, or `stored.transfer(v)` (which reverts on failure).
        if let Expression::FunctionCall(_, callee, args) = e
            && matches!(callee.as_ref(), Expression::Variable(v) if v.name == "require" || v.name == "assert")
            && let Some(first) = args.first()
            && let Some(("send" | "call", recv)) = called_member(first)
            && stored(recv)
        {
            hits.push(expr_loc(e));
        }
        if let Some(("transfer", recv)) = called_member(e)
            && stored(recv)
            && matches!(e, Expression::FunctionCall(_, _, a) if a.len() == 1)
        {
            hits.push(expr_loc(e));
        }
    });
    for loc in hits {
        out.at(
            &FAILED_CALL_DOS,
            &loc,
            "a payment to a stored address must succeed for the function to go on".into(),
        );
    }
}
