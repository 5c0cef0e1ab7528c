//! The classes added for bug injection, on their edges: what certainly wraps and what only may,
//! who may withdraw, and state written after a payment.

use agora_audit::audit_source;

fn lines_of(src: &str, detector: &str) -> Vec<usize> {
    audit_source("t.sol", src)
        .expect("parses")
        .into_iter()
        .filter(|f| f.detector == detector)
        .map(|f| f.line)
        .collect()
}

fn in_08(body: &str) -> String {
    format!(
        "pragma solidity ^0.8.0;\ncontract T {{\n    uint8 public s;\n    function f(bool c) external {{\n{body}\n    }}\n}}\n"
    )
}

#[test]
fn only_a_wrap_that_certainly_happens_is_a_constant_wrap() {
    // Straight-line code inside `unchecked`: line 6 wraps.
    let src = in_08("        uint8 x = 3;\n        unchecked { x -= 5; }\n        s = x;");
    assert_eq!(lines_of(&src, "integer-overflow"), vec![6]);
    // Checked arithmetic (0.8, outside `unchecked`) reverts instead.
    assert!(
        lines_of(
            &in_08("        uint8 x = 3;\n        x -= 5;\n        s = x;"),
            "integer-overflow"
        )
        .is_empty()
    );
    // A branch, a loop, another write, a signed type, units: nothing certain.
    for body in [
        "        uint8 x = 3;\n        if (c) { x = 9; }\n        unchecked { x -= 5; }\n        s = x;",
        "        uint8 x = 0;\n        for (uint8 i = 0; i < 4; i++) { if (c) x += 1; }\n        unchecked { x -= 2; }\n        s = x;",
        "        uint8 x = 3;\n        x++;\n        x *= 2;\n        unchecked { x -= 5; }\n        s = x;",
        "        int8 x = 3;\n        unchecked { x -= 5; }\n        s = uint8(x);",
        "        uint32 t = 1 hours;\n        unchecked { t -= 5; }\n        s = uint8(t);",
    ] {
        assert!(
            lines_of(&in_08(body), "integer-overflow").is_empty(),
            "{body}"
        );
    }
    // Before 0.8 every operator wraps.
    let old = "pragma solidity ^0.4.24;\ncontract T {\n    uint8 public s;\n    function f() public {\n        uint8 x = 250;\n        x = x + 10;\n        s = x;\n    }\n}\n";
    assert_eq!(lines_of(old, "integer-overflow"), vec![6]);
}

#[test]
fn anyone_can_withdraw_needs_an_open_door_and_no_deposit() {
    let c = |f: &str| {
        format!(
            "pragma solidity ^0.8.0;\ncontract W {{\n    address owner;\n    mapping(address => uint256) bal;\n{f}\n}}\n"
        )
    };
    // Open: the whole balance, a caller-chosen amount to a caller-chosen address, a local
    // holding the balance behind a check that decides nothing about who.
    for f in [
        "    function a() external { payable(msg.sender).transfer(address(this).balance); }",
        "    function a(address payable to, uint256 x) external { to.transfer(x); }",
        "    function a(address payable to) external {\n        require(to != address(0));\n        uint256 all = address(this).balance;\n        to.transfer(all);\n    }",
    ] {
        assert_eq!(lines_of(&c(f), "anyone-can-withdraw").len(), 1, "{f}");
    }
    // Closed: an owner check, the caller's own recorded balance, a payable game, a puzzle's
    // answer, nothing sent.
    for f in [
        "    function a() external { require(msg.sender == owner); payable(msg.sender).transfer(address(this).balance); }",
        "    function a() external { uint256 v = bal[msg.sender]; bal[msg.sender] = 0; payable(msg.sender).transfer(v); }",
        "    function a() external payable { payable(msg.sender).transfer(address(this).balance); }",
        "    function a(bytes32 answer) external { require(keccak256(abi.encode(answer)) == bytes32(0)); payable(msg.sender).transfer(1 ether); }",
        "    function a() external { (bool ok, ) = payable(msg.sender).call{value: 0}(\"\"); require(ok); }",
        // Checks of the caller written as calls, as OpenZeppelin's access control does.
        "    function hasRole(bytes32 r, address who) internal view returns (bool) { return who == owner && r == 0; }\n    function a() external { require(hasRole(0, msg.sender)); payable(msg.sender).transfer(address(this).balance); }",
        "    function _checkOwner() internal view { require(msg.sender == owner); }\n    function a() external { _checkOwner(); payable(msg.sender).transfer(address(this).balance); }",
    ] {
        assert!(lines_of(&c(f), "anyone-can-withdraw").is_empty(), "{f}");
    }
}

