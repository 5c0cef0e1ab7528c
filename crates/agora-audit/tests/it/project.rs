//! Projects: Foundry and Hardhat layouts, imports through remappings and libraries, contracts
//! analysed with what they inherit from other files, findings in the project's own files.

#![allow(clippy::unwrap_used)]

use agora_audit::{Finding, Layout, Project, audit_files};
use std::path::Path;

fn write(root: &Path, name: &str, text: &str) {
    let path = root.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A base in a library: who owns the contract, and a modifier whose name says nothing but whose
/// body checks the caller. Line 9 has a bug of the library's own.
const OWNED: &str = "// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

abstract contract Owned {
    address public owner;
    constructor() { owner = msg.sender; }
    modifier guarded() { require(msg.sender == owner, \"not owner\"); _; }
    function kill() public {
        selfdestruct(payable(msg.sender));
    }
}
";

/// The project's contract: `setOwner` (line 8) writes the base's `owner` unguarded; `sweep`
/// (line 11) is guarded by the base's modifier.
const VAULT: &str = "// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;

import {Owned} from \"@oz/access/Owned.sol\";
import \"./utils/Math.sol\";

contract Vault is Owned {
    function setOwner(address o) public { owner = o; }

    function sweep() public guarded {
        selfdestruct(payable(msg.sender));
    }
}
";

const MATH: &str = "pragma solidity ^0.8.0;\nlibrary Math { function max(uint a, uint b) internal pure returns (uint) { return a > b ? a : b; } }\n";

fn at(findings: &[Finding], file: &str, detector: &str) -> Vec<usize> {
    findings
        .iter()
        .filter(|f| f.file == file && f.detector == detector)
        .map(|f| f.line)
        .collect()
}

#[test]
fn a_foundry_project_is_audited_with_its_bases_from_libraries() {
    let dir = tempfile::tempdir().unwrap();
    let root = &dir.path().join("project");
    write(
        root,
        "foundry.toml",
        "[profile.default]\nsrc = \"src\"\nlibs = [\"lib\"]\nremappings = [\"@oz/=lib/oz/contracts/\"]\n",
    );
    write(root, "lib/oz/contracts/access/Owned.sol", OWNED);
    write(root, "src/Vault.sol", VAULT);
    write(root, "src/utils/Math.sol", MATH);
    // A test of the project's that imports forge-std through Foundry's guessed remapping, and an
    // import that names nothing.
    write(
        root,
        "lib/forge-std/src/Test.sol",
        "pragma solidity ^0.8.0;\ncontract Test {}\n",
    );
    write(
        root,
        "src/Probe.sol",
        "pragma solidity ^0.8.0;\nimport \"forge-std/Test.sol\";\nimport \"missing/Nowhere.sol\";\ncontract Probe is Test {}\n",
    );
    // A file of the project's that does not parse: reported, the rest still audited.
    write(root, "src/Broken.sol", "contract {");
    // A dependency that does not parse is a warning; a file outside the project is never read.
    write(root, "lib/oz/contracts/Bad.sol", "contract {");
    write(
        root,
        "src/Uses.sol",
        "pragma solidity ^0.8.0;\nimport \"@oz/Bad.sol\";\nimport \"../../outside.sol\";\ncontract Uses {}\n",
    );
    write(root.parent().unwrap(), "outside.sol", "contract Outside {}");

    let project = Project::open(root).unwrap();
    assert_eq!(project.layout, Layout::Foundry);
    let r = project.audit(false).unwrap();
    assert_eq!(r.own_files, 5);
    // Owned.sol, Test.sol and Bad.sol, reached by imports.
    assert_eq!(r.dependency_files, 3, "{r:?}");
    assert_eq!(r.dependency_errors.len(), 1, "{r:?}");
    assert_eq!(r.dependency_errors[0].file, "lib/oz/contracts/Bad.sol");
    let f = &r.report.findings;
    // `owner` is the base's, in another file: its unguarded write is found.
    assert_eq!(
        at(f, "src/Vault.sol", "unprotected-owner-change"),
        vec![8],
        "{f:?}"
    );
    // The base's modifier checks the caller: `sweep` is guarded.
    assert!(
        at(f, "src/Vault.sol", "unprotected-selfdestruct").is_empty(),
        "{f:?}"
    );
    // The library's own bug is not the project's.
    assert!(f.iter().all(|x| x.file.starts_with("src/")), "{f:?}");
    assert_eq!(r.report.errors.len(), 1);
    assert_eq!(r.report.errors[0].file, "src/Broken.sol");
    let unresolved: Vec<(&str, &str)> = r
        .unresolved
        .iter()
        .map(|u| (u.file.as_str(), u.import.as_str()))
        .collect();
    assert_eq!(
        unresolved,
        vec![
            ("src/Probe.sol", "missing/Nowhere.sol"),
            ("src/Uses.sol", "../../outside.sol")
        ]
    );

    // With the dependencies: the library's bug too, in its file, once, and its broken file.
    let r = project.audit(true).unwrap();
    assert_eq!(r.report.errors.len(), 2);
    let lib = "lib/oz/contracts/access/Owned.sol";
    assert_eq!(
        at(&r.report.findings, lib, "unprotected-selfdestruct"),
        vec![9]
    );
}

#[test]
fn a_hardhat_project_reads_its_packages_from_node_modules() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "package.json", "{\"name\": \"p\"}");
    write(root, "hardhat.config.js", "module.exports = {};");
    write(root, "node_modules/@oz/access/Owned.sol", OWNED);
    write(
        root,
        "contracts/Vault.sol",
        &VAULT.replace("import \"./utils/Math.sol\";\n", "\n"),
    );
    let project = Project::open(root).unwrap();
    assert_eq!(project.layout, Layout::Hardhat);
    let r = project.audit(false).unwrap();
    assert!(r.unresolved.is_empty(), "{r:?}");
    assert_eq!((r.own_files, r.dependency_files), (1, 1));
    let f = &r.report.findings;
    assert_eq!(
        at(f, "contracts/Vault.sol", "unprotected-owner-change"),
        vec![8],
        "{f:?}"
    );
    assert!(
        at(f, "contracts/Vault.sol", "unprotected-selfdestruct").is_empty(),
        "{f:?}"
    );
}

/// Given as a list of files (a job's form), imports resolve among them by relative path, and a
/// base's bug is reported in the base's file once, however many contracts inherit it.
#[test]
fn files_given_together_resolve_their_imports() {
    let base = OWNED;
    let vault = VAULT
        .replace("@oz/access/Owned.sol", "../base/Owned.sol")
        .replace("import \"./utils/Math.sol\";\n", "\n");
    let second =
        "pragma solidity ^0.8.0;\nimport \"../base/Owned.sol\";\ncontract Other is Owned {}\n";
    let r = audit_files([
        ("base/Owned.sol", base),
        ("src/Vault.sol", vault.as_str()),
        ("src/Other.sol", second),
    ]);
    assert!(r.errors.is_empty(), "{r:?}");
    let f = &r.findings;
    assert_eq!(at(f, "src/Vault.sol", "unprotected-owner-change"), vec![8]);
    assert!(at(f, "src/Vault.sol", "unprotected-selfdestruct").is_empty());
    assert_eq!(at(f, "base/Owned.sol", "unprotected-selfdestruct"), vec![9]);

    // Alone, the contract's base is unknown: the write to `owner` goes unseen (and the modifier
    // cannot be judged by its name).
    let alone = audit_files([("src/Vault.sol", vault.as_str())]);
    assert!(at(&alone.findings, "src/Vault.sol", "unprotected-owner-change").is_empty());
    assert_eq!(
        at(&alone.findings, "src/Vault.sol", "unprotected-selfdestruct"),
        vec![11]
    );
}

#[test]
fn a_bad_foundry_toml_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "foundry.toml",
        "[profile.default]\nsrc = [1, 2]\n",
    );
    let e = Project::open(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("foundry.toml") && e.contains("`src` is not a string"),
        "{e}"
    );
    write(dir.path(), "foundry.toml", "[profile.default\n");
    let e = Project::open(dir.path()).unwrap_err().to_string();
    assert!(e.contains("not a valid foundry.toml"), "{e}");
}

