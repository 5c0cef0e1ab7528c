//! Where code can be added to a source without changing what is already there: the places
//! between a contract's members, for benchmarks that inject bugs into clean contracts.

use solang_parser::pt::{ContractPart, ContractTy, SourceUnitPart};

/// A line where contract members can be inserted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsertionPoint {
    /// The contract (not an interface or library) the line lies in.
    pub contract: String,
    /// A line (1-based) that starts between two members (or after the body's `{`, or before
    /// its `}`), right after the line where the previous one ends, so that a member's comments
    /// stay with it: whole lines inserted before it become members of the contract.
    pub line: usize,
}

/// The places in `src` between the members of each contract where whole lines can go, in
/// source order, and whether the file's compiler is older than 0.8 (arithmetic wraps). `None`
/// when the source does not parse.
pub fn insertion_points(src: &str) -> Option<(Vec<InsertionPoint>, bool)> {
    let (text, _) = crate::prepass(src);
    // Deep sources are the auditor's to refuse, not this helper's to overflow on.
    if crate::check_depth(&text).ok()? > crate::SHALLOW_DEPTH {
        return None;
    }
    let lines = crate::model::LineIndex::new(&text);
    let (unit, _) = solang_parser::parse(&text, 0).ok()?;
    let mut before_08 = true;
    let mut points = Vec::new();
    for part in &unit.0 {
        match part {
            SourceUnitPart::PragmaDirective(p) => {
                if let Some((major, minor)) = crate::model::pragma_version(p) {
                    before_08 = major == 0 && minor < 8;
                }
            }
            SourceUnitPart::ContractDefinition(c) => {
                if !matches!(c.ty, ContractTy::Contract(_) | ContractTy::Abstract(_)) {
                    continue;
                }
                let Some(name) = &c.name else { continue };
                let (start, end) = (c.loc.start(), c.loc.end());
                // The body opens at the first `{` after the name and the bases.
                let head_end = c
                    .base
                    .iter()
                    .map(|b| b.loc.end())
                    .chain([name.loc.end()])
                    .max()
                    .unwrap_or(start);
                let Some(open) = text[head_end..end].find('{').map(|i| head_end + i) else {
                    continue;
                };
                // Each member's start, then the closing brace.
                let mut starts: Vec<usize> = c.parts.iter().map(part_start).collect();
                starts.push(end.saturating_sub(1));
                let mut after = open + 1;
                for (i, next) in starts.into_iter().enumerate() {
                    // The start of the line the next member (or the `}`) begins on, if that line
                    // begins after the previous member ended.
                    if let Some(nl) = text[after..next].find('\n') {
                        points.push(InsertionPoint {
                            contract: name.name.clone(),
                            line: lines.line(after + nl + 1),
                        });
                    }
                    if let Some(p) = c.parts.get(i) {
                        after = after.max(part_end(p));
                    }
                }
            }
            _ => {}
        }
    }
    Some((points, before_08))
}

/// Whether `src` parses and its contract `contract` has a function named `function`: a check
/// that inserted lines landed as members (not in a comment).
pub fn has_function(src: &str, contract: &str, function: &str) -> bool {
    let (text, _) = crate::prepass(src);
    if crate::check_depth(&text).is_err() {
        return false;
    }
    let Ok((unit, _)) = solang_parser::parse(&text, 0) else {
        return false;
    };
    unit.0.iter().any(|part| {
        matches!(part, SourceUnitPart::ContractDefinition(c)
            if c.name.as_ref().is_some_and(|n| n.name == contract)
                && c.parts.iter().any(|p| matches!(p, ContractPart::FunctionDefinition(f)
                    if f.name.as_ref().is_some_and(|n| n.name == function))))
    })
}

fn part_start(p: &ContractPart) -> usize {
    use solang_parser::pt::CodeLocation;
    p.loc().start()
}

fn part_end(p: &ContractPart) -> usize {
    use solang_parser::pt::CodeLocation;
    p.loc().end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_lie_between_members_and_inserted_lines_become_members() {
        let src = "pragma solidity ^0.8.0;\ninterface I { function f() external; }\ncontract C is I {\n    uint x;\n    /** doc */\n    function f() external {}\n}\nlibrary L { }\n";
        let (points, before_08) = insertion_points(src).unwrap();
        assert!(!before_08);
        // After `{`, after `uint x;`, before `}`: three lines in C, none in I or L.
        assert_eq!(points.len(), 3, "{points:?}");
        for p in &points {
            assert_eq!(p.contract, "C");
            let mut lines: Vec<&str> = src.lines().collect();
            lines.insert(p.line - 1, "    function added() public {}");
            let s = lines.join("\n");
            assert!(has_function(&s, "C", "added"), "{s}");
        }
        assert!(!has_function(src, "C", "added"));
    }
}