#[test]
fn state_that_decides_a_payment_written_after_it_is_reported_low() {
    let old = |f: &str| {
        format!(
            "pragma solidity ^0.4.24;\ncontract R {{\n    mapping(address => uint) bal;\n    address owner;\n{f}\n}}\n"
        )
    };
    // The classic withdrawal: bounded by the balance, paid, then debited (lines 6 to 7).
    let src = old(
        "    function w(uint a) public {\n        require(bal[msg.sender] >= a);\n        msg.sender.transfer(a);\n        bal[msg.sender] -= a;\n    }",
    );
    let found = audit_source("t.sol", &src).unwrap();
    let f = found
        .iter()
        .find(|f| f.detector == "state-after-transfer")
        .expect("reported");
    assert_eq!(
        (f.line, f.end_line, f.severity),
        (7, 8, agora_audit::Severity::Low)
    );
    // Debited first, or only the owner can call, or the write decides nothing paid: clean.
    for f in [
        "    function w(uint a) public {\n        require(bal[msg.sender] >= a);\n        bal[msg.sender] -= a;\n        msg.sender.transfer(a);\n    }",
        "    function w(uint a) public {\n        require(msg.sender == owner);\n        msg.sender.transfer(a);\n        bal[msg.sender] = 0;\n    }",
        "    uint count;\n    function w(uint a) public {\n        msg.sender.transfer(a);\n        count += 1;\n    }",
    ] {
        assert!(lines_of(&old(f), "state-after-transfer").is_empty(), "{f}");
    }
}

#[test]
fn a_deadline_the_caller_passes_is_the_callers_own() {
    let c = |f: &str| {
        format!("pragma solidity ^0.8.0;\ncontract P {{\n    uint256 end = 1700000000;\n{f}\n}}\n")
    };
    // A permit's deadline: the caller chose it.
    let permit = c(
        "    function permit(uint256 deadline) external view returns (bool) {\n        require(block.timestamp <= deadline);\n        return true;\n    }",
    );
    assert!(lines_of(&permit, "timestamp-dependence").is_empty());
    // A date written in the contract, or the block time in an equality: reported.
    let sale = c(
        "    function open() external view returns (bool) {\n        return block.timestamp >= end;\n    }",
    );
    assert_eq!(lines_of(&sale, "timestamp-dependence"), vec![5]);
    let at = c(
        "    function at(uint256 t) external view returns (bool) {\n        return block.timestamp == t;\n    }",
    );
    assert_eq!(lines_of(&at, "timestamp-dependence"), vec![5]);
    // A view checking its clock against the block number decides nothing random.
    let clock = c(
        "    function mode() external view returns (uint256) {\n        require(block.number == block.number + 0);\n        return 1;\n    }",
    );
    assert!(lines_of(&clock, "weak-randomness").is_empty());
}

