//! The library's layers form a stack: every file of a layer imports only its own layer and the
//! layers that the layout section of `lib.rs` lists after it. That rules out import cycles and
//! keeps the layout section, and the folder tree it describes, true.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use testkit::layers::{crate_imports, layout};

/// The source files of layer `name`: `src/name.rs`, or every file under `src/name/`.
fn files_of(src: &Path, name: &str) -> Vec<PathBuf> {
    let file = src.join(format!("{name}.rs"));
    if file.exists() {
        return vec![file];
    }
    let dir = src.join(name);
    assert!(
        dir.is_dir(),
        "layer `{name}` is neither {name}.rs nor {name}/"
    );
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect()
}

#[test]
fn each_layer_imports_only_layers_listed_after_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order = layout(&lib);
    let on_disk: BTreeSet<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir() || path.extension().is_some_and(|e| e == "rs"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        // The binary's own modules are not library layers.
        .filter(|name| !["lib", "main", "cli"].contains(&name.as_str()))
        .collect();
    assert_eq!(
        on_disk,
        order.iter().cloned().collect(),
        "lib.rs lists every layer once"
    );
    let mut checked = 0;
    for (floor, layer) in order.iter().enumerate() {
        for file in files_of(&src, layer) {
            let imports = crate_imports(&std::fs::read_to_string(&file).unwrap());
            for dep in imports.iter().filter(|d| *d != layer) {
                let at = order.iter().position(|m| m == dep);
                assert!(
                    at.is_some_and(|at| at > floor),
                    "{} imports `{dep}`, which lib.rs lists before `{layer}` (or not at all): \
                     an import cycle, or a layout section to reorder",
                    file.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 10, "the parser found only {checked} imports");
}