/// A crafted job: a thousand files, each importing the one before and inheriting its contract.
/// Linearizations stop at 64 contracts and names are found through the imports, so the work
/// grows with the files, not with their square.
#[test]
fn a_long_chain_of_inheritance_is_audited() {
    let n = 1000;
    let files: Vec<(String, String)> = (0..n)
        .map(|i| {
            let text = if i == 0 {
                "pragma solidity ^0.8.0;\ncontract C0 { address owner; }\n".to_string()
            } else {
                format!(
                    "pragma solidity ^0.8.0;\nimport \"./f{}.sol\";\ncontract C{i} is C{} {{ function s{i}(address o) public {{ owner = o; }} }}\n",
                    i - 1,
                    i - 1
                )
            };
            (format!("f{i}.sol"), text)
        })
        .collect();
    let r = audit_files(files.iter().map(|(n, s)| (n.as_str(), s.as_str())));
    assert!(r.errors.is_empty());
    // Each contract's unguarded write to the inherited `owner`, once, where `owner` is among its
    // 63 nearest ancestors (C1 to C63); deeper ones do not see that far.
    let writes: Vec<usize> = r
        .findings
        .iter()
        .filter(|f| f.detector == "unprotected-owner-change")
        .map(|f| f.file[1..f.file.len() - 4].parse().unwrap())
        .collect();
    assert_eq!(writes, (1..64).collect::<Vec<usize>>());
}

