//! `illumo migrate`: a flow written for illumo-flow, in illumo's spelling.

use crate::{EXIT_FAILED, EXIT_USAGE};
use illumo_engine::{Flow, NodeRegistry, Source};

pub fn run(path: &str, write: bool, registry: &NodeRegistry) -> i32 {
    // It must load as it is first: migrating a broken flow would only move the problem.
    let flow = match crate::load(path, registry, true) {
        Ok(flow) => flow,
        Err(code) => return code,
    };
    let migrated = match illumo_engine::dialect::migrate(&flow.source.text) {
        Ok(Some(migrated)) => migrated,
        Ok(None) => {
            eprintln!("`{path}` is already in illumo's spelling; nothing to migrate");
            return 0;
        }
        Err(e) => {
            eprintln!("error: cannot migrate `{path}`: {e}");
            return EXIT_USAGE;
        }
    };
    let (mut value, mut changes) = migrated;
    changes.extend(rebase_roots(&mut value, path));
    // Settings illumo-flow ignored (the loader warned about each): illumo refuses them.
    for node in &flow.nodes {
        let Some(setting) = value
            .pointer_mut(&format!(
                "/flow/nodes/{}/setting",
                node.id.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(|s| s.as_object_mut())
        else {
            continue;
        };
        for key in &node.ignored_settings {
            if setting.remove(key).is_some() {
                changes.push(format!(
                    "node `{}`: setting `{key}` dropped: the node has no such setting (illumo-flow ignored it)",
                    node.id
                ));
            }
        }
    }
    let yaml = match serde_yaml::to_string(&value) {
        Ok(y) => format!("# migrated from illumo-flow's spelling by `illumo migrate`\n{y}"),
        Err(e) => {
            eprintln!("error: cannot write the migrated flow: {e}");
            return EXIT_FAILED;
        }
    };
    // What comes out must load natively, with the same nodes.
    match Flow::load(Source::new(path, yaml.clone()), registry) {
        Ok(native) if native.nodes.len() == flow.nodes.len() => {}
        Ok(_) => {
            eprintln!("error: the migrated flow lost nodes; `{path}` is left as it is");
            return EXIT_FAILED;
        }
        Err(e) => {
            eprint!("{}", e.source.render_all(&e.diagnostics, false));
            eprintln!("error: the migrated flow does not load; `{path}` is left as it is");
            return EXIT_FAILED;
        }
    }
    for change in &changes {
        eprintln!("changed: {change}");
    }
    if write {
        let tmp = format!("{path}.illumo-migrate-{}", std::process::id());
        let written = std::fs::write(&tmp, &yaml).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            eprintln!("error: cannot write `{path}`: {e}");
            return EXIT_FAILED;
        }
        eprintln!("wrote `{path}` ({} changes)", changes.len());
    } else {
        print!("{yaml}");
    }
    0
}

/// illumo-flow resolves a relative `default_root` against the working folder, illumo
/// against the flow file's folder: each one is rewritten to name the same folder from the
/// flow file, taking the working folder `migrate` runs in as the one the flow ran from.
fn rebase_roots(value: &mut serde_json::Value, path: &str) -> Vec<String> {
    let mut changes = Vec::new();
    let (Ok(cwd), Some(nodes)) = (
        std::env::current_dir(),
        value
            .pointer_mut("/flow/nodes")
            .and_then(|n| n.as_object_mut()),
    ) else {
        return changes;
    };
    let flow_dir = absolute(
        &cwd,
        std::path::Path::new(path)
            .parent()
            .unwrap_or(std::path::Path::new("")),
    );
    for (id, node) in nodes.iter_mut() {
        let Some(root) = node.pointer_mut("/setting/default_root") else {
            continue;
        };
        let Some(text) = root
            .as_str()
            .filter(|t| !t.starts_with('$') && !t.contains("{{"))
        else {
            continue;
        };
        if std::path::Path::new(text).is_absolute() {
            continue;
        }
        let rebased = relative(&absolute(&cwd, std::path::Path::new(text)), &flow_dir);
        let rebased = rebased.to_string_lossy().into_owned();
        if rebased != text {
            changes.push(format!(
                "node `{id}`: `default_root: {text}` was relative to the working folder; -> `{rebased}`, the same folder from the flow file's"
            ));
            *root = serde_json::Value::String(rebased);
        }
    }
    let workspace = nodes.values().any(|n| {
        matches!(
            n.get("type").and_then(|t| t.as_str()),
            Some("WorkspaceInspector" | "Patch" | "TestExecutor")
        )
    });
    if workspace {
        // The contexts are not in the file: say what changes for them.
        changes.push("a relative `ctx.request.target_root` is now read from the flow file's folder (illumo-flow read it from the working folder): give the flow's contexts an absolute root, or one from the flow file's folder".into());
    }
    changes
}

/// `path` from `base`, `.` and `..` folded away without touching the disk.
fn absolute(base: &std::path::Path, path: &std::path::Path) -> std::path::PathBuf {
    illumo_nodes::files::lexical(&base.join(path))
}

/// `target` as a path relative to the folder `from` (both absolute).
fn relative(target: &std::path::Path, from: &std::path::Path) -> std::path::PathBuf {
    let (t, f): (Vec<_>, Vec<_>) = (target.components().collect(), from.components().collect());
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}