#[test]
fn one_items_schedule_looked_up_by_its_key_decides_nothing_for_a_miner() {
    let c = |f: &str| {
        format!(
            "pragma solidity ^0.8.0;\ncontract Q {{\n    mapping(bytes32 => uint256) at;\n    function getTimestamp(bytes32 id) public view returns (uint256) {{ return at[id]; }}\n{f}\n}}\n"
        )
    };
    // A queued operation's time, through a getter keyed by the id, directly or through a local.
    for f in [
        "    function ready(bytes32 id) external view returns (bool) {\n        uint256 t = getTimestamp(id);\n        return t > 1 && t <= block.timestamp;\n    }",
        "    function ready(bytes32 id) external view returns (bool) {\n        return block.timestamp >= getTimestamp(id);\n    }",
    ] {
        assert!(lines_of(&c(f), "timestamp-dependence").is_empty(), "{f}");
    }
    // One time for everyone, even read through a local: reported.
    let shared = c(
        "    uint256 end;\n    function open() external view returns (bool) {\n        uint256 t = end;\n        return block.timestamp >= t;\n    }",
    );
    assert_eq!(lines_of(&shared, "timestamp-dependence"), vec![8]);
}

#[test]
fn a_lock_built_for_one_account_decides_nothing_for_a_miner() {
    let c = |more: &str, release: &str, after: &str| {
        format!(
            "pragma solidity ^0.8.0;\ninterface IERC20 {{ function balanceOf(address a) external view returns (uint256); function transfer(address to, uint256 v) external returns (bool); }}\ncontract L {{\n    IERC20 private immutable _token;\n    address payable private heir;\n    uint256 private at;\n    constructor(IERC20 t, address payable h, uint256 a) {{ _token = t; heir = h; at = a; }}\n    function token() public view returns (IERC20) {{ return _token; }}\n    function releaseTime() public view virtual returns (uint256) {{ return at; }}\n{more}\n    function release{release}\n}}\n{after}"
        )
    };
    // Tokens or ether, paid once the time set at construction has come to the account set then
    // (OpenZeppelin's TokenTimelock), read directly or through getters: only for information.
    let tokens = "() external {\n        require(block.timestamp >= releaseTime());\n        uint256 amount = token().balanceOf(address(this));\n        token().transfer(heir, amount);\n    }";
    let ether = "() external {\n        require(block.timestamp > at + 1 days, \"early\");\n        heir.transfer(address(this).balance);\n    }";
    // (A library's code is not followed: a store it makes through assembly leaves the lock at
    // info. Reported, not dropped.)
    let raw = c(
        "    function poke(uint256 s, uint256 v) external { Raw.put(s, v); }",
        tokens,
        "library Raw { function put(uint256 s, uint256 v) internal { assembly { sstore(s, v) } } }\n",
    );
    assert_eq!(lines_of(&raw, "timestamp-lock"), vec![12]);
    for release in [tokens, ether] {
        let src = c("", release, "");
        assert!(
            lines_of(&src, "timestamp-dependence").is_empty(),
            "{release}"
        );
        // Still said, for information.
        assert_eq!(lines_of(&src, "timestamp-lock"), vec![12], "{release}");
    }
    // Reported: the heir or the time can be changed later (by an assignment, a tuple's, one in
    // a `try` block, a storage pointer, assembly or a delegatecall), `require` is the contract's
    // own, or an heir of the contract may override a getter.
    for (more, after) in [
        (
            "    function setHeir(address payable h) external { heir = h; }",
            "",
        ),
        (
            "    function later(uint256 a, uint256 b) external { (at, b) = (a, b); }",
            "",
        ),
        (
            "    function raw() external { assembly { sstore(0, 1) } }",
            "",
        ),
        (
            "    function ping() external pure {} function bid() external { try this.ping() { heir = payable(msg.sender); } catch {} }",
            "",
        ),
        (
            "    struct S { address a; } S[] list; function put(uint256 i) external { S storage s = list[i]; s = list[0]; s.a = msg.sender; }",
            "",
        ),
        (
            "    function proxy(address i) external { (bool ok, ) = i.delegatecall(\"\"); require(ok); }",
            "",
        ),
        (
            "    function require(bool ok) internal pure { assert(ok); }",
            "",
        ),
        (
            "    function ping() external pure {} function bid() external { try this.ping() {} catch { heir = payable(msg.sender); } }",
            "",
        ),
        (
            "    function grab() external { try new D() { heir = payable(msg.sender); } catch {} }",
            "contract D {}\n",
        ),
        (
            "",
            "contract M is L {\n    constructor() L(IERC20(address(0)), payable(msg.sender), 1) {}\n    function releaseTime() public pure override returns (uint256) { return 0; }\n}\n",
        ),
    ] {
        assert_eq!(
            lines_of(&c(more, tokens, after), "timestamp-dependence"),
            vec![12],
            "{more}{after}"
        );
    }
    // Reported: the time picks between payees, the caller is paid, chooses the amount or gets
    // a keeper's fee, the function writes state, runs a modifier, calls what it does not know,
    // or pays nobody.
    for release in [
        "() external {\n        if (block.timestamp > at) heir.transfer(1); else payable(msg.sender).transfer(1);\n    }",
        "() external {\n        require(block.timestamp > at);\n        payable(msg.sender).transfer(address(this).balance);\n    }",
        "(uint256 v) external {\n        require(block.timestamp > at);\n        heir.transfer(v);\n    }",
        "() external {\n        require(block.timestamp > at);\n        heir.transfer(1);\n        token().transfer(tx.origin, 1);\n    }",
        "() external {\n        require(block.timestamp > at);\n        heir.transfer(1);\n        at = 0;\n    }",
        "() external onlyOnce {\n        require(block.timestamp > at);\n        heir.transfer(1);\n    }\n    bool done;\n    modifier onlyOnce() { _; done = true; }",
        "() external {\n        require(block.timestamp > at);\n        heir.transfer(1);\n        this.release();\n    }",
        "() external {\n        require(block.timestamp >= at);\n    }",
    ] {
        assert_eq!(
            lines_of(&c("", release, ""), "timestamp-dependence"),
            vec![12],
            "{release}"
        );
    }
}