/// Crafted jobs within the input limit: one big base inherited by thousands of contracts, and
/// a contract naming one base thousands of times. Each body is analysed once, in the contract
/// that declares it, so these end in about the time of their size.
#[test]
fn crafted_inheritance_does_not_multiply_the_work() {
    let mut base = String::from("pragma solidity ^0.8.0;\ncontract B {\n    address owner;\n");
    for i in 0..400 {
        base.push_str(&format!(
            "    function f{i}(address o, uint a) public {{ owner = o; payable(o).transfer(a); }}\n"
        ));
    }
    base.push_str("}\n");
    let mut many = String::from("pragma solidity ^0.8.0;\nimport \"./B.sol\";\n");
    for i in 0..4000 {
        many.push_str(&format!("contract D{i} is B {{}}\n"));
    }
    let repeated = format!(
        "pragma solidity ^0.8.0;\nimport \"./B.sol\";\ncontract H is {} {{}}\n",
        vec!["B"; 5000].join(", ")
    );
    let r = audit_files([
        ("B.sol", base.as_str()),
        ("D.sol", many.as_str()),
        ("H.sol", repeated.as_str()),
    ]);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    // The base's 400 unguarded owner writes, each once, in the base's file.
    let writes = r
        .findings
        .iter()
        .filter(|f| f.detector == "unprotected-owner-change")
        .inspect(|f| assert_eq!(f.file, "B.sol"))
        .count();
    assert_eq!(writes, 400);
}

/// `import {Owned as Base}` then `contract Owned is Base`: the base is the imported one, not
/// the contract itself.
#[test]
fn a_renamed_import_names_the_imported_contract() {
    let derived = "pragma solidity ^0.8.0;\nimport {Owned as Base} from \"./base/Owned.sol\";\ncontract Owned is Base {\n    function take(address o) public { owner = o; }\n}\n";
    let r = audit_files([("base/Owned.sol", OWNED), ("Derived.sol", derived)]);
    assert_eq!(
        at(&r.findings, "Derived.sol", "unprotected-owner-change"),
        vec![4]
    );
}

/// A modifier in a base of another file that calls out before `_`: the function's writes come
/// after that call (reentrancy), reported where the function writes.
#[test]
fn a_modifier_that_calls_out_is_a_call_before_the_body() {
    let base = "pragma solidity ^0.8.0;\ncontract Payer {\n    mapping(address => uint256) internal owed;\n    modifier paysFirst() {\n        (bool ok, ) = msg.sender.call{value: owed[msg.sender]}(\"\");\n        require(ok);\n        _;\n    }\n}\n";
    let vault = "pragma solidity ^0.8.0;\nimport \"./Payer.sol\";\ncontract Vault is Payer {\n    function claim() external paysFirst {\n        owed[msg.sender] = 0;\n    }\n    function settle() external {\n        owed[msg.sender] = 0;\n    }\n}\n";
    let r = audit_files([("Payer.sol", base), ("Vault.sol", vault)]);
    assert_eq!(
        at(&r.findings, "Vault.sol", "reentrancy"),
        vec![5],
        "{:?}",
        r.findings
    );
    // Fixed: the state is cleared in the modifier before its call.
    let fixed = base.replace(
        "        (bool ok, ) = msg.sender.call{value: owed[msg.sender]}(\"\");",
        "        uint256 due = owed[msg.sender];\n        owed[msg.sender] = 0;\n        (bool ok, ) = msg.sender.call{value: due}(\"\");",
    );
    let vault_fixed = vault.replace(
        "        owed[msg.sender] = 0;\n    }\n    function settle",
        "    }\n    function settle",
    );
    let r = audit_files([
        ("Payer.sol", fixed.as_str()),
        ("Vault.sol", vault_fixed.as_str()),
    ]);
    assert!(
        at(&r.findings, "Vault.sol", "reentrancy").is_empty(),
        "{:?}",
        r.findings
    );
}

