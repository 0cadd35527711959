//! loadgen's modules form a stack: each one imports only modules that the layout section of
//! `lib.rs` lists after it. That rules out import cycles (the run plan once lived in `cli`, and
//! `cli → progress → engine → cli` followed) and keeps the layout section true.

use std::collections::BTreeSet;
use std::path::Path;

/// Module names in the order the layout section lists them (`//! - `name`: ...` lines).
fn layout(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|line| line.strip_prefix("//! - `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The first path segment of every `crate::` path in `source`, top-level items of
/// `crate::{...}` groups included.
fn crate_imports(source: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in source.match_indices("crate::") {
        let rest = &source[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            found.insert(ident(rest));
            continue;
        };
        let (mut depth, mut item_start) = (0, true);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if item_start && !c.is_whitespace() => {
                    found.insert(ident(&group[i..]));
                    item_start = false;
                }
                _ => {}
            }
        }
    }
    found
}

#[test]
fn each_module_imports_only_modules_listed_after_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let read = |name: &str| std::fs::read_to_string(src.join(name)).unwrap();
    let order = layout(&read("lib.rs"));
    let files: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|name| name != "lib" && name != "main")
        .collect();
    assert_eq!(
        files,
        order.iter().cloned().collect(),
        "lib.rs lists every module once"
    );
    for (floor, module) in order.iter().enumerate() {
        let imports = crate_imports(&read(&format!("{module}.rs")));
        for dep in imports.iter().filter(|d| *d != module) {
            if let Some(at) = order.iter().position(|m| m == dep) {
                assert!(
                    at > floor,
                    "`{module}` imports `{dep}`, which lib.rs lists before it: an import cycle, \
                     or a layout section to reorder"
                );
            }
        }
    }
    // The parser sees imports at all (single paths and groups).
    let worker = crate_imports(&read("worker.rs"));
    for part in ["ramp", "pacing", "receive", "sampling", "plan"] {
        assert!(worker.contains(part), "worker imports {part}: {worker:?}");
    }
    let grouped = crate_imports("use crate::{a::{B, C}, d};\nlet x = crate::e::f();");
    assert_eq!(grouped, ["a", "d", "e"].map(String::from).into());
}