#[test]
fn a_try_runs_its_success_block_after_the_call_and_its_catch_only_when_it_failed() {
    let c = |body: &str| {
        format!(
            "pragma solidity ^0.8.0;\ninterface IR {{ function onPay() external payable; }}\ncontract P {{\n    mapping(address => uint256) public due;\n    function settle(address to) external {{\n        uint256 amt = due[to];\n{body}\n    }}\n}}\n"
        )
    };
    // Written after the call returned: the receiver could have called back first.
    let after = c("        try IR(to).onPay{value: amt}() { due[to] = 0; } catch {}");
    assert_eq!(lines_of(&after, "reentrancy"), vec![7]);
    // Pushed, and put back only if the payment failed (and all it did was undone).
    let fallback = c(
        "        due[to] = 0;\n        try IR(to).onPay{value: amt}() {} catch { due[to] = amt; }",
    );
    assert!(lines_of(&fallback, "reentrancy").is_empty());
}

#[test]
fn a_reentrancy_lock_is_no_state_at_risk_but_guards_only_what_honours_it() {
    let c = |f: &str| {
        format!(
            "pragma solidity ^0.8.0;\ncontract L {{\n    bool locked;\n    mapping(address => uint256) bal;\n    modifier lock() {{ require(!locked); locked = true; _; locked = false; }}\n{f}\n}}\n"
        )
    };
    let withdraw = "    function withdraw() external lock {\n        (bool ok, ) = msg.sender.call{value: bal[msg.sender]}(\"\");\n        require(ok);\n        bal[msg.sender] = 0;\n    }";
    // Every function that reads the balance holds the lock: nothing to report.
    assert!(lines_of(&c(withdraw), "reentrancy").is_empty());
    // A function open during the call reads it: reported at the call.
    let open = format!(
        "{withdraw}\n    function give(address to) external {{ bal[to] += bal[msg.sender]; bal[msg.sender] = 0; }}"
    );
    assert_eq!(lines_of(&c(&open), "reentrancy"), vec![7]);
    // A lock taken by hand around the call: clearing it is no write at risk.
    let by_hand = "    function pay() external {\n        require(!locked);\n        locked = true;\n        (bool ok, ) = msg.sender.call{value: 1}(\"\");\n        require(ok);\n        locked = false;\n    }";
    assert!(lines_of(&c(by_hand), "reentrancy").is_empty());
    // Locks in name only: released before `_`, or "set" to the value the guard lets through.
    let early = |m: &str| {
        format!(
            "pragma solidity ^0.8.0;\ncontract L {{\n    bool locked;\n    mapping(address => uint256) bal;\n    modifier lock() {{ {m} }}\n{withdraw}\n    function deposit() external payable lock {{ bal[msg.sender] += msg.value; }}\n}}\n"
        )
    };
    for m in [
        "require(!locked); locked = true; locked = false; _;",
        "require(!locked); locked = false; _; locked = true;",
        "require(!locked); locked = true; locked = false; _; locked = false;",
        "if (msg.value == 7) { require(!locked); } locked = true; _; locked = false;",
    ] {
        assert_eq!(lines_of(&early(m), "reentrancy"), vec![7], "{m}");
    }
    let decoy = "    bool claimed;\n    function claim() external {\n        require(!claimed);\n        claimed = false;\n        (bool ok, ) = msg.sender.call{value: 1}(\"\");\n        require(ok);\n        claimed = true;\n    }";
    assert_eq!(lines_of(&c(decoy), "reentrancy"), vec![10]);
    // A value saved before the call and put back after it (OpenZeppelin's AccessManager).
    // A saved copy changed before it is put back is no restore.
    let changed = "    uint256 total;\n    function take(uint256 amt) external {\n        uint256 t = total;\n        t -= amt;\n        (bool ok, ) = msg.sender.call{value: amt}(\"\");\n        require(ok);\n        total = t;\n    }";
    assert_eq!(lines_of(&c(changed), "reentrancy"), vec![10]);
    let restore = "    bytes32 context;\n    function run(address t, bytes32 id) external {\n        bytes32 before = context;\n        context = id;\n        (bool ok, ) = t.call(\"\");\n        require(ok);\n        context = before;\n    }";
    assert!(lines_of(&c(restore), "reentrancy").is_empty());
}

