//! loadgen's modules form a stack: each one imports only modules that the layout section of
//! `lib.rs` lists after it. That rules out import cycles (the run plan once lived in `cli`, and
//! `cli → progress → engine → cli` followed) and keeps the layout section true.

use std::collections::BTreeSet;
use std::path::Path;

use testkit::layers::{crate_imports, layout};

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
}
