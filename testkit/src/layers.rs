//! Module layering checks: which modules a source file imports through `crate::` paths, and
//! the order a crate's `lib.rs` layout section lists its modules in. Both corecast and loadgen
//! test that each module imports only modules listed after it (no import cycles, and a layout
//! section that stays true).

use std::collections::BTreeSet;

/// Module names in the order the layout section lists them (`//! - `name`: ...` lines).
pub fn layout(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|line| line.strip_prefix("//! - `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The first path segment of every `crate::` path in `source`, top-level items of
/// `crate::{...}` groups included.
pub fn crate_imports(source: &str) -> BTreeSet<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_single_and_grouped_imports() {
        let grouped = crate_imports("use crate::{a::{B, C}, d};\nlet x = crate::e::f();");
        assert_eq!(grouped, ["a", "d", "e"].map(String::from).into());
    }

    #[test]
    fn reads_the_layout_section_in_order() {
        let lib = "//! Layout:\n//! - `top`: does x\n//! - `bottom`: does y\nmod top;";
        assert_eq!(layout(lib), ["top", "bottom"]);
    }
}
