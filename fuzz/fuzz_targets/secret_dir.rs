//! Secret-directory loading (`tls/load.rs`): the input describes a small tree — entries
//! `name\0contents` split at `tower_mtls_fuzz::SEP`; a name may contain `/` (a subdirectory),
//! start with `..` (the kubelet's `..data`), or be `@target` to become a symlink to `target`.
//! It is written to a temporary directory and read as a trust source and as a CRL source.
//! Properties: no panic; nothing is read from `..`-prefixed entries; every certificate comes
//! from a file inside the directory.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use tower_mtls::__fuzz as f;

fn safe(name: &str) -> bool {
    !name.is_empty()
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        && name.len() < 64
}

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let root = dir.path();
    for entry in tower_mtls_fuzz::split(data).into_iter().take(8) {
        let (name, contents) = match entry.iter().position(|b| *b == 0) {
            Some(i) => (&entry[..i], &entry[i + 1..]),
            None => (entry, &[][..]),
        };
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if let Some(link) = name.strip_prefix('@') {
            // `@link` → a symlink named `link` to the path in `contents`, inside the tree.
            let Ok(target) = std::str::from_utf8(contents) else {
                continue;
            };
            if safe(link) && safe(target) {
                let _ = std::fs::create_dir_all(root.join(link).parent().unwrap_or(root));
                let _ = std::os::unix::fs::symlink(root.join(target), root.join(link));
            }
            continue;
        }
        if !safe(name) {
            continue;
        }
        let path = root.join(name);
        let _ = std::fs::create_dir_all(path.parent().unwrap_or(root));
        let _ = std::fs::write(&path, contents);
    }
    if let Ok(found) = f::trust_directory(root) {
        for (path, index) in found {
            assert!(index >= 1);
            let inside = path.strip_prefix(root).expect("a file of the tree");
            assert!(
                !inside
                    .components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with("..")),
                "{path:?} read from a ..-entry"
            );
        }
    }
    let _ = f::crl_directory(root);
});
