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
    let (value, changes) = migrated;
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
