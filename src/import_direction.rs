//! Guards the shape of the crate: imports point one way, `main → app →
//! {proxy, services} → {routing, auth, ratelimit, upstream, telemetry, connection,
//! traces}
//! → consumers → config → {policy, tls} → vocab → error`. A module may import any
//! layer below its own, never one above, and never a sibling of its own layer
//! (components do not import each other).
//! Every `crate::` path outside `#[cfg(test)]` code counts, in `use` lines and
//! inline alike (`floodgate::` in the binary's `main.rs`).

use std::path::Path;

const LAYERS: &[&[&str]] = &[
    &["error"],
    &["vocab"],
    &["policy", "tls"],
    &["config"],
    &["consumers"],
    &[
        "routing",
        "auth",
        "ratelimit",
        "upstream",
        "telemetry",
        "connection",
        "traces",
    ],
    &["proxy", "services"],
    &["app"],
    &["main"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The top-level module a file under `src/` belongs to; `None` for `lib.rs`
/// (module declarations only) and for this test itself.
fn module_of(path: &str) -> Option<&str> {
    let rel = path.strip_prefix("src/")?;
    let first = rel.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "import_direction").then_some(name)
}

/// The source with comments, string and char literals blanked out, so that only
/// code is searched.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'r' if matches!(b.get(i + 1), Some(b'#') | Some(b'"'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                i += 2 + hashes;
                while i < b.len() && !b[i..].starts_with(&close) {
                    i += 1;
                }
                i += close.len();
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A char literal ('x' or '\n'), not a lifetime ('a).
            b'\'' if b.get(i + 1) == Some(&b'\\') || b.get(i + 2) == Some(&b'\'') => {
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("' '");
            }
            c => {
                let len = match c {
                    0xF0..=0xFF => 4,
                    0xE0..=0xEF => 3,
                    0xC0..=0xDF => 2,
                    _ => 1,
                };
                out.push_str(&text[i..(i + len).min(text.len())]);
                i += len;
            }
        }
    }
    out
}

/// `code` without the items marked `#[cfg(test)]`.
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        // The item ends at its first `;` outside braces, or where its first brace closes.
        let mut depth = 0usize;
        let mut end = item.len();
        for (i, c) in item.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// The top-level modules a piece of code names through `root::` paths,
/// including each one of a `root::{a, b::c}` group.
fn imported_modules(code: &str, root: &str) -> Vec<String> {
    let prefix = format!("{root}::");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (at, _) in code.match_indices(&prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let after = &code[at + prefix.len()..];
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start => {
                        found.push(ident(&group[i..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.push(ident(after));
        }
    }
    found.retain(|m| !m.is_empty() && m != "self");
    found
}

/// Every import against the intended direction, as `file: module imports other`.
fn violations(files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        let Some(module) = module_of(path) else { continue };
        let Some(own) = layer(module) else {
            out.push(format!("{path}: module {module} has no layer; add it to LAYERS"));
            continue;
        };
        let root = if module == "main" { "floodgate" } else { "crate" };
        for target in imported_modules(&without_tests(&code_only(text)), root) {
            if target == module {
                continue;
            }
            match layer(&target) {
                Some(theirs) if theirs < own => {}
                Some(_) => out.push(format!("{path}: {module} imports {target}")),
                None => out.push(format!("{path}: {module} imports {target}, which has no layer")),
            }
        }
    }
    out
}

fn read_tree(dir: &Path, root: &Path, files: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src/ is readable")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_tree(&path, root, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under the root");
            let text = std::fs::read_to_string(&path).expect("source is UTF-8");
            files.push((rel.to_string_lossy().replace('\\', "/"), text));
        }
    }
}

#[test]
fn imports_point_one_way() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    read_tree(&root.join("src"), root, &mut files);
    assert!(files.len() > 20, "read only {} files", files.len());
    let found = violations(&files);
    assert!(
        found.is_empty(),
        "imports against the direction:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_planted_upward_or_sideways_import_is_caught() {
    let file = |path: &str, text: &str| vec![(path.to_string(), text.to_string())];
    assert_eq!(
        violations(&file("src/config/x.rs", "use crate::proxy::Gateway;\n")),
        vec!["src/config/x.rs: config imports proxy"]
    );
    assert_eq!(
        violations(&file(
            "src/ratelimit/x.rs",
            "fn f() { let _ = crate::auth::Failure::Missing; }\n"
        )),
        vec!["src/ratelimit/x.rs: ratelimit imports auth"]
    );
    // Policies sit below the config that builds them; runtime consumers above it.
    assert_eq!(
        violations(&file(
            "src/policy/x.rs",
            "use crate::config::Route;
"
        )),
        vec!["src/policy/x.rs: policy imports config"]
    );
    assert_eq!(
        violations(&file(
            "src/consumers/x.rs",
            "use crate::auth::Authenticator;
"
        )),
        vec!["src/consumers/x.rs: consumers imports auth"]
    );
    assert_eq!(
        violations(&file(
            "src/policy/x.rs",
            "use crate::tls::certs;
"
        )),
        vec!["src/policy/x.rs: policy imports tls"]
    );
    assert_eq!(
        violations(&file(
            "src/vocab/x.rs",
            "use crate::{error::X, config::{A, B}};\n"
        )),
        vec!["src/vocab/x.rs: vocab imports config"]
    );
    assert_eq!(
        violations(&file("src/main.rs", "fn main() { floodgate::app::build(); }\n")),
        Vec::<String>::new()
    );
    // Tests, comments and strings do not count; lower layers are fine.
    let allowed = "use crate::vocab::path;\n// crate::proxy\nconst S: &str = \"crate::app\";\n\
                   #[cfg(test)]\nmod tests {\n    use crate::proxy::Gateway;\n    fn f() { let _ = '{'; }\n}\n";
    assert_eq!(violations(&file("src/auth/x.rs", allowed)), Vec::<String>::new());
}