#[test]
fn asking_whether_the_caller_is_an_account_guards_nothing() {
    let src = "pragma solidity ^0.8.0;\ncontract A {\n    address owner;\n    modifier onlyAccounts() { require(msg.sender == tx.origin); _; }\n    function setOwner(address o) external onlyAccounts { owner = o; }\n    function check() external view returns (bool) { return msg.sender == tx.origin; }\n}\n";
    assert_eq!(lines_of(src, "unprotected-owner-change"), vec![5]);
    assert!(lines_of(src, "tx-origin").is_empty());
}

#[test]
fn a_constructor_loops_only_over_what_its_deployer_passed() {
    let c = |f: &str| {
        format!(
            "pragma solidity ^0.8.0;\ncontract L {{\n    address[] list;\n    mapping(address => bool) on;\n{f}\n}}\n"
        )
    };
    let ctor = c(
        "    constructor(address[] memory xs) {\n        list = xs;\n        for (uint256 i = 0; i < list.length; i++) { on[list[i]] = true; }\n    }",
    );
    assert!(lines_of(&ctor, "unbounded-loop").is_empty());
    let open = c(
        "    function add(address x) external { list.push(x); }\n    function all() external {\n        for (uint256 i = 0; i < list.length; i++) { on[list[i]] = true; }\n    }",
    );
    assert_eq!(lines_of(&open, "unbounded-loop"), vec![7]);
}

#[test]
fn a_modifier_is_judged_by_its_own_body_not_by_a_namesake_in_the_file() {
    let src = "pragma solidity ^0.8.0;
contract Guarded {
    address owner;
    modifier gate() { require(msg.sender == owner); _; }
    function setOwner(address o) external gate { owner = o; }
}
contract Open {
    address owner;
    modifier gate() { _; }
    function setOwner(address o) external gate { owner = o; }
}
";
    assert_eq!(lines_of(src, "unprotected-owner-change"), vec![10]);
}
