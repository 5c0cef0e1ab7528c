//! `agora audit`: exit codes, formats, a broken file among good ones.

use crate::*;

const VULNERABLE: &str = "pragma solidity ^0.4.24;\ncontract W {\n    address owner;\n    function pay(address to) public {\n        require(tx.origin == owner);\n        to.send(1);\n    }\n}\n";
const CLEAN: &str = "pragma solidity ^0.8.0;\ncontract C {\n    uint public x;\n    function set(uint v) external {\n        x = v;\n    }\n}\n";

#[test]
fn audit_exit_codes_formats_and_a_broken_file_among_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("clean.sol"), CLEAN).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    std::fs::write(d.join("sub/vuln.sol"), VULNERABLE).unwrap();

    // Clean: exit 0.
    let out = agora(d, &["audit", d.join("clean.sol").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // Findings: exit 1; SARIF names the flagged lines and the DASP categories.
    let out = agora(d, &["audit", "--format", "sarif", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let got: Vec<(String, u64)> = results
        .iter()
        .map(|r| {
            (
                r["properties"]["category"].as_str().unwrap().to_string(),
                r["locations"][0]["physicalLocation"]["region"]["startLine"]
                    .as_u64()
                    .unwrap(),
            )
        })
        .collect();
    assert!(got.contains(&("access_control".into(), 5)), "{got:?}");
    assert!(
        got.contains(&("unchecked_low_level_calls".into(), 6)),
        "{got:?}"
    );

    // JSON, and --min-severity filters.
    let out = agora(
        d,
        &[
            "audit",
            "--format",
            "json",
            "--min-severity",
            "high",
            d.to_str().unwrap(),
        ],
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let detectors: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["detector"].as_str().unwrap())
        .collect();
    assert_eq!(detectors, vec!["tx-origin"]);

    // Deprecated syntax is info: left out by default, shown with --min-severity info.
    let old = d.join("old.sol");
    std::fs::write(
        &old,
        "pragma solidity ^0.4.24;\ncontract O {\n    function f(uint a) public pure returns (uint) {\n        if (a == 0) throw;\n        return a;\n    }\n}\n",
    )
    .unwrap();
    let out = agora(d, &["audit", old.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = agora(
        d,
        &["audit", "--min-severity", "info", old.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("old.sol:4: deprecated"));
    std::fs::remove_file(&old).unwrap();

    // A file that does not parse: reported, the others still audited, exit 2.
    std::fs::write(d.join("broken.sol"), "contract { function (").unwrap();
    let out = agora(d, &["audit", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("broken.sol:1:"), "{text}");
    assert!(text.contains("tx-origin"), "{text}");

    // Usage errors: exit 2.
    let out = agora(d, &["audit", d.join("missing.sol").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

/// A Foundry project folder: its sources are audited with the bases they import from `lib/`
/// (through a remapping), findings stay in its own files, and unresolved imports are listed.
#[test]
fn audit_of_a_foundry_project_resolves_imports_and_reports_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |name: &str, text: &str| {
        let path = d.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "foundry.toml",
        "[profile.default]\nsrc = \"src\"\nremappings = [\"@base/=lib/base/contracts/\"]\n",
    );
    write(
        "lib/base/contracts/Owned.sol",
        "pragma solidity ^0.8.0;\ncontract Owned {\n    address owner;\n    function kill() public { selfdestruct(payable(msg.sender)); }\n}\n",
    );
    write(
        "src/Vault.sol",
        "pragma solidity ^0.8.0;\nimport \"@base/Owned.sol\";\nimport \"gone/Missing.sol\";\ncontract Vault is Owned {\n    function take(address o) public { owner = o; }\n}\n",
    );
    let out = agora(d, &["audit", "--format", "json", d.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = json["findings"].as_array().unwrap();
    let vault = d.join("src/Vault.sol").display().to_string();
    assert!(
        findings
            .iter()
            .any(|f| f["file"] == vault.as_str() && f["line"] == 5),
        "{findings:?}"
    );
    // The library's `kill` is its own bug, not the project's.
    assert!(
        findings.iter().all(|f| f["file"] == vault.as_str()),
        "{findings:?}"
    );
    assert_eq!(json["project"]["layout"], "foundry");
    assert_eq!(json["project"]["dependency_files"], 1);
    assert_eq!(
        json["project"]["unresolved"][0]["import"],
        "gone/Missing.sol"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("names no file"));

    // Slither's JSON: one detector result per finding, with its file and lines.
    let out = agora(d, &["audit", "--format", "slither", d.to_str().unwrap()]);
    let slither: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(slither["success"], true);
    let results = slither["results"]["detectors"].as_array().unwrap();
    assert_eq!(results.len(), findings.len());
    let first = &results[0];
    assert_eq!(first["check"], findings[0]["detector"]);
    assert_eq!(
        first["elements"][0]["source_mapping"]["filename_relative"],
        vault.as_str()
    );
    assert_eq!(first["elements"][0]["source_mapping"]["lines"][0], 5);
    assert_eq!(first["impact"], "High");

    // With --include-deps, the library's bug too.
    let out = agora(
        d,
        &[
            "audit",
            "--format",
            "json",
            "--include-deps",
            d.to_str().unwrap(),
        ],
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let lib = d.join("lib/base/contracts/Owned.sol").display().to_string();
    assert!(
        json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["file"] == lib.as_str() && f["detector"] == "unprotected-selfdestruct"),
        "{json}"
    );
}