#[test]
fn a_delegatecall_into_a_contract_of_another_file_must_find_its_storage_there() {
    // The callee's `stored` sits in slot 1, after the base's `version`; an internal call writes it.
    let lib = "pragma solidity ^0.8.0;
contract Slots { uint256 public version; }
contract TimeLib is Slots {
    uint256 public stored;
    function setTime(uint256 t) public { _set(t); }
    function _set(uint256 t) internal { stored = t; }
}
";
    let clock = |second: &str| {
        format!(
            "pragma solidity ^0.8.0;
import \"./lib/TimeLib.sol\";
contract Clock {{
    uint256 public version;
    {second}
    address lib;
    bytes4 constant SET = TimeLib.setTime.selector;
    function set(uint256 t) public {{
        (bool ok, ) = lib.delegatecall(abi.encodeWithSelector(SET, t));
        require(ok);
    }}
}}
"
        )
    };
    let differs = clock("address public owner;");
    let r = audit_files([("src/lib/TimeLib.sol", lib), ("src/Clock.sol", &differs)]);
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(
        at(&r.findings, "src/Clock.sol", "delegatecall-layout"),
        vec![9]
    );
    let finding = r
        .findings
        .iter()
        .find(|f| f.detector == "delegatecall-layout")
        .unwrap();
    assert!(
        finding.message.contains("TimeLib.setTime") && finding.message.contains("`owner`"),
        "{}",
        finding.message
    );
    // The same variables in the same slots: nothing to report.
    let same = clock("uint256 public stored;");
    let r = audit_files([("src/lib/TimeLib.sol", lib), ("src/Clock.sol", &same)]);
    assert!(at(&r.findings, "src/Clock.sol", "delegatecall-layout").is_empty());
    // Without the callee's code there is nothing to compare.
    let r = audit_files([("src/Clock.sol", differs.as_str())]);
    assert!(at(&r.findings, "src/Clock.sol", "delegatecall-layout").is_empty());

    // Slots, not names or declarations: two uint128 share a slot as one uint256 does, an
    // interface-typed variable is an address, and a selector kept in a local counts.
    let pair = |caller_vars: &str| {
        let src = format!(
            "pragma solidity ^0.8.0;
interface IOwner {{ function owner() external view returns (address); }}
contract Lib {{
    uint256 packed;
    address keeper;
    function setKeeper(address k) public {{ keeper = k; }}
}}
contract User {{
    {caller_vars}
    address lib;
    function run(address k) public {{
        bytes4 sel = bytes4(keccak256(\"setKeeper(address)\"));
        (bool ok, ) = lib.delegatecall(abi.encodeWithSelector(sel, k));
        require(ok);
    }}
}}
"
        );
        let r = audit_files([("src/User.sol", src.as_str())]);
        assert!(r.errors.is_empty(), "{r:?}");
        at(&r.findings, "src/User.sol", "delegatecall-layout")
    };
    assert!(pair("uint128 a;\n    uint128 b;\n    IOwner admin;").is_empty());
    assert_eq!(
        pair("uint128 a;\n    uint128 b;\n    uint256 count;"),
        vec![15]
    );
}

#[test]
fn a_call_into_a_contract_of_the_audit_reenters_only_when_that_code_can_call_out() {
    // A token whose transfer calls the receiver (a hook), one that does not, and a library
    // function that sends ether with a low-level call.
    let tokens = "pragma solidity ^0.8.0;
interface IReceiver { function onReceive(address from, uint256 amount) external; }
contract HookToken {
    mapping(address => uint256) public balanceOf;
    function transfer(address to, uint256 amount) external returns (bool) {
        balanceOf[msg.sender] -= amount;
        balanceOf[to] += amount;
        IReceiver(to).onReceive(msg.sender, amount);
        return true;
    }
}
contract PlainToken {
    mapping(address => uint256) public balanceOf;
    function transfer(address to, uint256 amount) external returns (bool) {
        balanceOf[msg.sender] -= amount;
        balanceOf[to] += amount;
        return true;
    }
}
library Pay {
    function pay(address to, uint256 amount) internal {
        (bool ok, ) = payable(to).call{value: amount}(\"\");
        require(ok);
    }
}
";
    let vault = |token: &str, pay: &str| {
        format!(
            "pragma solidity ^0.8.0;
import \"./Tokens.sol\";
contract Vault {{
    using Pay for address;
    {token} token;
    mapping(address => uint256) credit;
    function withdraw() external {{
        uint256 amount = credit[msg.sender];
        {pay}
        credit[msg.sender] = 0;
    }}
}}
"
        )
    };
    let lines = |token: &str, pay: &str| {
        let v = vault(token, pay);
        let r = audit_files([("src/Tokens.sol", tokens), ("src/Vault.sol", v.as_str())]);
        assert!(r.errors.is_empty(), "{r:?}");
        at(&r.findings, "src/Vault.sol", "reentrancy")
    };
    // The hook hands control to the receiver before the credit is cleared.
    assert_eq!(
        lines("HookToken", "token.transfer(msg.sender, amount);"),
        vec![9]
    );
    // Through a library, by name or attached with `using`.
    assert_eq!(lines("PlainToken", "Pay.pay(msg.sender, amount);"), vec![9]);
    assert_eq!(lines("PlainToken", "msg.sender.pay(amount);"), vec![9]);
    // A token whose code calls nobody cannot re-enter.
    assert!(lines("PlainToken", "token.transfer(msg.sender, amount);").is_empty());
    // An interface with no code in the audit: nothing is known, nothing is claimed.
    let unknown = vault("IReceiver", "token.onReceive(msg.sender, amount);");
    let r = audit_files([
        ("src/Tokens.sol", tokens),
        ("src/Vault.sol", unknown.as_str()),
    ]);
    assert!(at(&r.findings, "src/Vault.sol", "reentrancy").is_empty());
}

#[test]
fn a_check_of_the_caller_made_by_another_contract_of_the_audit_guards() {
    let acl = "pragma solidity ^0.8.0;
contract Acl {
    address public admin;
    mapping(address => bool) public allowed;
    mapping(address => uint256) public credits;
    function check(address who) external view { require(who == admin, \"no\"); }
    function may(address who) external view returns (bool) { return allowed[who]; }
    function creditOf(address who) external view returns (uint256) { return credits[who]; }
}
";
    let treasury = "pragma solidity ^0.8.0;
import \"./Acl.sol\";
contract Treasury {
    Acl acl;
    function sweep(address payable to) external {
        acl.check(msg.sender);
        to.transfer(address(this).balance);
    }
    function pay(address payable to) external {
        require(acl.may(msg.sender));
        to.transfer(address(this).balance);
    }
    function drain(address payable to) external {
        require(acl.creditOf(msg.sender) > 0);
        to.transfer(address(this).balance);
    }
}
";
    let r = audit_files([("src/Acl.sol", acl), ("src/Treasury.sol", treasury)]);
    assert!(r.errors.is_empty(), "{r:?}");
    // Only the balance lookup lets anyone through.
    assert_eq!(
        at(&r.findings, "src/Treasury.sol", "anyone-can-withdraw"),
        vec![15]
    );
    // Functions of the same names that test nothing against their state guard nothing.
    let blind = "pragma solidity ^0.8.0;
contract Acl {
    function check(address who) external view {}
    function may(address who) external view returns (bool) { return who != address(0); }
    function creditOf(address who) external view returns (uint256) { return 1; }
}
";
    let r = audit_files([("src/Acl.sol", blind), ("src/Treasury.sol", treasury)]);
    assert_eq!(
        at(&r.findings, "src/Treasury.sol", "anyone-can-withdraw"),
        vec![7, 11, 15]
    );
}

#[test]
fn storage_follows_solidity_s_linearization_through_a_diamond() {
    // `User is A, B`, both on `Base`: Base's variable comes first, then A's, then B's (C3), as
    // in the library laid out by hand. Any other order puts `a` where `base` is.
    let src = "pragma solidity ^0.8.0;
contract Base { uint256 base; }
contract A is Base { address a; }
contract B is Base { bool b; }
contract Lib {
    uint256 base;
    address a;
    bool b;
    function setA(address x) public { a = x; }
}
contract User is A, B {
    address lib;
    function run(address x) public {
        (bool ok, ) = lib.delegatecall(abi.encodeCall(Lib.setA, (x)));
        require(ok);
    }
}
";
    let r = audit_files([("src/User.sol", src)]);
    assert!(r.errors.is_empty(), "{r:?}");
    assert!(at(&r.findings, "src/User.sol", "delegatecall-layout").is_empty());
    // Named the other way round (`is B, A`), A's variable comes after B's: they differ.
    let swapped = src.replace("contract User is A, B", "contract User is B, A");
    let r = audit_files([("src/User.sol", swapped.as_str())]);
    assert_eq!(
        at(&r.findings, "src/User.sol", "delegatecall-layout"),
        vec![14]
    );
}

#[test]
fn a_check_of_the_caller_counts_only_when_it_refuses_others() {
    let acl = "pragma solidity ^0.8.0;
contract Acl {
    address public admin;
    mapping(address => bool) public banned;
    function may(address who) external view returns (bool) { return who == admin; }
    function notAdmin(address who) external view { require(who != admin, \"admin\"); }
    function notBanned(address who) external view { require(!banned[who], \"banned\"); }
    function second(address, address who) external view { require(who == admin, \"no\"); }
    function early(address who) external view { if (who == address(1)) return; require(who == admin, \"no\"); }
}
";
    let treasury = "pragma solidity ^0.8.0;
import \"./Acl.sol\";
contract Treasury {
    Acl acl;
    function ignored(address payable to) external {
        acl.may(msg.sender);
        to.transfer(address(this).balance);
    }
    function chosen(Acl registry, address payable to) external {
        require(registry.may(msg.sender));
        to.transfer(address(this).balance);
    }
    function negative(address payable to) external {
        acl.notAdmin(msg.sender);
        acl.notBanned(msg.sender);
        to.transfer(address(this).balance);
    }
    function checked(address payable to) external {
        require(acl.may(msg.sender));
        to.transfer(address(this).balance);
    }
    function either(address payable to) external {
        require(acl.may(msg.sender) || address(this).balance > 0);
        to.transfer(address(this).balance);
    }
    function unnamed(address payable to) external {
        acl.second(msg.sender, to);
        to.transfer(address(this).balance);
    }
    function escape(address payable to) external {
        acl.early(msg.sender);
        to.transfer(address(this).balance);
    }
}
";
    let r = audit_files([("src/Acl.sol", acl), ("src/Treasury.sol", treasury)]);
    assert!(r.errors.is_empty(), "{r:?}");
    // A result nobody reads, a registry the caller picks, a test of who the caller is not, a
    // check one may skip (`||`), a check of another argument, a check with a way out first.
    assert_eq!(
        at(&r.findings, "src/Treasury.sol", "anyone-can-withdraw"),
        vec![7, 11, 16, 24, 28, 32]
    );
}

#[test]
fn a_view_of_a_contract_the_caller_chose_cannot_reenter() {
    let src = "pragma solidity ^0.8.0;
interface IToken {
    function balanceOf(address a) external view returns (uint256);
    function pull(address from, uint256 amount) external;
}
contract Pool {
    mapping(address => uint256) public shares;
    function sync(IToken token) external {
        uint256 s = shares[msg.sender];
        uint256 b = token.balanceOf(msg.sender);
        shares[msg.sender] = s + b;
    }
    function join(IToken token, uint256 amount) external {
        uint256 s = shares[msg.sender];
        token.pull(msg.sender, amount);
        shares[msg.sender] = s + amount;
    }
}
";
    let r = audit_files([("src/Pool.sol", src)]);
    assert!(r.errors.is_empty(), "{r:?}");
    // A view is a static call; `pull` on a token the caller names runs the caller's code.
    assert_eq!(at(&r.findings, "src/Pool.sol", "reentrancy"), vec![15]);
}

#[test]
fn a_contract_the_caller_chose_is_followed_through_locals_and_arrays() {
    let src = "pragma solidity ^0.8.0;
interface IToken { function pull(address from, uint256 amount) external; }
contract Pool {
    IToken trusted;
    mapping(address => uint256) public shares;
    function viaLocal(address t, uint256 amount) external {
        uint256 s = shares[msg.sender];
        IToken tok = IToken(t);
        tok.pull(msg.sender, amount);
        shares[msg.sender] = s + amount;
    }
    function viaArray(IToken[] calldata ts, uint256 amount) external {
        uint256 s = shares[msg.sender];
        ts[0].pull(msg.sender, amount);
        shares[msg.sender] = s + amount;
    }
    function viaState(uint256 amount) external {
        uint256 s = shares[msg.sender];
        trusted.pull(msg.sender, amount);
        shares[msg.sender] = s + amount;
    }
}
";
    let r = audit_files([("src/Pool.sol", src)]);
    assert!(r.errors.is_empty(), "{r:?}");
    // The token the owner set is not the caller's choice (and its code is not here).
    assert_eq!(at(&r.findings, "src/Pool.sol", "reentrancy"), vec![9, 14]);
}

#[test]
fn a_delegatecall_target_typed_as_a_contract_names_its_callee() {
    // `Lib` keeps an address where the caller keeps a count; `Decoy` defines a function of the
    // same name over the caller's own layout.
    let src = |target: &str| {
        format!(
            "pragma solidity ^0.8.0;
contract Lib {{
    address keeper;
    function setKeeper(address k) public {{ keeper = k; }}
}}
contract Decoy {{
    uint256 count;
    function setKeeper(address k) public {{ count = uint256(uint160(k)); }}
}}
contract User {{
    uint256 count;
    {target} lib;
    function run(address k) public {{
        (bool ok, ) = address(lib).delegatecall(abi.encodeWithSignature(\"setKeeper(address)\", k));
        require(ok);
    }}
}}
"
        )
    };
    // Typed: the callee is `Lib`, whatever else defines the function.
    let typed = src("Lib");
    let r = audit_files([("src/User.sol", typed.as_str())]);
    assert_eq!(
        at(&r.findings, "src/User.sol", "delegatecall-layout"),
        vec![14]
    );
    // A plain address: either may run, and the decoy's layout agrees.
    let plain = src("address");
    let r = audit_files([("src/User.sol", plain.as_str())]);
    assert!(at(&r.findings, "src/User.sol", "delegatecall-layout").is_empty());
    // Past a struct, where a variable lies is not known: nothing is claimed there (here `Lib`'s
    // keeper would sit in the struct's second slot, not at `count`).
    let after_struct = typed.replace(
        "contract Lib {\n    address keeper;",
        "contract Lib {\n    struct Pair { uint256 a; uint256 b; }\n    Pair pair;\n    address keeper;",
    );
    let after_struct = after_struct.replace(
        "contract User {\n    uint256 count;",
        "contract User {\n    uint256 first;\n    uint256 count;",
    );
    assert_ne!(after_struct, typed);
    let r = audit_files([("src/User.sol", after_struct.as_str())]);
    assert!(r.errors.is_empty(), "{r:?}");
    assert!(at(&r.findings, "src/User.sol", "delegatecall-layout").is_empty());
}

#[test]
fn a_delegatecall_in_a_base_runs_in_the_storage_of_what_inherits_it() {
    let src = "pragma solidity ^0.8.0;
contract Lib {
    address lib;
    uint256 counter;
    function bump() public { counter += 1; }
}
abstract contract Delegating {
    address lib;
    function bump() public {
        (bool ok, ) = lib.delegatecall(abi.encodeCall(Lib.bump, ()));
        require(ok);
    }
}
contract Wallet is Delegating {
    address owner;
}
";
    let r = audit_files([("src/Wallet.sol", src)]);
    assert!(r.errors.is_empty(), "{r:?}");
    // In the base alone slot 1 is free; in the wallet it holds the owner.
    assert_eq!(
        at(&r.findings, "src/Wallet.sol", "delegatecall-layout"),
        vec![10]
    );
    let f = r
        .findings
        .iter()
        .find(|f| f.detector == "delegatecall-layout")
        .unwrap();
    assert!(
        f.message.contains("`Wallet`") && f.message.contains("`owner`"),
        "{}",
        f.message
    );
    // A wallet that keeps the counter there is fine.
    let same = src.replace("    address owner;\n}", "    uint256 counter;\n}");
    let r = audit_files([("src/Wallet.sol", same.as_str())]);
    assert!(at(&r.findings, "src/Wallet.sol", "delegatecall-layout").is_empty());
}
